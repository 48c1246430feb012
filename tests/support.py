"""Helpers for tests: spoken audio from espeak-ng, silence, 20 ms packets, event collection."""
from __future__ import annotations

import functools
import subprocess
import tempfile

import numpy as np


@functools.lru_cache(maxsize=None)
def _speak(text: str, voice: str, rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", f.name, text], check=True)
        audio, sr = sf.read(f.name, dtype="float32")
    return soxr.resample(audio, sr, 16000).astype(np.float32)


def speech(text: str, voice: str = "en-us", rate: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 16 kHz float32 mono (cached; callers get a copy)."""
    return _speak(text, voice, rate).copy()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * 16000)), dtype=np.float32)


def packets(audio: np.ndarray, ms: int = 20, rate: int = 16000):
    step = rate * ms // 1000
    for i in range(0, len(audio), step):
        yield audio[i:i + step]


def collect(stream, timeout: float = 60.0) -> list:
    """Every event of a finished stream, read with the blocking reader."""
    events = []
    while True:
        ev = stream.next_event(timeout=timeout)
        if ev is None:
            return events
        events.append(ev)


# Sentences the bundled demo model transcribes word for word in the en-us, en-gb and en espeak-ng voices at 160
# and 175 words per minute (checked with Engine.transcribe). Not here: bare runs of digits whose last word ends
# the audio ("five six seven" comes out as "five six") and "see you on monday" (heard as "you on monday").
RELIABLE_SENTENCES = (
    "call me at seven thirty", "two three four", "set a timer for ten minutes", "please open the window",
    "turn on the lights", "call me at seven thirty tomorrow morning", "turn on the radio",
    "can you call john for me",
)
