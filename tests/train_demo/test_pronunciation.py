"""Pronunciation noise of the demo model's training data (train_demo/pronunciation.py)."""
from __future__ import annotations

import random

import numpy as np
import soundfile as sf

from parakeet_services.train_demo import pronunciation as pron
from parakeet_services.train_demo import synth

SENTENCE = "please call me at seven thirty on tuesday the twenty first of march"


def test_espeak_phonemes_tokenize_back_to_the_same_string_with_every_vowel_known():
    phonemes = pron.phonemes_of(SENTENCE, "en-us")
    tokens = pron.tokenize(phonemes)
    assert "".join(tokens) == phonemes
    # every letter of espeak's output belongs to a known vowel or consonant token: nothing is swapped blindly
    loose = [t for t in tokens if t.isalpha() and t not in pron.VOWELS + pron.CONSONANTS]
    assert loose == []
    assert pron.tokenize("T'3:t#i; ,O2n") == ["T", "'", "3:", "t#", "i", ";", " ", ",", "O2", "n"]


def test_clause_breaks_become_pauses():
    assert pron.phonemes_of("Hello, call the hallway.", "en-us") == "h@l'oU _:_: k'O:l D@2 h'O:lweI"


def test_no_noise_changes_nothing_and_full_noise_changes_every_vowel_and_drops_every_consonant():
    phonemes = pron.phonemes_of(SENTENCE, "en-gb-x-rp")
    tokens = pron.tokenize(phonemes)
    assert pron.perturb(phonemes, random.Random(0), pron.NoiseLevel(0.0, 0.0)) == (phonemes, 0)

    swapped, n = pron.perturb(phonemes, random.Random(0), pron.NoiseLevel(vowel_p=1.0, drop_p=0.0))
    old_vowels = [t for t in tokens if t in pron.VOWELS]
    assert n == len(old_vowels)
    # the swapped string, re-read, has a core vowel wherever a vowel was (stress marks keep them apart)
    assert swapped != phonemes
    assert all(t in pron.CORE_VOWELS or not t.isalpha() for t in pron.tokenize(swapped) if t not in pron.CONSONANTS)

    dropped, n = pron.perturb(phonemes, random.Random(0), pron.NoiseLevel(vowel_p=0.0, drop_p=1.0))
    assert n == sum(t in pron.CONSONANTS for t in tokens)
    assert dropped == "".join(t for t in tokens if t not in pron.CONSONANTS)


def test_a_noisy_utterance_keeps_its_transcript_and_a_clean_one_is_made_as_before(tmp_path):
    def job(name: str, noise: float) -> synth.SynthJob:
        return synth.SynthJob(0, SENTENCE, 7, str(tmp_path / f"{name}.wav"), ("en-us+m3",), noise)

    before = synth.synth_one(job("before", 0.0))
    noisy = synth.synth_one(job("noisy", 1.0))
    assert "phonemes_changed" not in before
    assert noisy["phonemes_changed"] > 0
    assert noisy["text"] == before["text"] == SENTENCE
    assert noisy["voice"] == before["voice"] and noisy["speed"] == before["speed"]  # same delivery draw
    a, b = sf.read(tmp_path / "before.wav")[0], sf.read(tmp_path / "noisy.wav")[0]
    assert a.shape != b.shape or not np.array_equal(a, b)
