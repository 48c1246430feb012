"""What a stream tells its consumer.

Every segment (an utterance between two endpoints) produces, in order:
``SpeechStarted`` → zero or more ``Partial`` → exactly one ``Final`` (its text may be empty when the
endpointer heard speech the model did not transcribe) → ``SpeechEnded``. ``StreamEnded`` is the last event
of a stream that was finished; a closed (abandoned) stream ends its event iterator without it.

Times are seconds on the stream's own audio clock: 0.0 is the first sample pushed, and every sample pushed
(speech or silence, at any input rate) advances it by its duration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

EndpointReason = Literal["vad", "eou", "blank", "flush", "finish", "max_duration"]


@dataclass(frozen=True)
class Word:
    """A recognised word with its place on the stream clock.

    ``start`` is the start of the encoder frame (80 ms on Parakeet) that emitted the word's first token and
    ``end`` the end of the frame that emitted its last token; ``confidence`` is the geometric mean of the
    probabilities the greedy decoder gave the word's tokens (0..1).
    """

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class SpeechStarted:
    segment_id: int
    time: float


@dataclass(frozen=True)
class Partial:
    """The running transcript of the current segment after one engine step.

    RNNT greedy decoding never revises emitted tokens, so ``text`` only ever grows: ``delta`` is what this
    step appended. ``words`` are the segment's words so far (the last one may still grow by a sub-word token).
    ``audio_end`` is how much of the stream's audio this result depends on (the end of the STFT window of the
    last feature frame the encoder has seen) and ``emitted_at`` the ``time.monotonic()`` at which it was
    produced: ``emitted_at`` minus the arrival time of sample ``audio_end`` is the engine's latency.
    """

    segment_id: int
    text: str
    delta: str
    words: tuple[Word, ...]
    audio_end: float
    emitted_at: float


@dataclass(frozen=True)
class Final:
    """The settled transcript of one segment; ``start``/``end`` span its speech on the stream clock."""

    segment_id: int
    text: str
    words: tuple[Word, ...]
    start: float
    end: float
    reason: EndpointReason
    audio_end: float
    emitted_at: float


@dataclass(frozen=True)
class SpeechEnded:
    segment_id: int
    time: float


@dataclass(frozen=True)
class StreamEnded:
    """Everything pushed before ``finish()`` has been transcribed and delivered."""

    audio_seconds: float
    segments: int


@dataclass(frozen=True)
class StreamFailed:
    """The engine could not process this stream (other streams are unaffected); no more events follow."""

    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)


Event = Union[SpeechStarted, Partial, Final, SpeechEnded, StreamEnded, StreamFailed]
