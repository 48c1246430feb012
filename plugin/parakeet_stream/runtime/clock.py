"""The chunk clock: when the inference thread steps the streams that are ready.

Streams start at arbitrary moments, so their chunks complete at different phases; stepped the moment each is
ready, every step would carry one or two streams and pay the model's fixed cost (weights read, kernel launches)
again and again. So steps follow a clock: at most one every ``window_s``, counted from the start of the previous
step, and each takes every stream ready by then; a stream waits at most one tick.
"""
from __future__ import annotations

import time
from typing import Protocol, Sequence

LOAD_STRETCH = 1.25  # a tick is at least this many times the last step


class ClockedStream(Protocol):
    """What the clock reads of a stream (``runtime.loop.BaseStreamState``)."""

    finalizing: object  # a barrier (flush or finish) being decoded, or None
    last_audio_at: float  # time.monotonic() of its last packet
    packet_s: float  # the duration of its packets

    def ready(self) -> bool: ...

    def seconds_until_ready(self) -> float: ...


class ChunkClock:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.last_step_at = float("-inf")  # time.monotonic() when the last step began
        self.last_step_s = 0.0  # how long it took

    def stepped(self, started_at: float, seconds: float) -> None:
        self.last_step_at, self.last_step_s = started_at, seconds

    def next_step(self, ready: Sequence[ClockedStream], streams: Sequence[ClockedStream]) -> float | None:
        """When to step the ``ready`` streams: None = now, else the next tick.

        Under load a tick is stretched to ``LOAD_STRETCH`` times the last step's duration: back-to-back steps
        would each take only what became ready during the previous one, paying the fixed cost more often than the
        load allows (on 2 CPU cores that spiral turned a kept-up load into a growing backlog), while a stretched
        tick lets batches grow until the steps fit. A flush or a finish never waits, nor do ready streams when no
        other stream receiving audio will be ready by the tick (its audio arrives in real time: waiting would only
        add latency, and the batch would be the same)."""
        if not ready or self.window_s <= 0:
            return None
        now = time.monotonic()
        if any(s.finalizing for s in ready):
            return None
        tick = self.last_step_at + max(self.window_s, LOAD_STRETCH * self.last_step_s)
        if now >= tick or not self.due_by(streams, tick, now):
            return None
        return tick

    def due_by(self, streams: Sequence[ClockedStream], tick: float, now: float) -> list:
        """The streams not ready yet that are worth waiting for: receiving audio (in the last two ticks) and due to
        complete their chunk by ``tick`` with a packet to spare: from their next packet at their cadence (one
        packet after the last), or from now if that is late, the audio still missing ends before the tick.
        Decided once per plan rather than at every packet: a stream that cannot complete its chunk before its next
        packet is not worth the wait."""
        recent = now - 2 * self.window_s
        return [s for s in streams if not s.ready() and s.last_audio_at >= recent
                and max(now, s.last_audio_at + s.packet_s) + s.seconds_until_ready() <= tick]
