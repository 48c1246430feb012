"""Speech from espeak-ng and flite: what the demo model was trained on, and what tests, benchmarks and examples speak
to it."""
from __future__ import annotations

import shutil
import subprocess
from typing import Sequence

import numpy as np
from parakeet_stream.audio import MODEL_SAMPLE_RATE


class SynthesizerMissingError(RuntimeError):
    pass


def synthesizer_binary(name: str) -> str:
    """Where ``name`` (``espeak-ng`` or ``flite``) is, or a SynthesizerMissingError saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise SynthesizerMissingError(f"{name} is not on PATH: install it (apt-get install {name}), or synthesize "
                                      "the data on another host and pass --data DIR")
    return path


def espeak(text: str, voice: str = "en-us", rate: int | None = None, *, args: Sequence[str] = (),
           sample_rate: int = MODEL_SAMPLE_RATE, trim: bool = False) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 mono at ``sample_rate``: ``voice`` (``-v``, an accent with an optional
    ``+variant``), ``rate`` in words per minute (``-s``; None: espeak-ng's 175), more ``args`` as espeak-ng takes
    them (``-p`` pitch, ``-g`` word gap). ``trim``: cut after the last sample above 1 % of the peak, so the
    clip ends where its speech ends. Not cached: training speaks thousands of distinct utterances; callers that
    repeat sentences (tests) keep their own cache."""
    import soxr

    rate_args = ["-s", str(rate)] if rate else []
    command = [synthesizer_binary("espeak-ng"), "--stdout", "-v", voice, *rate_args, *args, text]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    source_rate = int.from_bytes(raw[24:28], "little")  # the header's data size is bogus when writing to stdout
    audio = np.frombuffer(raw[44:], dtype=np.int16).astype(np.float32) / 32768.0
    audio = soxr.resample(audio, source_rate, sample_rate).astype(np.float32)
    return trim_trailing_silence(audio) if trim else audio


def flite(text: str, voice: str = "kal16", *, stretch: float = 1.0, f0: float | None = None,
          sample_rate: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """``text`` spoken by flite as float32 mono at ``sample_rate``: ``voice`` one of ``flite -lv`` (``kal`` speaks at
    8 kHz, the others at 16 kHz), ``stretch`` its durations (above 1: slower), ``f0`` its mean pitch in Hz (None:
    the voice's own; ``rms`` ignores it)."""
    import tempfile

    import soundfile as sf
    import soxr

    args = ["--setf", f"duration_stretch={stretch:.3f}", *(["--setf", f"int_f0_target_mean={f0:.1f}"] if f0 else [])]
    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run([synthesizer_binary("flite"), "-voice", voice, *args, "-t", text, "-o", wav.name],
                       capture_output=True, check=True)
        audio, source_rate = sf.read(wav.name, dtype="float32")
    return soxr.resample(audio, source_rate, sample_rate).astype(np.float32)


def trim_trailing_silence(audio: np.ndarray) -> np.ndarray:
    """Cut after the last sample above 1 % of the peak, so the clip's end is where its speech ends."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * max(float(np.abs(audio).max()), 1e-6))
    return audio[: loud[-1] + 1] if loud.size else audio
