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
