"""The audio the benchmark's streams play: espeak-ng speech composed with pauses, or files, and where the speech
ends in each (the reference for final latency)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from parakeet_stream.audio import MODEL_SAMPLE_RATE

from ..speech import espeak

# Sentences the demo model transcribes word for word (tests/support.py RELIABLE_SENTENCES) plus a few more
# from its closed vocabulary, so a run on the demo model also shows real text.
SENTENCES = (
    "call me at seven thirty", "four five six", "set a timer for ten minutes", "please open the window",
    "turn on the lights", "call me at seven thirty tomorrow morning", "we have ten minutes left",
    "can you call john for me", "please close the door", "set an alarm for six fifteen",
)
VOICES = ("en-us", "en-gb")
SPEECH_RATE = 160  # words per minute


@dataclass
class Workload:
    """Distinct stream audios (stream i plays ``audio[i % len]``) and where speech ends in each (seconds)."""

    audio: list[np.ndarray]
    speech_ends: list[list[float]]
    source: str

    def for_stream(self, i: int) -> int:
        return i % len(self.audio)


def compose(utterances: list[np.ndarray], pauses: list[float], tail_s: float = 1.5) -> tuple[np.ndarray, list[float]]:
    """Utterances separated by pauses, ending in silence long enough for the VAD to close the last one."""
    parts, ends, pos = [], [], 0
    for utt, pause in zip(utterances, pauses):
        gap = np.zeros(int(pause * MODEL_SAMPLE_RATE), np.float32)
        parts += [gap, utt]
        pos += gap.shape[0] + utt.shape[0]
        ends.append(pos / MODEL_SAMPLE_RATE)
    parts.append(np.zeros(int(tail_s * MODEL_SAMPLE_RATE), np.float32))
    return np.concatenate(parts), ends


def speech_workload(seconds: float, variants: int = 8, seed: int = 0) -> Workload:
    """``variants`` espeak-ng compositions of about ``seconds`` each: sentences, voices and pauses vary. Each
    utterance's trailing silence is trimmed, so its end is where its speech ends."""
    rng = np.random.default_rng(seed)
    spoken: dict[tuple[str, str], np.ndarray] = {}  # a sentence in a voice is synthesized once
    audios, ends = [], []
    for _ in range(variants):
        utts, pauses, total = [], [], 0.0
        while total < seconds - 2.5 or not utts:
            key = (SENTENCES[rng.integers(len(SENTENCES))], VOICES[rng.integers(len(VOICES))])
            if key not in spoken:
                spoken[key] = espeak(*key, SPEECH_RATE, trim=True)
            utt = spoken[key]
            pause = float(rng.uniform(0.7, 1.5))
            utts.append(utt)
            pauses.append(pause)
            total += pause + utt.shape[0] / MODEL_SAMPLE_RATE
        audio, e = compose(utts, pauses)
        audios.append(audio)
        ends.append(e)
    return Workload(audios, ends, f"espeak-ng, {variants} compositions of ~{seconds:.0f} s (sentences with pauses)")


def detect_speech_ends(audio: np.ndarray, min_gap_s: float = 0.3) -> list[float]:
    """Speech ends in a recording: ends of loud 10 ms runs followed by at least ``min_gap_s`` of quiet."""
    hop = MODEL_SAMPLE_RATE // 100
    n = audio.shape[0] // hop
    if n == 0:
        return []
    energy = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = energy > max(float(energy.max()) * 0.03, 1e-4)
    ends, last_loud = [], None
    for i, is_loud in enumerate(loud):
        if is_loud:
            last_loud = i
        elif last_loud is not None and (i - last_loud) * 0.01 >= min_gap_s:
            ends.append((last_loud + 1) * 0.01)
            last_loud = None
    return ends


def file_workload(paths: tuple[str, ...]) -> Workload:
    """Each file as one stream audio (mono, 16 kHz), with 1.5 s of silence after it so the VAD closes the last
    utterance; speech ends are detected from its energy."""
    import soundfile as sf
    import soxr

    audios, ends = [], []
    for p in paths:
        audio, sr = sf.read(p, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), sr, MODEL_SAMPLE_RATE).astype(np.float32) \
            if sr != MODEL_SAMPLE_RATE else audio.mean(axis=1).astype(np.float32)
        audio = np.concatenate([audio, np.zeros(int(1.5 * MODEL_SAMPLE_RATE), np.float32)])
        audios.append(audio)
        ends.append(detect_speech_ends(audio))
    return Workload(audios, ends, "files: " + ", ".join(os.path.basename(p) for p in paths))
