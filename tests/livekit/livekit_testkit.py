"""Helpers shared by the LiveKit tests: the sentences the demo model knows, frames, and waiting."""
from __future__ import annotations

import asyncio

import numpy as np

MODEL = "espeak-demo-en"
CHUNK_MS = 160

# sentences from the demo model's templates that it recognises exactly (checked against offline decoding)
TIMER = "set a timer for twenty minutes"
CALL = "call me at seven thirty tomorrow"
ALARM = "set an alarm for six o clock tomorrow morning"
MESSAGE = "send a message to anna and say i will be late"
LIGHTS = "turn off the lights in the kitchen"

def frames(audio: np.ndarray, rate: int = 16000, channels: int = 1, frame_ms: int = 20):
    """Split float32 audio (samples, or samples x channels) into int16 ``rtc.AudioFrame``s."""
    from livekit import rtc

    if audio.ndim == 1:
        audio = np.repeat(audio[:, None], channels, axis=1)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    step = rate * frame_ms // 1000
    out = []
    for i in range(0, len(pcm), step):
        block = pcm[i : i + step]
        out.append(rtc.AudioFrame(block.tobytes(), rate, channels, len(block)))
    return out


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


async def collect(stream) -> list:
    """Every event of a LiveKit STT stream until it ends."""
    return [ev async for ev in stream]


async def until(predicate, timeout: float = 60.0, what="condition") -> None:
    """Wait for ``predicate()`` (a safety net against hangs, not a performance assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.05)
