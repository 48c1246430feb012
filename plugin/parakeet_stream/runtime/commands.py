"""What callers ask of a stream, queued in order for the inference thread (``InferenceLoop.submit``)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import numpy as np

from ..endpointing import EndpointingOptions
from ..streaming.keyterms import Keyterms


class Barrier(str, enum.Enum):
    """A flush or a finish: the stream is decoded to the end of its audio before later commands apply. Its value
    is the endpoint reason of the segment it closes."""

    FLUSH = "flush"  # the segment ends, the stream goes on
    FINISH = "finish"  # the stream ends


@dataclass(frozen=True)
class Finalize:
    barrier: Barrier


@dataclass(frozen=True)
class SetEndpointing:
    options: EndpointingOptions


@dataclass(frozen=True)
class SetKeyterms:
    keyterms: Keyterms | None  # spelled for the model; None: no more boosting


@dataclass(frozen=True)
class Close:
    """The owner is gone: free the stream's slot now, even behind a barrier still being decoded."""


Command = Union[Finalize, SetEndpointing, SetKeyterms, Close]  # (audio has its own path: ``submit_audio``)


@dataclass(frozen=True)
class Queued:
    command: Command
    at: float  # time.monotonic() when submitted


class QueuedAudio:
    """A stream's audio packets queued back to back, joined while they wait for the inference thread: it applies
    them as one command (per packet it would pay ~1 us of command handling, at 50 packets a second per stream and
    a thousand streams). Packets are copied into one buffer as they are joined, on the caller's thread, so the
    inference thread takes a view instead of joining them. Each packet keeps its push time: result latency counts
    from it."""

    __slots__ = ("_buf", "_n", "last_size", "pushed_at", "ends")

    def __init__(self, samples: np.ndarray, pushed_at: float) -> None:
        self._buf = samples  # a lone packet is kept as it came; the buffer is made when a second one joins
        self._n = self.last_size = samples.shape[0]
        self.pushed_at = [pushed_at]  # time.monotonic() of each packet's push
        self.ends = [self._n]  # where each packet ends, in samples from the start of the first

    def join(self, samples: np.ndarray, pushed_at: float) -> None:
        n = samples.shape[0]
        if len(self.ends) == 1 or self._n + n > self._buf.shape[0]:  # (the lone packet is the caller's array)
            grown = np.empty(max(2 * (self._n + n), 8 * self.last_size), dtype=np.float32)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:self._n + n] = samples
        self._n += n
        self.last_size = n
        self.pushed_at.append(pushed_at)
        self.ends.append(self._n)

    def samples(self) -> np.ndarray:
        return self._buf[:self._n]
