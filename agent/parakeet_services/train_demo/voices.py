"""Which espeak-ng voices speak the training data, and which are kept for the test set only.

An espeak-ng voice is an accent (``en-us``) plus an optional variant (``+m3``: the speaker's pitch, formants,
breathiness). Held out *entirely*: every voice whose accent or variant is in a held-out list never speaks a
training utterance, so the held-out WER measures speakers the model has never heard, not just new sentences.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
TRAIN_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m7", "+f1", "+f2", "+f4")

HELD_OUT_ACCENTS = ("en-gb-x-gbcwmd",)  # West Midlands: an accent never heard in training
HELD_OUT_VARIANTS = ("+m6", "+f3", "+f5")  # speakers never heard in training, in any accent

# The test set's voices, listed explicitly; none of them can be drawn for training (see ``is_training_voice``).
HELD_OUT_VOICES: dict[str, tuple[str, ...]] = {
    # a training accent spoken by an unseen speaker
    "held-out-speaker": ("en-us+m6", "en+f3", "en-gb-x-rp+f5", "en-029+m6", "en-us-nyc+f3", "en-gb-scotland+f5"),
    # an unseen accent, spoken by unseen and seen speakers
    "held-out-accent": ("en-gb-x-gbcwmd", "en-gb-x-gbcwmd+m6", "en-gb-x-gbcwmd+f3", "en-gb-x-gbcwmd+m2"),
}
SEEN_GROUP = "seen-voices"  # held-out sentences spoken by training voices: the gap to the groups above
GROUPS = (SEEN_GROUP, *HELD_OUT_VOICES)
TRAINING_VOICES = tuple(a + v for a in TRAIN_ACCENTS for v in TRAIN_VARIANTS)


def split_voice(voice: str) -> tuple[str, str]:
    accent, plus, variant = voice.partition("+")
    return accent, plus + variant


def is_training_voice(voice: str) -> bool:
    accent, variant = split_voice(voice)
    return accent in TRAIN_ACCENTS and variant in TRAIN_VARIANTS


def voices_of_group(group: str) -> tuple[str, ...]:
    return TRAINING_VOICES if group == SEEN_GROUP else HELD_OUT_VOICES[group]


@dataclass(frozen=True)
class Delivery:
    """How one utterance is spoken: espeak-ng ``-v``, ``-s`` words per minute, ``-p`` pitch, ``-g`` word gap."""

    voice: str
    speed: int
    pitch: int
    gap: int

    def espeak_args(self) -> list[str]:
        """What ``speech.espeak`` passes on besides the voice and the speed."""
        return ["-p", str(self.pitch), "-g", str(self.gap)]


def draw_delivery(rng: random.Random, voices: tuple[str, ...]) -> Delivery:
    # ranges of the research run that reached 7.45 % WER
    return Delivery(voice=rng.choice(voices), speed=rng.randint(130, 200), pitch=rng.randint(30, 70),
                    gap=rng.choice([0, 0, 0, 1, 2, 4]))


def check_split() -> None:
    """The lists above are consistent: no held-out voice is a training voice."""
    for group, voices in HELD_OUT_VOICES.items():
        for v in voices:
            if is_training_voice(v):
                raise AssertionError(f"{v} of {group} is a training voice")
            accent, variant = split_voice(v)
            if accent not in HELD_OUT_ACCENTS and variant not in HELD_OUT_VARIANTS:
                raise AssertionError(f"{v} of {group} holds out neither its accent nor its variant")


check_split()
