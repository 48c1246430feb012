"""Helpers for tests: spoken audio from espeak-ng, silence, 20 ms packets, event collection."""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

import numpy as np
from parakeet_services.speech import espeak


def speech(text: str, voice: str = "en-us", rate: int = 160, sample_rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng at ``rate`` words per minute (None: its default), as float32 mono at
    ``sample_rate`` (a copy of a cached one)."""
    return _cached_speech(text, voice, rate, sample_rate).copy()


@functools.lru_cache(maxsize=None)
def _cached_speech(text: str, voice: str, rate: int | None, sample_rate: int) -> np.ndarray:
    return espeak(text, voice, rate, sample_rate=sample_rate)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * 16000)), dtype=np.float32)


def packets(audio: np.ndarray, ms: int = 20, rate: int = 16000):
    step = rate * ms // 1000
    for i in range(0, len(audio), step):
        yield audio[i:i + step]


@contextlib.contextmanager
def busy_host(processes: int | None = None):
    """The host's CPU kept busy by ``processes`` (default: one per core) spinning at the lowest priority, as a
    neighbour's batch job would: every core reads as fully used, yet the test's own processes lose little time."""
    spinners = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
                for _ in range(processes or os.cpu_count() or 1)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def collect(stream, timeout: float = 60.0) -> list:
    """Every event of a finished stream, read with the blocking reader."""
    events = []
    while True:
        ev = stream.next_event(timeout=timeout)
        if ev is None:
            return events
        events.append(ev)


# Sentences the bundled demo model transcribes word for word in the en-us, en-gb and en espeak-ng voices at 160
# and 175 words per minute (checked with Engine.transcribe; for a new model, bench/sentences_of_tests.py lists
# what changes in those of four words or more). Not here, for instance: "can you call john for me" ("call goo"
# in en-gb), "remind me on friday" ("remind me to on friday"), "play some music" ("play som").
RELIABLE_SENTENCES = (
    "call me at seven thirty", "two three four", "set a timer for ten minutes", "please open the window",
    "turn on the lights", "call me at seven thirty tomorrow morning", "turn on the radio",
    "can you call mary for me",
)

# A name the demo model does not hear unaided, in a sentence and voice where it mishears it: every adapter's
# keyterm test boosts it and expects it heard (checked with Engine.transcribe).
KEYTERM = "radiohead"
KEYTERM_VOICE = "en-gb"
KEYTERM_SENTENCE = "play the song by radiohead"
KEYTERM_MISHEARD = "play the song by radio had"  # the demo model's transcript without boosting


def keyterm_speech() -> np.ndarray:
    """``KEYTERM_SENTENCE`` spoken in ``KEYTERM_VOICE``."""
    return speech(KEYTERM_SENTENCE, voice=KEYTERM_VOICE)
