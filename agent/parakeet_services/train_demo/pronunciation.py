"""Pronunciation noise: a training sentence spoken with some of its sounds changed, its transcript unchanged.

espeak-ng speaks every word of an accent the same way every time, so a model trained on it learns each accent's
exact vowels and fails on an accent it never heard (the demo model: 2.6 % WER on unseen speakers of training
accents, 18 % on the unseen West Midlands accent). Here a fraction of the training utterances is spoken from
espeak-ng's own phonemes for the sentence (``-x``) after random edits: a vowel swapped for another English vowel,
now and then a consonant left out. The words must then be recognised from the rest of the sentence, as listeners
do with an unfamiliar accent. The edits are generic (any vowel, any consonant), not those of a held-out accent.
"""
from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass

# espeak-ng's English phoneme mnemonics (``espeak-ng -x``), longest first so that "aI@" is read before "aI", "a".
VOWELS = ("aI@", "aU@", "aI2", "O2", "A@", "e@", "i@", "I@", "U@", "o@", "O@", "aI", "aU", "eI", "oU", "@U", "OI",
          "3:", "A:", "i:", "u:", "O:", "a#", "I#", "I2", "@2", "@5", "@L", "0", "V", "E", "I", "U", "a", "@", "i",
          "u", "e", "o", "O", "A", "3")
CONSONANTS = ("tS", "dZ", "t#", "p", "b", "t", "d", "k", "g", "f", "v", "T", "D", "s", "z", "S", "Z", "h", "m",
              "n", "N", "l", "r", "w", "j")
# what a vowel may become: vowels every English voice of espeak-ng has
CORE_VOWELS = ("@", "3:", "a", "A:", "aI", "aU", "E", "eI", "I", "i:", "0", "O:", "oU", "OI", "U", "u:", "V")
_TOKENS = sorted(VOWELS + CONSONANTS, key=len, reverse=True)


@dataclass(frozen=True)
class NoiseLevel:
    """How much one perturbed utterance changes: each vowel is swapped with ``vowel_p``, each consonant dropped
    with ``drop_p``."""

    vowel_p: float = 0.15
    drop_p: float = 0.04


def tokenize(phonemes: str) -> list[str]:
    """Split an ``espeak-ng -x`` string into phoneme tokens; stress marks, spaces and modifiers are tokens of
    their own, kept as they are."""
    out, i = [], 0
    while i < len(phonemes):
        for tok in _TOKENS:
            if phonemes.startswith(tok, i):
                break
        else:
            tok = phonemes[i]
        out.append(tok)
        i += len(tok)
    return out


def perturb(phonemes: str, rng: random.Random, level: NoiseLevel = NoiseLevel()) -> tuple[str, int]:
    """``phonemes`` with random vowel swaps and consonant drops, and how many tokens changed."""
    out, changed = [], 0
    for tok in tokenize(phonemes):
        if tok in VOWELS and rng.random() < level.vowel_p:
            new = rng.choice([v for v in CORE_VOWELS if v != tok])
            out.append(new)
            changed += 1
        elif tok in CONSONANTS and rng.random() < level.drop_p:
            changed += 1
        else:
            out.append(tok)
    return "".join(out), changed


def phonemes_of(text: str, voice: str) -> str:
    """espeak-ng's phonemes for ``text`` in ``voice``'s accent; clause breaks (one per output line) become
    pauses, which phoneme input would otherwise lose."""
    lines = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice, text], capture_output=True, check=True,
                           text=True).stdout.split("\n")
    return " _:_: ".join(line.strip() for line in lines if line.strip())


def as_espeak_input(phonemes: str) -> str:
    """Phonemes as espeak-ng text input (``[[...]]`` is read as phoneme mnemonics)."""
    return f"[[{phonemes}]]"
