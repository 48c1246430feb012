"""Plausible English sentences over a closed vocabulary of about 700 words: numbers, times, dates, weekdays,
months, common voice commands and names.

Adapted from the demo-model research generator (414 words): same template style (every number spelled out,
lower case, no punctuation, 3-12 words, 20 % random word strings so the model cannot lean on templates alone),
widened with ordinals and dates, years, about 70 first names, and smart-home / phone / calendar commands.
"""
from __future__ import annotations

import random

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL_ONES = ("_ first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
                "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split()
ORDINAL_TENS = {2: "twentieth", 3: "thirtieth"}


def num2words(n: int) -> str:
    """0..999999 spelled out without "and" (espeak-ng reads the words, never digits)."""
    if not 0 <= n < 1_000_000:
        raise ValueError(n)
    if n >= 1000:
        k, r = divmod(n, 1000)
        return num2words(k) + " thousand" + ("" if r == 0 else " " + num2words(r))
    if n < 20:
        return ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return TENS[t] + ("" if o == 0 else " " + ONES[o])
    h, r = divmod(n, 100)
    return ONES[h] + " hundred" + ("" if r == 0 else " " + num2words(r))


def ordinal(n: int) -> str:
    """1..31 as a day of the month: "twenty first"."""
    if not 1 <= n <= 31:
        raise ValueError(n)
    if n < 20:
        return ORDINAL_ONES[n]
    t, o = divmod(n, 10)
    return ORDINAL_TENS[t] if o == 0 else TENS[t] + " " + ORDINAL_ONES[o]


def year(n: int) -> str:
    """How years are said: nineteen ninety nine, two thousand eight, twenty twenty four."""
    if 2000 <= n <= 2009:
        return num2words(n)
    hi, lo = divmod(n, 100)
    return num2words(hi) + " " + ("hundred" if lo == 0 else ("oh " + ONES[lo]) if lo < 10 else num2words(lo))


DIGIT = "zero one two three four five six seven eight nine".split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = "january february march april may june july august september october november december".split()
WHEN = ["today", "tomorrow", "tonight", "yesterday", "this morning", "this evening", "this afternoon",
        "tomorrow morning", "tomorrow night", "next week", "next month", "next year", "last week", "this weekend",
        "on {weekday}", "next {weekday}", "later", "right now", "soon", "at noon", "at midnight", "in an hour",
        "every day", "every {weekday}"]
NAMES = ("john mary david sarah mike anna peter lisa tom emma james robert michael william richard joseph thomas "
         "charles daniel matthew anthony paul steven andrew kevin brian george edward jason ryan jacob eric "
         "justin alex sam ben jack harry oliver noah henry lucas jennifer linda elizabeth susan jessica karen "
         "nancy betty margaret sandra ashley emily donna michelle carol amanda laura rachel sophia olivia ava "
         "mia chloe grace julia kate lucy alice helen").split()
PEOPLE = NAMES + "doctor teacher manager mother father brother sister friend boss neighbor driver".split()
NOUNS = ("car train bus plane ticket table chair door window room house office school store shop market street "
         "road city park river bridge phone computer screen light music song book letter message email report "
         "meeting project order package box bag coffee tea water milk bread apple pizza dinner lunch breakfast "
         "dog cat bird garden kitchen hotel airport station bank money price bill key map picture camera game "
         "team class lesson question answer idea plan problem list file page number name address calendar "
         "reminder appointment event video photo document folder password account battery printer garage "
         "bottle cup plate glass bed sofa lamp shirt shoe jacket hat wallet watch clock note card gift flower "
         "tree boat bike truck hospital library museum restaurant cafe pharmacy beach church kitchen").split()
IRREGULAR_PLURAL = {"city": "cities", "money": "money", "bread": "bread", "water": "water", "milk": "milk",
                    "coffee": "coffee", "tea": "tea", "lunch": "lunches", "breakfast": "breakfasts",
                    "dinner": "dinners", "battery": "batteries", "library": "libraries", "pharmacy": "pharmacies",
                    "shoe": "shoes", "beach": "beaches", "church": "churches", "glass": "glasses",
                    "watch": "watches", "address": "addresses", "class": "classes", "box": "boxes",
                    "bus": "buses", "wallet": "wallets", "photo": "photos", "video": "videos"}
PLURAL = {n: IRREGULAR_PLURAL.get(n, n + "s") for n in NOUNS}
UNITS = ("seconds minutes hours days weeks months years dollars euros pounds cents miles meters kilometers "
         "degrees percent points people times liters kilos").split()
ADJS = ("big small old new good bad hot cold warm cool fast slow early late long short red blue green black "
        "white yellow orange purple pink brown gray happy busy quiet loud cheap expensive open closed clean "
        "dirty free full empty easy hard nice great bright dark heavy light soft strong young tall sunny cloudy "
        "rainy windy important favorite").split()
VERBS = ("open close call send bring take buy sell find check read write play stop start clean fix move book "
         "cancel order pay watch visit meet help need want like see turn show tell ask give get put pause "
         "resume skip repeat save delete remove add create share print copy record lock unlock charge answer "
         "schedule confirm finish wash cook carry drive").split()
DEVICES = ("lights heater radio music fan alarm television oven camera printer speaker thermostat dishwasher "
           "computer projector microphone").split()
SETTINGS = "volume brightness temperature speed timer".split()
MEDIA = "song album playlist podcast video radio station news".split()
PLACES = ["the office", "the station", "the airport", "the park", "the bank", "the hotel", "home", "school",
          "the store", "the market", "the city", "the river", "the kitchen", "the garden", "the hospital",
          "the library", "the museum", "the restaurant", "the cafe", "the pharmacy", "the beach", "work",
          "the church"]
ROOMS = "kitchen office room garden house bedroom bathroom hallway basement living room".split()
ADVERB = "please now again quickly slowly really very also just still maybe always never sometimes".split()
WEATHER = "sunny cloudy rainy windy snowy foggy warm cold hot".split()
COLORS = "red blue green black white yellow orange purple pink brown gray".split()
GREET = "yes no okay sure thanks hello sorry hi goodbye alright".split()
FILLER = ("i you we they he she it is are was were will can could should would the a an to and or but of in on "
          "at for with from by about my your our their his her this that these those there here what how when "
          "where why who which not no yes very do does did have has had be been am me us them him").split()


def rnum(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return num2words(rng.randint(0, 20))
    if r < 0.7:
        return num2words(rng.randint(21, 99))
    if r < 0.95:
        return num2words(rng.randint(100, 1000))
    return num2words(rng.randint(1001, 20000))


def rtime(rng: random.Random) -> str:
    h = rng.randint(1, 12)
    r = rng.random()
    if r < 0.3:
        return num2words(h) + " o clock"
    if r < 0.5:
        return num2words(h) + " " + rng.choice(["fifteen", "thirty", "forty five"])
    if r < 0.65:
        return rng.choice(["half past", "quarter past", "quarter to"]) + " " + num2words(h)
    m = rng.randint(1, 59)
    ms = ("oh " + num2words(m)) if m < 10 else num2words(m)
    return num2words(h) + " " + ms + rng.choice(["", " am", " pm"])


def rdate(rng: random.Random) -> str:
    m, d = rng.choice(MONTHS), ordinal(rng.randint(1, 31 if rng.random() < 0.9 else 9))
    r = rng.random()
    if r < 0.4:
        return f"{m} {d}"
    if r < 0.7:
        return f"the {d} of {m}"
    if r < 0.85:
        return f"{rng.choice(WEEKDAYS)} the {d}"
    return f"{m} {d} {year(rng.randint(1950, 2039))}"


def when(rng: random.Random) -> str:
    return rng.choice(WHEN).replace("{weekday}", rng.choice(WEEKDAYS))


def digits(rng: random.Random, lo: int = 3, hi: int = 7) -> str:
    return " ".join(rng.choice(DIGIT) for _ in range(rng.randint(lo, hi)))


def the_noun(rng: random.Random) -> str:
    det = rng.choice(["the", "my", "your", "our", "this", "that", "a", "his", "her", "their"])
    adj = rng.choice(ADJS) if rng.random() < 0.4 else ""
    noun = rng.choice(NOUNS)
    if det == "a" and (adj or noun)[0] in "aeiou":
        det = "an"
    return " ".join(w for w in (det, adj, noun) if w)


def _c(r: random.Random, words) -> str:
    return r.choice(words)


TEMPLATES = [
    lambda r: f"call me at {rtime(r)} {when(r)}",
    lambda r: f"call {_c(r, PEOPLE)} at {rtime(r)}",
    lambda r: f"my phone number is {digits(r, 4, 7)}",
    lambda r: f"the code is {digits(r, 3, 6)}",
    lambda r: f"the meeting is on {_c(r, WEEKDAYS)} at {rtime(r)}",
    lambda r: f"set an alarm for {rtime(r)} {when(r)}",
    lambda r: f"set a timer for {rnum(r)} {_c(r, ['minutes', 'seconds', 'hours'])}",
    lambda r: f"i need {rnum(r)} {PLURAL[_c(r, NOUNS)]} {when(r)}",
    lambda r: f"we have {rnum(r)} {_c(r, UNITS)} left",
    lambda r: f"it costs {rnum(r)} {_c(r, ['dollars', 'euros', 'pounds'])} and {num2words(r.randint(1, 99))} cents",
    lambda r: f"the temperature is {rnum(r)} degrees {when(r)}",
    lambda r: f"{rnum(r)} plus {rnum(r)} is {rnum(r)}",
    lambda r: f"{rnum(r)} times {num2words(r.randint(2, 12))} is {rnum(r)}",
    lambda r: f"please {_c(r, VERBS)} {the_noun(r)} {when(r)}",
    lambda r: f"can you {_c(r, VERBS)} {the_noun(r)} for me",
    lambda r: f"turn {_c(r, ['on', 'off'])} the {_c(r, DEVICES)} in the {_c(r, ROOMS)}",
    lambda r: f"{_c(r, PEOPLE)} will {_c(r, VERBS)} {the_noun(r)} {when(r)}",
    lambda r: f"{the_noun(r)} is {_c(r, ADJS)} {_c(r, ADVERB)}",
    lambda r: f"meet me at {_c(r, PLACES)} at {rtime(r)}",
    lambda r: f"the train leaves at {rtime(r)} from platform {rnum(r)}",
    lambda r: f"book a table for {num2words(r.randint(1, 12))} people {when(r)} at {rtime(r)}",
    lambda r: f"send a message to {_c(r, PEOPLE)} and say i will be late",
    lambda r: f"how many {PLURAL[_c(r, NOUNS)]} do we need for {_c(r, WEEKDAYS)}",
    lambda r: f"what is the weather like {when(r)} in the {_c(r, ['city', 'park', 'north', 'south', 'east', 'west'])}",
    lambda r: f"the {_c(r, ADJS)} {_c(r, NOUNS)} is {_c(r, ['in', 'on', 'near', 'under', 'behind', 'next to'])} the {_c(r, NOUNS)}",
    lambda r: f"room {rnum(r)} on floor {num2words(r.randint(1, 30))}",
    lambda r: f"i was born on {rdate(r)}",
    lambda r: f"{_c(r, GREET)} {_c(r, PEOPLE)} {_c(r, ['i can', 'we will', 'you should', 'they might', 'she could', 'he would'])} {_c(r, VERBS)} it {when(r)}",
    lambda r: f"go to {_c(r, PLACES)} and {_c(r, VERBS)} {the_noun(r)}",
    lambda r: f"there are {rnum(r)} {PLURAL[_c(r, NOUNS)]} in {the_noun(r)}",
    lambda r: f"the order number is {digits(r, 4, 6)} and it costs {rnum(r)} dollars",
    # dates, weekdays, months
    lambda r: f"my birthday is on {rdate(r)}",
    lambda r: f"the appointment is on {rdate(r)} at {rtime(r)}",
    lambda r: f"schedule a meeting with {_c(r, NAMES)} on {rdate(r)}",
    lambda r: f"remind me to {_c(r, VERBS)} {the_noun(r)} on {_c(r, WEEKDAYS)}",
    lambda r: f"remind me to call {_c(r, PEOPLE)} {when(r)}",
    lambda r: f"what day is {rdate(r)}",
    lambda r: f"the store is closed from {_c(r, WEEKDAYS)} to {_c(r, WEEKDAYS)}",
    lambda r: f"we moved here in {_c(r, MONTHS)} {year(r.randint(1950, 2039))}",
    lambda r: f"the year was {year(r.randint(1900, 2039))}",
    lambda r: f"it will be {_c(r, WEATHER)} on {_c(r, WEEKDAYS)} and {_c(r, WEATHER)} on {_c(r, WEEKDAYS)}",
    lambda r: f"show me the calendar for {_c(r, MONTHS)}",
    lambda r: f"add {_c(r, NAMES)} to the {_c(r, ['meeting', 'list', 'event', 'team', 'class'])} {when(r)}",
    # commands
    lambda r: f"set the {_c(r, SETTINGS)} to {rnum(r)} {_c(r, ['', 'percent', 'degrees'])}",
    lambda r: f"{_c(r, ['increase', 'decrease', 'raise', 'lower'])} the {_c(r, SETTINGS)} {_c(r, ['', 'a little', 'by ten percent', 'please'])}",
    lambda r: f"{_c(r, ['play', 'pause', 'skip', 'repeat', 'save', 'share'])} the {_c(r, ['next', 'last', 'first', 'new', 'same'])} {_c(r, MEDIA)}",
    lambda r: f"{_c(r, ['dim', 'brighten', 'turn off', 'turn on'])} the lights in the {_c(r, ROOMS)}",
    lambda r: f"{_c(r, ['lock', 'unlock', 'open', 'close'])} the {_c(r, ['front', 'back', 'garage', 'kitchen'])} door",
    lambda r: f"make the lights {_c(r, COLORS)} in the {_c(r, ROOMS)}",
    lambda r: f"read my {_c(r, ['messages', 'emails', 'notes', 'reminders'])} from {_c(r, PEOPLE)}",
    lambda r: f"text {_c(r, NAMES)} that i will be there at {rtime(r)}",
    lambda r: f"tell {_c(r, NAMES)} to {_c(r, VERBS)} {the_noun(r)}",
    lambda r: f"ask {_c(r, NAMES)} if {_c(r, ['she', 'he', 'they'])} can {_c(r, VERBS)} {the_noun(r)} {when(r)}",
    lambda r: f"this is {_c(r, NAMES)} speaking",
    lambda r: f"my name is {_c(r, NAMES)} and i live at {rnum(r)} {_c(r, ['main', 'park', 'river', 'oak', 'hill'])} street",
    lambda r: f"{_c(r, NAMES)} and {_c(r, NAMES)} will {_c(r, VERBS)} {the_noun(r)} on {rdate(r)}",
    lambda r: f"navigate to {_c(r, PLACES)} {_c(r, ['', 'please', 'now', 'by car', 'by bike'])}",
    lambda r: f"how long does it take to get to {_c(r, PLACES)}",
    lambda r: f"the battery is at {num2words(r.randint(0, 100))} percent",
    lambda r: f"wake me up at {rtime(r)} {when(r)}",
    lambda r: f"what time is it in the {_c(r, ['north', 'south', 'east', 'west'])}",
]

VOCABULARY_SOURCES = (ONES + TENS[2:] + ORDINAL_ONES[1:] + list(ORDINAL_TENS.values())
                      + ["hundred", "thousand", "oh", "o", "clock", "am", "pm", "half", "past", "quarter", "cents"]
                      + WEEKDAYS + MONTHS + PEOPLE + NOUNS + list(PLURAL.values()) + UNITS + ADJS + VERBS + DEVICES
                      + SETTINGS + MEDIA + ROOMS + ADVERB + WEATHER + COLORS + GREET + WHEN + PLACES)
WORDS = sorted({w for phrase in VOCABULARY_SOURCES for w in phrase.split() if "{" not in w})


def random_words(rng: random.Random) -> str:
    """Random word strings (weak grammar) so the model cannot rely only on the templates."""
    pool = WORDS + FILLER * 2
    return " ".join(rng.choice(pool) for _ in range(rng.randint(3, 12)))


def sentence(rng: random.Random) -> str:
    while True:
        s = random_words(rng) if rng.random() < 0.2 else rng.choice(TEMPLATES)(rng)
        s = " ".join(s.split())
        if 3 <= len(s.split()) <= 12:
            return s


def vocabulary(n: int = 20000, seed: int = 0) -> set[str]:
    """The distinct words of ``n`` generated sentences."""
    rng = random.Random(seed)
    words: set[str] = set()
    for _ in range(n):
        words.update(sentence(rng).split())
    return words


def split_sentences(n_train: int, n_test: int, seed: int = 1234) -> tuple[list[str], list[str]]:
    """``n_test`` distinct held-out sentences first, then ``n_train`` training sentences none of which is a
    test sentence (training sentences may repeat, as short commands do)."""
    rng = random.Random(seed)
    test: list[str] = []
    seen: set[str] = set()
    while len(test) < n_test:
        s = sentence(rng)
        if s not in seen:
            seen.add(s)
            test.append(s)
    train: list[str] = []
    while len(train) < n_train:
        s = sentence(rng)
        if s not in seen:
            train.append(s)
    return train, test


if __name__ == "__main__":
    rng = random.Random(0)
    for _ in range(20):
        print(sentence(rng))
    print("vocabulary size:", len(vocabulary()), "of", len(WORDS) + len(set(FILLER) - set(WORDS)))
