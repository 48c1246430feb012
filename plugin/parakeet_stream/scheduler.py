"""Where chunks get batched: the engine's single inference thread.

Every stream's audio is featurized exactly (``features.py``) into pending mel frames. Whenever streams hold a
full chunk, the thread steps **all** of them: ready streams are grouped by step kind (the encoder takes one
``drop_extra_pre_encoded`` and one ``keep_all_outputs`` per call), each group runs one batched
``cache_aware_stream_step`` over caches gathered from the slot tensors, and one batched greedy RNNT decode
continues every stream's hypothesis. Under load more streams are ready per wake-up, so batches grow by
themselves; at light load each stream is stepped the moment its chunk is complete (lowest latency).

Step kinds (research/nemo-streaming.md §3a): the first step feeds the first chunk alone (drop 0); the R=0
second step re-feeds everything from frame 0 and drops the frames already emitted (zero *features* as
pre-encode context are not the conv's own zero padding, so NeMo's pad-and-drop drifts); every later step
feeds the last ``pre_encode_cache_size`` consumed frames plus the new chunk and drops ``drop_extra_pre_encoded``.
"""
from __future__ import annotations

import bisect
import collections
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .endpointing import EndpointingOptions, VoiceActivity
from .events import Event, StreamEnded, StreamFailed, Word
from .features import IncrementalFeaturizer
from .slots import CacheSlots
from .stream import Stream
from .transcript import Token, TranscriptTracker, Vocabulary

logger = logging.getLogger("parakeet_stream")

STEP_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


@dataclass
class EngineMetrics:
    """Counters since start; ``step_latency_buckets`` maps an upper bound in seconds to a cumulative count."""

    active_streams: int = 0
    streams_opened: int = 0
    steps: int = 0
    streams_stepped: int = 0
    audio_seconds: float = 0.0
    step_seconds_sum: float = 0.0
    last_batch_size: int = 0
    max_batch_size: int = 0
    step_latency_buckets: dict[float, int] = field(default_factory=dict)

    def snapshot(self, active: int) -> EngineMetrics:
        with _metrics_lock:
            return EngineMetrics(active, self.streams_opened, self.steps, self.streams_stepped,
                                 round(self.audio_seconds, 3), self.step_seconds_sum, self.last_batch_size,
                                 self.max_batch_size, dict(self.step_latency_buckets))

    def record_step(self, batch: int, seconds: float, audio_seconds: float) -> None:
        with _metrics_lock:
            self.steps += 1
            self.streams_stepped += batch
            self.step_seconds_sum += seconds
            self.audio_seconds += audio_seconds
            self.last_batch_size = batch
            self.max_batch_size = max(self.max_batch_size, batch)
            i = bisect.bisect_left(STEP_LATENCY_BUCKETS, seconds)
            for le in STEP_LATENCY_BUCKETS[i:]:
                self.step_latency_buckets[le] = self.step_latency_buckets.get(le, 0) + 1
            self.step_latency_buckets[float("inf")] = self.step_latency_buckets.get(float("inf"), 0) + 1


_metrics_lock = threading.Lock()


@dataclass(frozen=True)
class Chunk:
    features: torch.Tensor  # [F, T]
    drop: int
    is_last: bool


class StreamState:
    """Everything the inference thread keeps for one stream. Only that thread touches it (but ``inbox``)."""

    def __init__(self, sched: ChunkScheduler, opts: EndpointingOptions, slot: int) -> None:
        cfg = sched.model.encoder.streaming_cfg
        self.first_chunk, self.chunk = int(cfg.chunk_size[0]), int(cfg.chunk_size[1])
        self.pre_cache = int(cfg.pre_encode_cache_size[1])
        self.drop_extra = int(cfg.drop_extra_pre_encoded)
        self.opts = opts
        self.slot = slot
        self.inbox: collections.deque = collections.deque()  # guarded by the scheduler's condition
        self.backlog: collections.deque = collections.deque()
        self.handle: Stream | None = None
        self.tracker = TranscriptTracker(sched.vocab, sched.frame_s)
        self.vad = VoiceActivity(opts) if opts.vad else None
        # VAD transitions ("start"/"end", seconds), applied in stream-time order with the decoded tokens
        self.vad_queue: collections.deque = collections.deque()
        self.total_samples = 0  # 16 kHz samples featurized, all epochs
        self.closed = False
        self.counted = True  # counts against the engine's capacity
        self._preprocessor = sched.model.preprocessor
        self._n_mels = sched.n_mels
        self.new_epoch()

    def new_epoch(self) -> None:
        """Fresh model state at the current point of the stream clock (stream start, or after a flush)."""
        self.epoch_start = self.total_samples / 16000
        self.tracker.time_base = self.epoch_start
        self.featurizer = IncrementalFeaturizer(self._preprocessor)
        self.pending = torch.zeros(self._n_mels, 0)
        self.context = torch.zeros(self._n_mels, 0)
        self.steps = 0
        self.consumed = 0
        self.n_enc = 0
        self.hyp = None
        self.finalizing: str | None = None  # "flush" | "finish" once its barrier was reached

    @property
    def processed_time(self) -> float:
        """Stream time up to which the model has decoded (the last frame may cover padding past the audio)."""
        return min(self.epoch_start + self.n_enc * self.tracker.frame_s, self.total_samples / 16000)

    def ready(self) -> bool:
        if self.closed:
            return False
        if self.finalizing:
            return True
        return self.pending.shape[1] >= (self.first_chunk if self.steps == 0 else self.chunk)

    def next_chunk(self) -> Chunk | None:
        need = self.first_chunk if self.steps == 0 else self.chunk
        take = min(need, self.pending.shape[1])
        if take == 0:
            return None  # finalizing with nothing left to decode
        new, self.pending = self.pending[:, :take], self.pending[:, take:]
        is_last = self.finalizing is not None and self.pending.shape[1] == 0
        if self.steps == 0:
            x, drop = new, 0
        elif self.consumed < self.pre_cache:
            x, drop = torch.cat([self.context, new], dim=1), self.n_enc  # the R=0 second step
        else:
            x, drop = torch.cat([self.context, new], dim=1), self.drop_extra
        self.context = torch.cat([self.context, new], dim=1)[:, -self.pre_cache:]
        self.consumed += take
        self.steps += 1
        return Chunk(x, drop, is_last)


class ChunkScheduler:
    """The inference thread and the streams it serves."""

    def __init__(self, model, *, max_streams: int, frame_s: float, max_batch: int | None = None) -> None:
        self.model = model
        self.max_batch = max_batch  # None: every ready stream in one call; 1 = per-stream stepping (baseline)
        self.frame_s = frame_s
        self.vocab = Vocabulary(model.tokenizer)
        self.n_mels = int(model.preprocessor.featurizer.nfilt)
        param = next(model.encoder.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.blank_id = int(model.decoding.blank_id) if hasattr(model.decoding, "blank_id") else \
            model.tokenizer.vocab_size
        self.slots = CacheSlots(model.encoder, max_streams, self.dtype, str(self.device))
        self.metrics = EngineMetrics()
        self._states: list[StreamState] = []
        self._cond = threading.Condition()
        self._dirty: dict[StreamState, None] = {}
        self._jobs: collections.deque = collections.deque()
        self._live = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="parakeet-inference", daemon=True)
        self._thread.start()

    # -- called from any thread ------------------------------------------------------------------------------
    @property
    def live_streams(self) -> int:
        return self._live

    def open(self, sample_rate: int, opts: EndpointingOptions, stream_id: str | None) -> Stream:
        def create() -> Stream:
            state = StreamState(self, opts, self.slots.acquire())
            handle = Stream(self, state, sample_rate, stream_id)
            state.handle = handle
            self._states.append(state)
            return handle

        with self._cond:
            self._live += 1
        try:
            handle = self.call(create)
        except BaseException:
            with self._cond:
                self._live -= 1
            raise
        with _metrics_lock:
            self.metrics.streams_opened += 1
        return handle

    def submit(self, state: StreamState, command: tuple) -> None:
        with self._cond:
            if command[0] == "close":
                self._uncount(state)
            state.inbox.append(command)
            self._dirty[state] = None
            self._cond.notify()

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

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=10)

    # -- the inference thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        busy = False
        while True:
            with self._cond:
                while not (self._dirty or self._jobs or busy or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    break
                for state in self._dirty:
                    state.backlog.extend(state.inbox)
                    state.inbox.clear()
                self._dirty.clear()
                jobs, self._jobs = list(self._jobs), collections.deque()
            for state in list(self._states):  # before jobs: a close frees its slot for the next open
                self._guard(state, self._apply_backlog, state)
            for fn, fut in jobs:
                self._run_job(fn, fut)
            ready = [s for s in self._states if s.ready()]
            if ready:
                self._step_all(ready)
            busy = any(s.ready() or (s.backlog and not s.finalizing) for s in self._states)
        for fn, fut in self._jobs:
            fut.set_exception(RuntimeError("engine is closed"))

    @staticmethod
    def _run_job(fn: Callable, fut: concurrent.futures.Future) -> None:
        try:
            fut.set_result(fn())
        except BaseException as e:  # the caller re-raises it
            fut.set_exception(e)

    def _guard(self, state: StreamState, fn: Callable, *args) -> None:
        """Run per-stream work; an unexpected error fails that stream only."""
        try:
            fn(*args)
        except Exception as e:
            logger.exception("stream failed", extra={"stream_id": state.handle.id if state.handle else None})
            self._emit(state, [StreamFailed(f"{type(e).__name__}: {e}", e)])
            self._release(state)

    def _apply_backlog(self, state: StreamState) -> None:
        while state.backlog and not state.finalizing and not state.closed:
            kind, payload = state.backlog.popleft()
            if kind == "audio":
                self._add_audio(state, payload)
            elif kind in ("flush", "finish"):
                state.pending = torch.cat([state.pending, state.featurizer.flush()], dim=1)
                state.finalizing = kind
            elif kind == "close":
                self._release(state)

    def _add_audio(self, state: StreamState, samples: np.ndarray) -> None:
        feats = state.featurizer.push(samples)
        if feats.shape[1]:
            state.pending = torch.cat([state.pending, feats], dim=1)
        state.total_samples += samples.shape[0]
        if state.vad is None:
            return
        # the detector counts samples from the stream start, across flushes
        state.vad_queue.extend((kind, at / 16000) for kind, at in state.vad.process(samples))
        # VAD runs ahead of the model: a start may be announced at once, unless an end is still waiting for
        # the model to decode up to it (the segment it closes is not finished yet)
        while state.vad_queue and state.vad_queue[0][0] == "start":
            self._emit(state, state.tracker.start(state.vad_queue.popleft()[1]))

    def _release(self, state: StreamState) -> None:
        if state.closed:
            return
        state.closed = True
        self.slots.release(state.slot)
        if state in self._states:
            self._states.remove(state)
        with self._cond:
            self._uncount(state)
            self._dirty.pop(state, None)
        state.backlog.clear()

    def _uncount(self, state: StreamState) -> None:
        """A stream stops counting against capacity once closed by its owner or ended (caller holds _cond)."""
        if state.counted:
            state.counted = False
            self._live -= 1

    def _emit(self, state: StreamState, events: list[Event]) -> None:
        if state.handle is not None and not state.handle.closed:
            for ev in events:
                state.handle._emit(ev)

    # -- one batched step over every ready stream --------------------------------------------------------------
    def _step_all(self, ready: list[StreamState]) -> None:
        groups: dict[tuple[int, bool], list[tuple[StreamState, Chunk]]] = {}
        for state in ready:
            chunk = state.next_chunk()
            if chunk is None:
                self._guard(state, self._finalize, state)
            else:
                groups.setdefault((chunk.drop, chunk.is_last), []).append((state, chunk))
        size = self.max_batch or len(ready)
        batches = [(key, items[i:i + size]) for key, items in groups.items() for i in range(0, len(items), size)]
        for (drop, is_last), items in batches:
            try:
                self._step_group(items, drop, is_last)
            except Exception as e:  # a failed batch fails its streams, never the thread
                logger.exception("batched step failed", extra={"batch": len(items)})
                for state, _ in items:
                    self._emit(state, [StreamFailed(f"inference failed: {type(e).__name__}: {e}", e)])
                    self._release(state)

    def _step_group(self, items: list[tuple[StreamState, Chunk]], drop: int, is_last: bool) -> None:
        t0 = time.perf_counter()
        states = [s for s, _ in items]
        width = max(c.features.shape[1] for _, c in items)
        x = torch.stack([torch.nn.functional.pad(c.features, (0, width - c.features.shape[1])) for _, c in items])
        lengths = torch.tensor([c.features.shape[1] for _, c in items], dtype=torch.int64, device=self.device)
        index = torch.tensor([s.slot for s in states], dtype=torch.int64, device=self.device)
        c_ch, c_t, c_len = self.slots.gather(index)
        with torch.inference_mode():
            enc, enc_len, n_ch, n_t, n_len = self.model.encoder.cache_aware_stream_step(
                processed_signal=x.to(device=self.device, dtype=self.dtype), processed_signal_length=lengths,
                cache_last_channel=c_ch, cache_last_time=c_t, cache_last_channel_len=c_len,
                keep_all_outputs=is_last, drop_extra_pre_encoded=drop)
            self.slots.scatter(index, n_ch, n_t, n_len)
            prev = [_carry(s.hyp) for s in states]
            hyps = self.model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=enc, encoded_lengths=enc_len, return_hypotheses=True,
                partial_hypotheses=None if all(p is None for p in prev) else prev)
        hyps = hyps[0] if isinstance(hyps, tuple) else hyps
        frames = [int(n) for n in enc_len.tolist()]
        self.metrics.record_step(len(states), time.perf_counter() - t0,
                                 sum(frames) * self.frame_s)
        for state, hyp, n in zip(states, hyps, frames):
            self._guard(state, self._after_step, state, hyp, n, is_last)

    def _after_step(self, state: StreamState, hyp, n_frames: int, is_last: bool) -> None:
        tokens = self._new_tokens(state, hyp)
        state.hyp = hyp
        state.n_enc += n_frames
        tr, now = state.tracker, state.processed_time
        events: list[Event] = []
        run: list[Token] = []

        def add_run() -> None:
            if run:
                events.extend(tr.add(run, now))
                run.clear()

        for tok in tokens:  # VAD cuts and <EOU> split this step's tokens where they fall in time
            at = tr.time_of_frame(tok.frame)
            while state.vad_queue and state.vad_queue[0][1] <= at:
                add_run()
                events.extend(self._apply_vad(state, *state.vad_queue.popleft(), now))
            if tok.id in self.vocab.eou_ids:
                add_run()
                if state.opts.eou:
                    events.extend(tr.endpoint("eou", now))
                continue
            run.append(tok)
        add_run()
        while state.vad_queue and state.vad_queue[0][1] <= now:
            events.extend(self._apply_vad(state, *state.vad_queue.popleft(), now))
        self._emit(state, events)
        if is_last:
            self._finalize(state)
            return
        reason = self._rule_endpoint(state)
        if reason:
            self._emit(state, tr.endpoint(reason, now))

    def _new_tokens(self, state: StreamState, hyp) -> list[Token]:
        """This step's tokens: the decoder continued from a carry that held no tokens (see ``_carry``), so
        ``hyp`` holds exactly the new ones; their frame indices already count from the epoch start (the
        label-looping state carries ``decoded_lengths``)."""
        ids = _as_list(hyp.y_sequence)
        stamps = _as_list(hyp.timestamp)
        conf = _as_list(hyp.token_confidence) if hyp.token_confidence is not None else []
        if len(conf) != len(ids):
            raise RuntimeError(f"decoder returned {len(conf)} confidences for {len(ids)} tokens")
        return [Token(int(i), int(t), float(c)) for i, t, c in zip(ids, stamps, conf)]

    @staticmethod
    def _apply_vad(state: StreamState, kind: str, at: float, now: float) -> list[Event]:
        return state.tracker.start(at) if kind == "start" else state.tracker.endpoint("vad", now)

    def _rule_endpoint(self, state: StreamState) -> str | None:
        """Endpoints decided by time: a segment too long, or too long without a new token."""
        tr, opts, now = state.tracker, state.opts, state.processed_time
        if not tr.open:
            return None
        if opts.max_segment_s is not None and now - tr.started_at >= opts.max_segment_s:
            return "max_duration"
        if opts.trailing_blank_ms is not None and not (state.vad is not None and state.vad.in_speech):
            last = tr.time_of_frame(tr.last_token_frame + 1) if tr.last_token_frame is not None else tr.started_at
            if (now - last) * 1000 >= opts.trailing_blank_ms - 1e-6:
                return "blank"
        return None

    def _finalize(self, state: StreamState) -> None:
        """The barrier of a flush/finish was decoded to the end: close the segment, then reset or end."""
        reason = state.finalizing
        self._emit(state, state.tracker.endpoint(reason, state.processed_time))
        if reason == "finish":
            self._emit(state, [StreamEnded(round(state.total_samples / 16000, 3), state.tracker.segments_finalised)])
            self._release(state)
            return
        self.slots.reset(state.slot)
        state.new_epoch()

    # -- offline decoding (Engine.transcribe) ----------------------------------------------------------------
    def decode_offline(self, samples: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        with torch.inference_mode():
            x = torch.from_numpy(samples)[None]
            feats, flen = self.model.preprocessor(input_signal=x, length=torch.tensor([x.shape[1]]))
            enc, enc_len = self.model.encoder(audio_signal=feats.to(self.device, self.dtype),
                                              length=flen.to(self.device))
            hyps = self.model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=enc, encoded_lengths=enc_len, return_hypotheses=True)
        hyp = (hyps[0] if isinstance(hyps, tuple) else hyps)[0]
        tracker = TranscriptTracker(self.vocab, self.frame_s)
        ids, stamps, conf = _as_list(hyp.y_sequence), _as_list(hyp.timestamp), _as_list(hyp.token_confidence)
        tracker.add([Token(int(i), int(t), float(c)) for i, t, c in zip(ids, stamps, conf)
                     if int(i) not in self.vocab.eou_ids], 0.0)
        return tracker.text, tracker.words()


def _carry(hyp):
    """What the next step continues from: only the decoder state. NeMo's ``Hypothesis.merge_`` would otherwise
    concatenate every token, timestamp and confidence of the stream's history on each step (work growing with
    the stream's age) and mix step-local timestamps."""
    if hyp is None:
        return None
    from nemo.collections.asr.parts.utils.rnnt_utils import Hypothesis

    return Hypothesis(score=0.0, y_sequence=None, dec_state=hyp.dec_state, timestamp=None,
                      last_token=hyp.last_token)


def _as_list(x) -> list:
    if x is None:
        return []
    return x.tolist() if torch.is_tensor(x) else list(x)
