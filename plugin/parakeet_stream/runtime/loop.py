"""The engine's single inference thread, whatever the model kind.

Callers on any thread only enqueue (``submit``) or hand over a function (``call``); the thread applies each
stream's commands in order (audio, flush, finish, close), then lets the subclass step every stream that is
ready. A flush or finish is a barrier: later commands of that stream wait until it has been decoded to the end.
Subclasses: ``streaming.cache_aware.ChunkScheduler`` (cache-aware streaming) and ``segmented.SegmentedScheduler``
(offline-only checkpoints, one decode per VAD utterance).
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import logging
import threading
import time
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..audio import MODEL_SAMPLE_RATE
from ..endpointing import EndpointingOptions, VoiceActivity
from ..events import Event, StreamFailed, Word
from .clock import ChunkClock
from .commands import Barrier, Close, Command, Finalize, Queued, QueuedAudio, SetEndpointing, SetKeyterms
from ..stream import Stream, Wakeups
from ..streaming.keyterms import Keyterms, check_keyterms
from .metrics import EngineMetrics
from .threads import ThreadGovernor
from ..streaming.offline import decode_whole
from ..streaming.transcript import Token, TranscriptTracker, Vocabulary

logger = logging.getLogger("parakeet_stream")

POLL_S = 0.02  # while audio flows the thread wakes this often between decisions (``_plan_sleep``) ...
POLL_SPACING = 4  # ... or this many times the last wake-up's feature and VAD work, whichever is longer
LAG_BEHIND_S = 2.0  # a stream is behind when decodable audio has waited this long (``_check_lag``) ...
LAG_CAUGHT_UP_S = 1.0  # ... and has caught up again once it waits less than this
LAG_CHECK_S = 0.5  # how often the thread looks
LAG_LOG_IDS = 8  # stream ids named in a line about several streams


class BaseStreamState:
    """What the inference thread keeps for every stream. Only that thread touches it (but ``inbox``). Slotted: a
    round walks a thousand of them, and compact objects keep more of them in the CPU's caches."""

    __slots__ = ("opts", "inbox", "backlog", "handle", "tracker", "vad", "total_samples", "submitted_samples",
                 "finalizing", "last_audio_at", "packet_s", "arrivals", "closed", "lag_s", "behind_since",
                 "abandoned", "counted", "attached", "ready_at", "__dict__")

    def __init__(self, loop: InferenceLoop, opts: EndpointingOptions, vad: bool) -> None:
        self.opts = opts
        self.inbox: collections.deque[Queued | QueuedAudio] = collections.deque()  # guarded by the loop's condition
        self.backlog: collections.deque[Queued | QueuedAudio] = collections.deque()
        self.handle: Stream | None = None
        self.tracker = TranscriptTracker(loop.vocab, loop.frame_s)
        self.vad = VoiceActivity(opts, device=str(loop.device)) if vad else None
        self.total_samples = 0  # 16 kHz samples applied by the inference thread, all epochs
        self.submitted_samples = 0  # 16 kHz samples submitted by the caller (guarded by the loop's condition)
        self.finalizing: Barrier | None = None  # once its barrier was reached
        self.last_audio_at = 0.0  # time.monotonic() when the last audio applied was pushed
        self.packet_s = 0.0  # how long that packet was (seconds at 16 kHz): the stream's cadence
        self.arrivals: collections.deque[Arrival] = collections.deque()  # the packets applied, not yet all decoded
        self.closed = False
        self.lag_s = 0.0  # how long its decodable audio has waited, at the thread's last look (``_check_lag``)
        self.behind_since: float | None = None  # when it fell behind (None: keeping up)
        self.abandoned = False  # its owner closed it: released at the thread's next look, barrier or not
        self.counted = True  # counts against the engine's capacity
        self.attached = False  # the inference thread has taken it on (``_attach_and_apply``)
        # where on the stream's sample clock its next chunk is complete (None: unknown, any moment): the thread
        # moves it when it takes a chunk; callers read it to decide whether their audio wakes the thread
        self.ready_at: int | None = None

    def ready(self) -> bool:
        raise NotImplementedError

    def samples_until_ready(self) -> int | None:
        """How many more 16 kHz samples the stream needs before it is ready; None = unknown (could be any moment)."""
        return None

    def seconds_until_ready(self) -> float:
        """``samples_until_ready`` in seconds; 0 when unknown."""
        samples = self.samples_until_ready()
        return 0.0 if samples is None else samples / MODEL_SAMPLE_RATE

    @property
    def processed_time(self) -> float:
        """Stream seconds the engine has dealt with (a streaming scheduler says how far it has decoded)."""
        return self.total_samples / MODEL_SAMPLE_RATE

    @property
    def processed_samples(self) -> int:
        """``processed_time`` in 16 kHz samples."""
        return self.total_samples


class InferenceLoop:
    """The thread that owns the model, and the streams it serves."""

    tracks_arrivals = False  # a subclass that records result latency (``_record_result_latency``) sets it
    # a subclass whose streams always know how much audio their next chunk needs (``samples_until_ready`` never
    # None, ``ready_at`` kept) sets it: then a wake-up looks only at the streams that changed, not at all of them
    tracks_readiness = False

    def __init__(self, model, *, frame_s: float, batch_window_s: float = 0.0) -> None:
        self.model = model
        self.clock = ChunkClock(batch_window_s)
        self._features_s = 0.0  # how long the last wake-up's features and VAD took (``_before_step``)
        self.frame_s = frame_s
        self.vocab = Vocabulary(model.tokenizer)
        param = next(model.encoder.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.metrics = EngineMetrics()
        self._states: list[BaseStreamState] = []
        # (taken bare where callers only queue, 50 times a second per stream: ``Condition.__enter__`` is Python)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._dirty: dict[BaseStreamState, None] = {}  # streams with commands not yet taken by the thread
        self._wake = False  # a command the thread must see before it sleeps on (guarded by _cond)
        self._wake_audio = False  # audio that must wake it (``_audio_wakes``)
        # audio that wakes the thread before its planned time (``_plan_sleep``): with ``_chunk_wakes``, audio that
        # completes its stream's next chunk (``ready_at``); else armed streams -> submitted_samples at which their
        # next chunk is complete, the thread waking once ``_crossings`` of them have crossed (0: any audio)
        self._chunk_wakes = False
        self._armed: dict[BaseStreamState, int] = {}
        self._crossings = 0
        # (``tracks_readiness``) every stream whose chunk may be complete in samples: those given audio or a
        # barrier since the last wake-up and those complete then; a wake-up looks at these only
        self._complete: dict[BaseStreamState, None] = {}
        self._held: dict[BaseStreamState, None] = {}  # streams whose commands wait behind a barrier
        self._last_audio_at = 0.0  # time.monotonic() of the last packet applied, any stream
        # asyncio readers of the events handed over, woken together: after each batch and each wake-up
        self._readers_to_wake = Wakeups()
        self._jobs: collections.deque = collections.deque()
        self._arrivals: list[BaseStreamState] = []  # opened, not yet attached by the inference thread
        self._live = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.threads: ThreadGovernor | None = None  # the steps' CPU thread count (set by the Engine)
        self._lag_checked_at = 0.0
        self._fell_behind: list[tuple[BaseStreamState, float]] = []  # (stream, its lag): this round's changes
        self._caught_up: list[tuple[BaseStreamState, float]] = []  # (stream, seconds it was behind)

    def run_forever(self) -> None:
        """Serve on the calling thread until ``stop()``: the thread that loaded the model (see ``Engine``)."""
        self._thread = threading.current_thread()
        self._run()

    # -- subclass hooks (all on the inference thread) ------------------------------------------------------
    def _new_state(self, opts: EndpointingOptions) -> BaseStreamState:
        """Plain per-stream state (built on the caller's thread: it must not touch the model or slots)."""
        raise NotImplementedError

    def _attach(self, state) -> None:
        """Give a new stream what only the inference thread may hand out (a cache slot)."""

    def _add_audio(self, state, samples: np.ndarray) -> None:
        raise NotImplementedError

    def _begin_finalize(self, state, barrier: Barrier) -> None:
        state.finalizing = barrier

    def _before_step(self, only: list | None = None) -> None:
        """Work batched over every stream once per wake-up, after their commands were applied (features, VAD).
        ``only``: just these streams now; the thread calls it again for all after the step."""

    def _step_all(self, ready: list) -> None:
        raise NotImplementedError

    def _free(self, state) -> None:
        """Release what the stream held (cache slot, buffers)."""

    supports_keyterms = False

    def check_keyterms(self, keyterms, weight: float | None = None) -> Keyterms | None:
        """``keyterms`` as the model spells them, or a ValueError naming what is wrong and what is accepted."""
        boost = check_keyterms(keyterms, weight)
        if boost is None:
            return None
        if not self.supports_keyterms:
            raise ValueError("this model cannot boost keyterms: that needs a cache-aware streaming RNNT model "
                             "decoded by NeMo's label-looping greedy decoder")
        return self.speller.spell(boost)

    def _set_keyterms(self, state, keyterms) -> None:
        """Boost the stream's decoding with these keyterms (None: no more) from its next step."""
        raise NotImplementedError("keyterms need a cache-aware streaming model")

    # -- called from any thread ------------------------------------------------------------------------------
    @property
    def live_streams(self) -> int:
        return self._live

    def open(self, sample_rate: int, opts: EndpointingOptions, stream_id: str | None) -> Stream:
        """A new stream, returned at once: the inference thread attaches it (cache slot) before its first command."""
        state = self._new_state(opts)
        handle = Stream(self, state, sample_rate, stream_id)
        state.handle = handle
        with self._cond:
            if self._stopping:
                raise RuntimeError("engine is closed")
            self._live += 1
            self._arrivals.append(state)
            self._cond.notify()
        with self.metrics.lock:
            self.metrics.streams_opened += 1
        return handle

    def submit_audio(self, state: BaseStreamState, samples: np.ndarray) -> None:
        """Queue 16 kHz float32 samples (the caller's to give: they are not copied before they are joined). The
        thread sees them at its planned wake-up, with everything else that came by then, unless they decide
        something (``_audio_wakes``)."""
        with self._lock:
            self._dirty[state] = None
            last = state.inbox[-1] if state.inbox else None
            if type(last) is QueuedAudio:  # joined to the packets still waiting (see QueuedAudio)
                last.join(samples, time.monotonic())
            else:
                state.inbox.append(QueuedAudio(samples, time.monotonic()))
            state.submitted_samples += samples.shape[0]
            if self._audio_wakes(state):
                self._wake_audio = True
                self._cond.notify()

    def submit(self, state: BaseStreamState, command: Command) -> None:
        """Queue a command; it wakes the thread."""
        with self._lock:
            if isinstance(command, Close):
                self._uncount(state)
                state.abandoned = True
            self._dirty[state] = None
            state.inbox.append(Queued(command, time.monotonic()))
            self._wake = True
            self._cond.notify()

    def _audio_wakes(self, state: BaseStreamState) -> bool:
        """Whether this audio must wake the thread now (caller holds the loop's lock): always, unless the thread planned
        otherwise (``_plan_sleep``); then once it completes its stream's chunk, or once enough armed streams have
        completed theirs. (``ready_at`` and ``finalizing`` are the thread's, read here while it sleeps.)"""
        if self._chunk_wakes:
            at = state.ready_at
            return not state.finalizing and (at is None or state.submitted_samples >= at)
        if not self._crossings:
            return True
        at = self._armed.get(state)
        if at is None or state.submitted_samples < at:
            return False
        del self._armed[state]
        self._crossings -= 1
        return self._crossings == 0

    def call(self, fn: Callable):
        """Run ``fn`` on the inference thread (the model is not thread-safe) and return its result."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("engine is closed")
            self._jobs.append((fn, fut))
            self._cond.notify()
        return fut.result()

    @property
    def closed(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # -- the inference thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        busy = False
        wake_at: float | None = None  # when to wake at the latest (a tick of the chunk clock, a poll)
        while True:
            with self._cond:
                while not (self._wake or self._wake_audio or self._jobs or self._arrivals or busy
                           or self._stopping):
                    if wake_at is not None:
                        if time.monotonic() >= wake_at:
                            break
                        self._cond.wait(wake_at - time.monotonic())
                    else:
                        self._cond.wait()
                if self._stopping:
                    break
                # awake: every command counts again until _plan_sleep arms thresholds
                self._wake = self._wake_audio = self._chunk_wakes = False
                self._armed, self._crossings = {}, 0
                for state in self._dirty:
                    state.backlog.extend(state.inbox)
                    state.inbox.clear()
                touched, self._dirty = self._dirty, {}
                jobs, self._jobs = list(self._jobs), collections.deque()
                arrivals, self._arrivals = self._arrivals, []
            touched.update(self._held)
            for state in touched:  # closes first: they free slots for the arrivals
                if state.attached and (state.backlog or state.abandoned):
                    self._guard(state, self._apply_backlog, state)
            for state in arrivals:
                if not (state.closed or state.abandoned):  # closed before attaching: it never takes a slot
                    self._guard(state, self._attach_and_apply, state)
            for fn, fut in jobs:
                self._run_job(fn, fut)
            try:
                busy, wake_at = self._round()
            except Exception as e:  # a fault outside any one stream's work: fail the streams, keep serving
                logger.exception("inference round failed", extra={"streams": len(self._states)})
                for state in list(self._states):
                    self._emit(state, [StreamFailed(f"engine error: {type(e).__name__}: {e}", e)])
                    self._release(state)
                busy, wake_at = False, None
            self._readers_to_wake.send()
        for fn, fut in self._jobs:
            fut.set_exception(RuntimeError("engine is closed"))

    def _round(self) -> tuple[bool, float | None]:
        """The work of one wake-up once commands are applied: features and VAD of every stream, and a step of the
        ready ones when the chunk clock says so. Only the streams whose chunk is complete in samples get theirs
        before the step (the others cannot be ready); the rest come after it, off the step's path (at a
        thousand streams they would delay it by tens of milliseconds). Returns whether to go on at once, and
        when to wake."""
        with self.metrics.lock:
            self.metrics.wakeups += 1
        t0 = time.perf_counter()
        first = None  # (unknown readiness: features for all streams first)
        if self.tracks_readiness:
            first = [s for s in self._complete if not s.closed and s.samples_until_ready() == 0]
        self._before_step(first)
        features_s = time.perf_counter() - t0
        # a stream whose chunk was not complete in samples cannot be ready: only ``first`` is looked at
        candidates = self._states if first is None else first
        ready = [s for s in candidates if s.ready()]
        tick = self.clock.next_step(ready, self._states)
        if ready and tick is None:
            if self.threads is not None:
                self.threads.before_step()
            started = time.monotonic()
            self._step_all(ready)
            self.clock.stepped(started, time.monotonic() - started)
            if self.threads is not None:
                self.threads.after_step(len(ready), self.clock.last_step_s)
        if first is not None:
            t0 = time.perf_counter()
            self._before_step()
            features_s += time.perf_counter() - t0
            # still complete (audio for more than one chunk, or not stepped yet): looked at again next time
            self._complete = {s: None for s in first if not s.closed and s.samples_until_ready() == 0}
        self._features_s = features_s
        now = time.monotonic()
        if self.tracks_arrivals and now - self._lag_checked_at >= LAG_CHECK_S:
            self._check_lag(now)
        self._log_lag_changes()
        busy = tick is None and any(s.ready() or (s.backlog and not s.finalizing) for s in candidates)
        return busy, None if busy else self._plan_sleep(tick)

    def _plan_sleep(self, tick: float | None) -> float | None:
        """Arm the audio that should wake the thread, and return when to wake at the latest (None: on a command).

        Woken by every packet of every stream, the thread would featurize and scan all streams each time while
        nothing can be stepped (310-390 wake-ups a second at 16-64 real-time streams on 2 cores; at a thousand
        it would never sleep). So audio wakes it only for a decision: waiting for a ``tick``, once the streams
        due by then have all completed their chunks (step at once, as ``ChunkClock.next_step`` would); with nothing
        ready, once any stream completes a chunk. Besides, while audio flows it polls every ``POLL_S`` to keep
        features and VAD current (a speech start is announced within ~20 ms), spaced under load to
        ``POLL_SPACING`` times the poll's own cost: per second of audio, features of 20 ms segments cost ~3x
        those of 160 ms (each recomputes its look-back frames and pays a per-stream cost). Commands always wake
        it; a stream whose readiness is unknown (``samples_until_ready`` None) leaves every packet waking it.
        Without a tick nothing is armed per stream: each packet is compared with its own stream's ``ready_at``."""
        thresholds: dict[BaseStreamState, int] = {}
        if tick is not None:
            for s in self.clock.due_by(self._states, tick, time.monotonic()):  # all of them
                missing = s.samples_until_ready()
                if missing is None:
                    thresholds = {}
                    break
                thresholds[s] = s.total_samples + missing
        with self._cond:
            # audio that came while the thread was busy counts against them, nothing else
            if tick is None and self.tracks_readiness:
                self._chunk_wakes = True
                self._wake_audio = any(self._audio_wakes(s) for s in self._dirty if s.inbox)
            elif thresholds:
                self._armed, self._crossings, self._wake_audio = thresholds, len(thresholds), False
                for s, at in list(thresholds.items()):  # (_audio_wakes disarms what crossed)
                    if s.submitted_samples >= at and self._audio_wakes(s):
                        self._wake_audio = True
        now = time.monotonic()
        receiving = self._last_audio_at >= now - 5 * POLL_S
        poll = now + max(POLL_S, POLL_SPACING * self._features_s) if receiving else None
        return min((t for t in (tick, poll) if t is not None), default=None)

    def _attach_and_apply(self, state: BaseStreamState) -> None:
        self._attach(state)
        self._states.append(state)
        state.attached = True
        self._apply_backlog(state)

    @staticmethod
    def _run_job(fn: Callable, fut: concurrent.futures.Future) -> None:
        try:
            fut.set_result(fn())
        except BaseException as e:  # the caller re-raises it
            fut.set_exception(e)

    def _guard(self, state: BaseStreamState, fn: Callable, *args) -> None:
        """Run per-stream work; an unexpected error fails that stream only."""
        try:
            fn(*args)
        except Exception as e:
            self._fail(state, e)

    def _fail(self, state: BaseStreamState, error: Exception) -> None:
        """Fail one stream on an unexpected error in its work (the thread goes on)."""
        logger.exception("stream failed", extra={"stream_id": state.handle.id if state.handle else None})
        self._emit(state, [StreamFailed(f"{type(error).__name__}: {error}", error)])
        self._release(state)

    def _apply_backlog(self, state: BaseStreamState) -> None:
        if state.abandoned:
            # a close frees the slot now, even behind a flush or finish still being decoded: capacity was given
            # back when the owner closed (``_uncount``), so a stream opened since may need this slot at once
            self._release(state)
            return
        while state.backlog and not state.finalizing and not state.closed:
            queued = state.backlog.popleft()
            if type(queued) is QueuedAudio:
                self._apply_audio(state, queued)
                continue
            command = queued.command
            if isinstance(command, SetEndpointing):
                state.opts = command.options
                if state.vad is not None:
                    state.vad.retune(command.options)
            elif isinstance(command, SetKeyterms):
                self._set_keyterms(state, command.keyterms)
            elif isinstance(command, Finalize):
                self._begin_finalize(state, command.barrier)
            elif isinstance(command, Close):
                self._release(state)
        if state.closed:
            return
        if self.tracks_readiness:
            self._complete[state] = None
        if state.backlog:  # behind a barrier: applied once it has been decoded
            self._held[state] = None
        elif self._held:
            self._held.pop(state, None)

    def _apply_audio(self, state: BaseStreamState, audio: QueuedAudio) -> None:
        state.last_audio_at = at = audio.pushed_at[-1]
        if at > self._last_audio_at:
            self._last_audio_at = at
        state.packet_s = audio.last_size / MODEL_SAMPLE_RATE
        if self.tracks_arrivals:  # where its packets end, and when each was pushed
            state.arrivals.append(Arrival(state.total_samples, audio.ends, audio.pushed_at))
        self._add_audio(state, audio.samples())

    def _record_result_latency(self, states: list[BaseStreamState], now: float) -> None:
        """Count the latency of each stream's result, which depends on its audio up to ``processed_time``: ``now``
        minus the moment the audio holding that sample was pushed. It is also the stream's lag (``_note_lag``)."""
        latencies = []
        worst = 0.0
        for state in states:
            pushed_at = _first_undecoded_push(state)
            if pushed_at is None:
                continue
            lag = now - pushed_at
            latencies.append(lag)
            if state.closed:  # (a finished stream's last result: it can no longer be behind)
                continue
            lag = lag if lag > 0.0 else 0.0
            worst = lag if lag > worst else worst
            if state.behind_since is None and lag < LAG_BEHIND_S:  # keeping up: _note_lag would only set it
                state.lag_s = lag
            else:
                self._note_lag(state, lag, now)
        if worst > self.metrics.max_lag_seconds:  # (recomputed over all streams at each ``_check_lag``)
            self.metrics.max_lag_seconds = round(worst, 3)
        self.metrics.record_result_latencies(latencies)

    def _note_lag(self, state: BaseStreamState, lag: float, now: float) -> None:
        """A stream is behind once a result comes ``LAG_BEHIND_S`` after the audio it depends on, and has caught up
        once one comes within ``LAG_CAUGHT_UP_S`` (or nothing it could decode waits). Changes are logged at the end
        of the round (``_log_lag_changes``): when the engine falls behind, every stream does at once."""
        state.lag_s = lag  # (its callers update the engine's max_lag_seconds, once for all the streams they note)
        if state.behind_since is None and lag >= LAG_BEHIND_S:
            state.behind_since = now
            self._fell_behind.append((state, lag))
        elif state.behind_since is not None and lag < LAG_CAUGHT_UP_S:
            self._caught_up.append((state, now - state.behind_since))
            state.behind_since = None

    def _log_lag_changes(self) -> None:
        """One log line per kind of change in a round: the stream's own line when one stream changed, else one
        line for all of them (at a thousand streams a line each would cost the thread more than their decode)."""
        behind, caught = self._fell_behind, self._caught_up
        if not behind and not caught:
            return
        self._fell_behind, self._caught_up = [], []
        with self.metrics.lock:
            self.metrics.lag_episodes += len(behind)
            self.metrics.lagging_streams += len(behind) - len(caught)
        context = {"streams": len(self._states), "last_step_ms": round(self.clock.last_step_s * 1000, 1),
                   "cpu_threads": self.threads.threads if self.threads else None}
        if len(behind) == 1:
            logger.warning("stream falling behind", extra={
                "stream_id": _stream_id(behind[0][0]), "lag_s": round(behind[0][1], 2), **context})
        elif behind:
            logger.warning("streams falling behind", extra={
                "count": len(behind), "lag_s": round(max(lag for _, lag in behind), 2),
                "stream_ids": ",".join(_stream_id(s) or "?" for s, _ in behind[:LAG_LOG_IDS]), **context})
        if len(caught) == 1:
            state, behind_for = caught[0]
            logger.info("stream caught up", extra={"stream_id": _stream_id(state), "lag_s": round(state.lag_s, 2),
                                                  "behind_for_s": round(behind_for, 2)})
        elif caught:
            logger.info("streams caught up", extra={
                "count": len(caught), "behind_for_s": round(max(b for _, b in caught), 2),
                "stream_ids": ",".join(_stream_id(s) or "?" for s, _ in caught[:LAG_LOG_IDS])})

    def _check_lag(self, now: float) -> None:
        """Every ``LAG_CHECK_S``: the lag of streams whose results have stopped coming (the audio they could decode
        waits: its age), caught up for those with nothing to decode, and the engine's lag metrics.

        A stream waiting for the rest of a chunk is not behind (a client that pauses mid-chunk), nor is audio
        pushed faster than real time (a file) until it waits."""
        self._lag_checked_at = now
        worst = 0.0
        complete = self._complete if self.tracks_readiness else None  # (a stream not among them is mid-chunk)
        for state in self._states:
            pushed_at = None
            if complete is None or state in complete:
                undecoded = state.processed_time < state.total_samples / MODEL_SAMPLE_RATE
                pushed_at = _first_undecoded_push(state) if undecoded and state.samples_until_ready() == 0 else None
            if pushed_at is None:
                self._note_lag(state, 0.0, now)
            elif now - pushed_at > state.lag_s:
                self._note_lag(state, now - pushed_at, now)
            worst = max(worst, state.lag_s)
        with self.metrics.lock:
            self.metrics.max_lag_seconds = round(worst, 3)

    def _release(self, state: BaseStreamState) -> None:
        if state.closed:
            return
        state.closed = True
        if state.behind_since is not None:  # it no longer counts as lagging (counted once its change was logged)
            state.behind_since = None
            with self.metrics.lock:
                unlogged = [change for change in self._fell_behind if change[0] is state]
                if unlogged:  # fell behind this round: an episode, never counted as lagging
                    self._fell_behind.remove(unlogged[0])
                    self.metrics.lag_episodes += 1
                else:
                    self.metrics.lagging_streams -= 1
        self._free(state)
        if state in self._states:
            self._states.remove(state)
        self._complete.pop(state, None)
        self._held.pop(state, None)
        with self._cond:
            self._uncount(state)
            self._dirty.pop(state, None)
        state.backlog.clear()

    def _uncount(self, state: BaseStreamState) -> None:
        """A stream stops counting against capacity once closed by its owner or ended (caller holds _cond)."""
        if state.counted:
            state.counted = False
            self._live -= 1

    def _emit(self, state: BaseStreamState, events: list[Event]) -> None:
        if events and state.handle is not None and not state.handle.closed:
            state.handle._emit_all(events, self._readers_to_wake)

    # -- offline decoding (Engine.transcribe, segmented mode) ------------------------------------------------
    def decode_batch(self, audios: list[np.ndarray]) -> list[list[Token]]:
        """Whole-buffer decoding of several 16 kHz signals in one batch (``streaming/offline.py``)."""
        return decode_whole(self.model, audios)

    def decode_offline(self, samples: np.ndarray, keyterms=None) -> tuple[str, tuple[Word, ...]]:
        tracker = TranscriptTracker(self.vocab, self.frame_s)
        tokens = self.decode_batch([samples])[0] if keyterms is None else self._decode_boosted(samples, keyterms)
        tracker.add([t for t in tokens if t.id not in self.vocab.eou_ids], 0.0)
        return tracker.text, tracker.words()

    def _decode_boosted(self, samples: np.ndarray, keyterms) -> list[Token]:
        raise NotImplementedError("keyterms need a cache-aware streaming model")


def _stream_id(state: BaseStreamState) -> str | None:
    return state.handle.id if state.handle else None


class Arrival(NamedTuple):
    """Packets applied together (``QueuedAudio``): where they start on the stream's sample clock, where each ends
    (from that start) and when each was pushed."""

    start: int
    ends: list[int]
    pushed_at: list[float]


def _first_undecoded_push(state: BaseStreamState) -> float | None:
    """When the packet that the stream's results so far depend on last (the first to end at or after
    ``processed_time``) was pushed; None when nothing waits. Packets before it are dropped (a group at a time):
    results only move forward in stream time."""
    need = state.processed_samples
    arrivals = state.arrivals
    while len(arrivals) > 1 and arrivals[0].start + arrivals[0].ends[-1] < need:
        arrivals.popleft()
    if not arrivals:
        return None
    first = arrivals[0]
    i = bisect.bisect_left(first.ends, need - first.start)
    return first.pushed_at[i] if i < len(first.ends) else None
