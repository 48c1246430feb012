"""Turning whatever a caller pushes into 16 kHz float32 mono, once.

Validation lives here so every adapter gets the same clear errors; resampling uses soxr's streaming
resampler (stateful per stream, so packet boundaries leave no seams).
"""
from __future__ import annotations

import numpy as np

from .errors import AudioFormatError

MODEL_SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
ACCEPTED = "int16 little-endian mono bytes, or a 1-D numpy array of float32 (-1..1) or int16 samples"
_INT16_LE = np.dtype("<i2")
_INT16_SCALE = np.float32(1 / 32768)  # (a power of two: the same floats as dividing)


def check_sample_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
        raise AudioFormatError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f"sample_rate {sample_rate} Hz is not supported; accepted: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return int(sample_rate)


def to_float32(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Validate one push and return its samples as a new float32 array in -1..1."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise AudioFormatError(
                f"got {len(raw)} bytes, which is not a whole number of int16 samples; accepted: {ACCEPTED}"
            )
        return np.multiply(np.frombuffer(raw, dtype=_INT16_LE), _INT16_SCALE, dtype=np.float32)
    if not isinstance(pcm, np.ndarray):
        raise AudioFormatError(f"got {type(pcm).__name__}; accepted: {ACCEPTED}")
    if pcm.ndim != 1:
        raise AudioFormatError(
            f"got an array of shape {pcm.shape}; audio must be mono and 1-D (mix channels down first); "
            f"accepted: {ACCEPTED}"
        )
    if pcm.dtype == np.int16:
        return np.multiply(pcm, _INT16_SCALE, dtype=np.float32)
    if pcm.dtype not in (np.float32, np.float64):
        raise AudioFormatError(f"got dtype {pcm.dtype}; accepted: {ACCEPTED}")
    samples = pcm.astype(np.float32, copy=True)
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioFormatError(f"got {bad} NaN or infinite samples; audio samples must be finite floats in -1..1")
    return samples


class Resampler:
    """Per-stream streaming resampler to the model rate (a no-op at 16 kHz)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = check_sample_rate(sample_rate)
        self._soxr = None
        if self.sample_rate != MODEL_SAMPLE_RATE:
            import soxr

            self._soxr = soxr.ResampleStream(self.sample_rate, MODEL_SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._soxr is None:
            return samples
        return self._soxr.resample_chunk(samples, last=last)
