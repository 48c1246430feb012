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
class Audio:
    samples: np.ndarray  # float32 at the model's rate


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


Command = Union[Audio, Finalize, SetEndpointing, SetKeyterms, Close]


@dataclass(frozen=True)
class Queued:
    command: Command
    at: float  # time.monotonic() when submitted


@dataclass
class QueuedAudio:
    """A stream's audio packets queued back to back, joined while they wait for the inference thread: it applies
    them as one command (per packet it would pay ~1 us of command handling, at 50 packets a second per stream and
    a thousand streams). Each packet keeps its push time: result latency counts from it."""

    parts: list[np.ndarray]
    pushed_at: list[float]  # time.monotonic() of each part's push
    ends: list[int]  # where each part ends, in samples from the start of the first

    @classmethod
    def of(cls, samples: np.ndarray, pushed_at: float) -> QueuedAudio:
        return cls([samples], [pushed_at], [samples.shape[0]])

    def join(self, samples: np.ndarray, pushed_at: float) -> None:
        self.parts.append(samples)
        self.pushed_at.append(pushed_at)
        self.ends.append(self.ends[-1] + samples.shape[0])

    def samples(self) -> np.ndarray:
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
