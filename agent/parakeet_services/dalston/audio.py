"""Decoding dalston's wire audio (``pcm_s16le``, ``pcm_f32le``, ``mulaw``, ``alaw``; mono or stereo) to mono float32.

The engine takes mono int16/float32 at any rate and resamples once, so this is all the adapter does with audio.
G.711 is decoded through 256-entry tables equal to ``audioop.ulaw2lin``/``alaw2lin`` (``audioop`` is gone in
Python 3.13), built once from the ITU-T reference expansion.
"""
from __future__ import annotations

import numpy as np

BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}


class InvalidAudio(ValueError):
    """A binary frame that cannot be decoded in the session's encoding; the message says why."""


def _ulaw_table() -> np.ndarray:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        u = ~code & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        table[code] = (0x84 - t) if u & 0x80 else (t - 0x84)
    return table


def _alaw_table() -> np.ndarray:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        a = code ^ 0x55
        t = a & 0x0F
        seg = (a & 0x70) >> 4
        if seg == 0:
            t = (t << 4) + 8
        else:
            t = ((t << 4) + 0x108) << (seg - 1)
        table[code] = t if a & 0x80 else -t
    return table


ULAW_TO_INT16 = _ulaw_table()
ALAW_TO_INT16 = _alaw_table()


def decode_frame(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """Return the frame as mono float32 in [-1, 1]; stereo is averaged (dalston never down-mixed it).

    Raises :class:`InvalidAudio` when the byte count is not a whole number of samples for every channel or a
    float sample is NaN/inf, so the session can reject the frame and go on.
    """
    width = BYTES_PER_SAMPLE[encoding] * channels
    if len(data) % width:
        layout = "mono" if channels == 1 else f"{channels}-channel"
        raise InvalidAudio(
            f"Audio frame of {len(data)} bytes is not a whole number of {layout} {encoding} samples "
            f"({width} bytes each); send frames whose length is a multiple of {width}")
    if encoding == "pcm_s16le":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif encoding == "pcm_f32le":
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            raise InvalidAudio("Audio frame holds NaN or infinite pcm_f32le samples; send finite floats in -1..1")
        samples = np.clip(samples, -1.0, 1.0)
    else:
        table = ULAW_TO_INT16 if encoding == "mulaw" else ALAW_TO_INT16
        samples = table[np.frombuffer(data, dtype=np.uint8)].astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


def frame_seconds(byte_count: int, encoding: str, channels: int, rate: int) -> float:
    """Duration of a frame at the client's rate (dalston used the processing rate here: its known bug 7)."""
    return byte_count / (BYTES_PER_SAMPLE[encoding] * channels * rate)
