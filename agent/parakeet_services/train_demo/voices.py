"""Which espeak-ng voices speak the training data, and which are kept for the test set only.

An espeak-ng voice is an accent (``en-us``) plus an optional variant (``+klatt3``: another speaker, with its own
glottal source, formants, pitch range and breathiness). Training draws from every English accent but one and every
variant but ten, with a wide spread of rates, pitches and amplitudes; held out *entirely*: every voice whose accent
or variant is in a held-out list never speaks a training utterance, so the held-out WER measures speakers the model
has never heard, not just new sentences. The held-out variants take one or two of each family (``klatt`` while
``klatt2``..``klatt6`` train, ``m8`` while ``m1``..``m7`` but ``m6`` train, named speakers) so that every family is
tested on a member the model never heard.

A share of the training utterances (``FLITE_SHARE``, data version 5) is spoken by flite, another synthesizer
with other methods (diphones, statistical parametric voices): espeak-ng alone taught the model espeak-ng, not
speech (its WER on flite's voices was 81-95 %). Voices are then named ``flite:<voice>``; ``awb`` is held out.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
HELD_OUT_ACCENTS = ("en-gb-x-gbcwmd",)  # West Midlands: an accent never heard in training

# ``espeak-ng --voices=variant`` of espeak-ng 1.51/1.52, less those that are not ordinary speech: whispers (no
# voicing at all), the "Demonic", "announcer" and "fast" effects, and "Mr serious" (a space in its name).
ALL_VARIANTS = (
    "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo",
    "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario",
    "max", "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5",
    "robosoft6", "robosoft7", "robosoft8", "steph", "steph2", "steph3", "Storm", "Tweaky", "UniRobot", "zac",
    "anika", "anikaRobot", "AnxiousAndy", "f1", "f2", "f3", "f4", "f5", "grandpa", "grandma", "klatt", "klatt2",
    "klatt3", "klatt4", "klatt5", "klatt6", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "norbert", "sandro",
    "shelby", "travis", "victor", "croak")
HELD_OUT_VARIANTS = ("+m6", "+m8", "+f3", "+f5", "+klatt", "+Andy", "+belinda", "+iven2", "+Gene2", "+steph3")
TRAIN_VARIANTS = ("",) + tuple(v for v in ("+" + n for n in ALL_VARIANTS) if v not in HELD_OUT_VARIANTS)


FLITE = "flite:"  # prefix of a flite voice's name (the rest is ``flite -voice``)
TRAIN_FLITE_VOICES = ("flite:kal", "flite:kal16", "flite:rms", "flite:slt")
HELD_OUT_FLITE_VOICES = ("flite:awb",)  # a Scottish man (CMU ARCTIC) never heard in training
FLITE_SHARE = 0.3  # of the training utterances (data version 5)
# each flite voice's own mean pitch (Hz), around which ``draw_delivery`` spreads it
FLITE_F0 = {"kal": 105.0, "kal16": 105.0, "rms": 110.0, "slt": 170.0, "awb": 120.0}


def _round_robin(accents: tuple[str, ...], variants: tuple[str, ...]) -> tuple[str, ...]:
    """Each variant once, spoken in the accents in turn: every held-out variant and every accent gets its share."""
    return tuple(accents[i % len(accents)] + v for i, v in enumerate(variants))


# The test set's voices, listed explicitly; none of them can be drawn for training (see ``is_training_voice``).
HELD_OUT_VOICES: dict[str, tuple[str, ...]] = {
    # training accents spoken by speakers never heard in training
    "held-out-variant": _round_robin(TRAIN_ACCENTS, HELD_OUT_VARIANTS),
    # an unseen accent, spoken by its default speaker, by unseen speakers and by seen ones
    "held-out-accent": tuple(HELD_OUT_ACCENTS[0] + v for v in
                             ("", "+m6", "+f3", "+klatt", "+Andy", "+m2", "+f4", "+klatt3", "+steph", "+max")),
    # another synthesizer's voice never heard in training (data version 5)
    "held-out-flite": HELD_OUT_FLITE_VOICES,
}
SEEN_GROUP = "seen-voices"  # held-out sentences spoken by training voices: the gap to the groups above
SEEN_FLITE_GROUP = "seen-flite-voices"  # ... by flite's training voices (data version 5)
SEEN_GROUPS = (SEEN_GROUP, SEEN_FLITE_GROUP)  # the groups of training voices: not part of "all held-out voices"
# in the order of the test set's files: the groups of data versions 2-4 first, so their files stay the same
GROUPS = (SEEN_GROUP, "held-out-variant", "held-out-accent", SEEN_FLITE_GROUP, "held-out-flite")
TRAINING_VOICES = tuple(a + v for a in TRAIN_ACCENTS for v in TRAIN_VARIANTS)


def is_flite(voice: str) -> bool:
    return voice.startswith(FLITE)


def split_voice(voice: str) -> tuple[str, str]:
    accent, plus, variant = voice.partition("+")
    return accent, plus + variant


def is_training_voice(voice: str) -> bool:
    if is_flite(voice):
        return voice in TRAIN_FLITE_VOICES
    accent, variant = split_voice(voice)
    return accent in TRAIN_ACCENTS and variant in TRAIN_VARIANTS


def voices_of_group(group: str) -> tuple[str, ...]:
    if group == SEEN_GROUP:
        return TRAINING_VOICES
    return TRAIN_FLITE_VOICES if group == SEEN_FLITE_GROUP else HELD_OUT_VOICES[group]


@dataclass(frozen=True)
class Delivery:
    """How one utterance is spoken: espeak-ng ``-v``, ``-s`` words per minute, ``-p`` pitch (0-99), ``-g`` word
    gap (10 ms units), ``-a`` amplitude (0-200: espeak-ng's own level, which also changes how its voice clips)."""

    voice: str
    speed: int
    pitch: int
    gap: int
    amplitude: int = 100

    def flite_settings(self) -> dict:
        """What ``speech.flite`` takes for this delivery: durations stretched as the speed says (175 wpm is the
        voice's own pace), the voice's pitch moved by up to two thirds of an octave."""
        name = self.voice[len(FLITE):]
        return dict(voice=name, stretch=min(max(175 / self.speed, 0.7), 1.5),
                    f0=FLITE_F0[name] * 2 ** ((self.pitch - 50) / 60))

    def espeak_args(self) -> list[str]:
        """What ``speech.espeak`` passes on besides the voice and the speed."""
        return ["-p", str(self.pitch), "-g", str(self.gap), "-a", str(self.amplitude)]


DELIVERY_RANGES = "speed 110-240 wpm, pitch 10-90, amplitude 40-180, word gap 0-40 ms"  # of ``draw_delivery``


def draw_delivery(rng: random.Random, voices: tuple[str, ...]) -> Delivery:
    """A wide spread around espeak-ng's defaults (175 wpm, pitch 50, amplitude 100): slow and fast talkers, low
    and high voices, soft and loud."""
    return Delivery(voice=rng.choice(voices), speed=rng.randint(110, 240), pitch=rng.randint(10, 90),
                    gap=rng.choice([0, 0, 0, 1, 2, 4]), amplitude=rng.randint(40, 180))


def check_split() -> None:
    """The lists above are consistent: no held-out voice is a training voice."""
    if set(GROUPS) != {*SEEN_GROUPS, *HELD_OUT_VOICES}:
        raise AssertionError(f"GROUPS {GROUPS} are not the seen groups and HELD_OUT_VOICES")
    for group, voices in HELD_OUT_VOICES.items():
        for v in voices:
            if is_training_voice(v):
                raise AssertionError(f"{v} of {group} is a training voice")
            if is_flite(v):
                continue
            accent, variant = split_voice(v)
            if accent not in HELD_OUT_ACCENTS and variant not in HELD_OUT_VARIANTS:
                raise AssertionError(f"{v} of {group} holds out neither its accent nor its variant")


check_split()
