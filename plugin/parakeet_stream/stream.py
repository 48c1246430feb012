"""The handle a caller holds for one live audio stream.

``push``/``flush``/``finish``/``close`` only validate, convert and enqueue: they never wait for inference,
so a caller on an event loop is never blocked by the model and one slow consumer cannot stall another stream
(events queue up per stream, unbounded). The inference thread owns everything else (``runtime/loop.py``).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
import uuid
from typing import AsyncIterator, Protocol, Sequence

import numpy as np

from .audio import Resampler, to_float32
from .endpointing import EndpointingOptions, updated_options
from .errors import StreamClosedError
from .events import Event, StreamEnded, StreamFailed
from .runtime.commands import Barrier, Close, Command, Finalize, SetEndpointing, SetKeyterms
from .streaming.keyterms import Keyterms


class StreamHost(Protocol):
    """What a stream needs from the inference loop that serves it (``runtime.loop.InferenceLoop``)."""

    def submit_audio(self, state, samples: np.ndarray) -> None:
        """Queue 16 kHz float32 samples for the stream whose loop-side state is ``state``, in order."""

    def submit(self, state, command: Command) -> None:
        """Queue ``command`` for the stream whose loop-side state is ``state``, in order."""

    def check_keyterms(self, keyterms: Sequence[str] | None, weight: float | None = None) -> Keyterms | None:
        """``keyterms`` as the model spells them, or a ValueError naming what is wrong."""

_TERMINAL = (StreamEnded, StreamFailed)


class EventChannel:
    """Thread-safe, unbounded event queue with a blocking reader and an asyncio reader."""

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        # held as the bare lock (a C call; ``Condition.__enter__`` is Python): the writer takes it per stream-step
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closed = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._blocked = 0  # readers blocked in ``get``

    def put(self, event: Event | None) -> None:
        """``None`` marks the end of the channel (after a terminal event or close)."""
        self.put_all((event,))

    def put_all(self, events: Sequence[Event | None], wakeups: Wakeups | None = None) -> None:
        """Events of one step, taken by readers together (one lock and one wake-up for them all). Asyncio readers
        are woken through ``wakeups`` when given (with the other streams' of the batch), else at once."""
        with self._lock:
            if self._closed:
                return
            for event in events:
                self._items.append(event)
                if event is None:
                    self._closed = True
                    break
            if self._blocked:
                self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        if waiters and wakeups is not None:
            wakeups.add(waiters)
        elif waiters:
            Wakeups().add(waiters).send()

    def get(self, timeout: float | None) -> Event | None | bool:
        """The next event, ``None`` at end of channel, ``False`` on timeout."""
        with self._lock:
            if not self._items:
                if timeout is not None and timeout <= 0:
                    return False
                self._blocked += 1  # (the writer notifies only while a reader blocks: most steps none does)
                try:
                    if not self._cond.wait_for(lambda: self._items, timeout):
                        return False
                finally:
                    self._blocked -= 1
            item = self._items.popleft()
            if item is None:
                self._items.appendleft(None)  # stay ended for every later reader
            return item

    async def aget(self) -> Event | None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    if item is None:
                        self._items.appendleft(None)
                    return item
                fut = loop.create_future()
                self._waiters.append((loop, fut))
            await fut


class Wakeups:
    """Asyncio readers to wake, gathered while the inference thread hands over a batch's events: then one
    ``call_soon_threadsafe`` per event loop (a write to its self-pipe, and the loop's wake-up) instead of one per
    stream. A server reads a thousand streams on one loop."""

    def __init__(self) -> None:
        self._futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}

    def add(self, waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]) -> Wakeups:
        for loop, fut in waiters:
            self._futures.setdefault(loop, []).append(fut)
        return self

    def send(self) -> None:
        pending, self._futures = self._futures, {}
        for loop, futures in pending.items():
            try:
                loop.call_soon_threadsafe(_wake_all, futures)
            except RuntimeError:  # the loop is closed: its readers are gone
                pass


def _wake_all(futures: list[asyncio.Future]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class Stream:
    """One live audio stream on an engine. Create with ``Engine.open_stream``."""

    def __init__(self, scheduler: StreamHost, state, sample_rate: int, stream_id: str | None) -> None:
        self.id = stream_id or uuid.uuid4().hex[:12]
        self.sample_rate = sample_rate
        self._scheduler = scheduler
        self._state = state
        self._resampler = Resampler(sample_rate)
        self._events = EventChannel()
        self._lock = threading.Lock()  # serialises pushes: the resampler is stateful
        self._input_samples = 0
        self.keyterms = None  # the boosted phrases (``keyterms.Keyterms``), or None
        self._finished = False
        self._closed = False
        self.endpointing: EndpointingOptions = state.opts  # as last set by the caller (the engine may lag)

    # -- input -------------------------------------------------------------------------------------------
    def push(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Queue audio at the stream's sample rate (see ``audio.ACCEPTED``). Raises AudioFormatError/StreamClosedError."""
        samples = to_float32(pcm)
        with self._lock:
            self._check_open("push audio to")
            if samples.shape[0] == 0:
                return
            self._input_samples += samples.shape[0]
            resampled = self._resampler.process(samples)
            if resampled.shape[0]:
                self._scheduler.submit_audio(self._state, resampled)

    def flush(self) -> None:
        """Finalize the current segment now and keep the stream open for more audio."""
        with self._lock:
            self._check_open("flush")
            self._drain_resampler()
            self._scheduler.submit(self._state, Finalize(Barrier.FLUSH))

    def finish(self) -> None:
        """No more audio: deliver the last Final, then StreamEnded. Calling it again does nothing."""
        with self._lock:
            if self._finished or self._closed:
                return
            self._finished = True
            self._drain_resampler()
            self._scheduler.submit(self._state, Finalize(Barrier.FINISH))

    def update_endpointing(self, options: EndpointingOptions | None = None, /, **changes) -> EndpointingOptions:
        """Change this stream's endpointing live, to ``options`` (whole) and/or the named ``changes``: VAD threshold,
        speech/silence durations and pad, trailing blank, maximum segment length, ``<EOU>`` (``vad`` itself cannot
        be switched; open a new stream for that). The change takes effect in stream order, after the audio pushed
        before it was received, from the next VAD window and step not yet run. Raises ValueError (naming what is
        accepted) and changes nothing on bad input."""
        if options is not None:
            changes = {**dataclasses.asdict(options), **changes}
        with self._lock:
            self._check_open("update endpointing of")
            opts = updated_options(self.endpointing, changes)
            self.endpointing = opts
            self._scheduler.submit(self._state, SetEndpointing(opts))
        return opts

    def update_keyterms(self, keyterms: Sequence[str] | None, weight: float | None = None) -> None:
        """Boost these phrases from now on (None or empty: no boosting), in stream order like
        ``update_endpointing``: from the first step after the audio pushed before this call. Raises ValueError
        (naming the limit) and changes nothing on bad input."""
        boost = self._scheduler.check_keyterms(keyterms, weight)
        with self._lock:
            self._check_open("update keyterms of")
            self._set_keyterms(boost)

    def _set_keyterms(self, boost) -> None:
        self.keyterms = boost
        self._scheduler.submit(self._state, SetKeyterms(boost))

    def close(self) -> None:
        """Abandon the stream: its slot is freed and its event iterator ends. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._scheduler.submit(self._state, Close())
        self._events.put(None)

    def _drain_resampler(self) -> None:
        tail = self._resampler.process(np.zeros(0, np.float32), last=True)
        if tail.shape[0]:
            self._scheduler.submit_audio(self._state, tail)
        self._resampler = Resampler(self.sample_rate)  # a flushed resampler cannot continue

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise StreamClosedError(f"cannot {what} stream {self.id}: it was closed")
        if self._finished:
            raise StreamClosedError(f"cannot {what} stream {self.id}: finish() was already called")

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio pushed so far: the stream clock."""
        return self._input_samples / self.sample_rate

    @property
    def processed_seconds(self) -> float:
        """Stream seconds the engine has decoded: ``audio_seconds - processed_seconds`` is this stream's lag."""
        return self._state.processed_time

    @property
    def lag_seconds(self) -> float:
        """How long this stream's oldest decodable audio has waited for the engine, as of its last look (every
        0.5 s); 0 while keeping up. A stream is logged as falling behind from 2 s (``runtime.loop.LAG_BEHIND_S``)."""
        return self._state.lag_s

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        return self._finished

    # -- output (called by the scheduler thread) ------------------------------------------------------------
    def _emit_all(self, events: list[Event], wakeups: Wakeups | None = None) -> None:
        """Hand over one step's events (a terminal event, if any, comes last: the channel ends with it)."""
        if isinstance(events[-1], _TERMINAL):
            events = [*events, None]
        self._events.put_all(events, wakeups)

    # -- consumers -----------------------------------------------------------------------------------------
    def next_event(self, timeout: float | None = None) -> Event | None:
        """Blocking read for thread consumers: the next event, or None on timeout or once the stream has ended."""
        item = self._events.get(timeout)
        return None if item is False else item

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Event]:
        while True:
            item = await self._events.aget()
            if item is None:
                return
            yield item

    def __repr__(self) -> str:
        return f"Stream(id={self.id!r}, sample_rate={self.sample_rate}, audio_seconds={self.audio_seconds:.2f})"


