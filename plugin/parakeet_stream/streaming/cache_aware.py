"""Where chunks get batched: the engine's single inference thread.

Every stream's audio is featurized exactly (``features.py``) into pending mel frames. Whenever streams hold a
full chunk, the thread steps **all** of them: ready streams are grouped by step kind (the encoder takes one
``drop_extra_pre_encoded`` and one ``keep_all_outputs`` per call), each group runs one batched
``cache_aware_stream_step`` over caches gathered from the slot tensors, and one batched greedy RNNT decode
continues every stream's hypothesis. Under load more streams are ready per wake-up, so batches grow by
themselves; at light load each stream is stepped the moment its chunk is complete (lowest latency).

Step kinds: the first step feeds the first chunk alone (drop 0); the R=0
second step re-feeds everything from frame 0 and drops the frames already emitted (zero *features* as
pre-encode context are not the conv's own zero padding, so NeMo's pad-and-drop drifts); every later step
feeds the last ``pre_encode_cache_size`` consumed frames plus the new chunk and drops ``drop_extra_pre_encoded``.
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..audio import MODEL_SAMPLE_RATE
from .decoding import BatchedGreedyDecoder
from ..endpointing import EndpointingOptions, detect
from ..events import Event, StreamEnded, StreamFailed
from .features import FrameBuffer, IncrementalFeaturizer, Staging, featurize_batch, log_mel
from .geometry import chunk_geometry
from ..runtime.commands import Barrier
from ..runtime.loop import BaseStreamState, InferenceLoop, logger
from .offline import tokens_of
from .keyterms import Keyterms, Speller, boosting_tree
from .slots import CacheSlots
from ..acceleration.traced_step import steady_step_for
from .transcript import Token


class Chunk(NamedTuple):
    features: np.ndarray  # [T, F] float32: a view of the stream's frames, stacked into the batch at once
    drop: int
    is_last: bool


@dataclass
class Issued:
    """A batch whose encoder step was issued (on CUDA possibly still running) and not yet decoded."""

    states: list
    index: torch.Tensor  # the streams' cache slots, on the model's device
    enc: torch.Tensor
    enc_len: torch.Tensor
    is_last: bool
    issue_s: float  # the thread's time issuing it (a step's time = this + its read: not the work between)


class StreamState(BaseStreamState):
    """A cache-aware stream: pending features, its cache slot, and its decoder state."""

    __slots__ = ("first_chunk", "chunk", "pre_cache", "drop_extra", "slot", "vad_queue", "_preprocessor", "_n_mels",
                 "epoch_start", "epoch_start_samples", "featurizer", "frames", "steps", "consumed", "n_enc",
                 "decoder_state", "cut_at_next_word")

    def __init__(self, sched: ChunkScheduler, opts: EndpointingOptions) -> None:
        super().__init__(sched, opts, vad=opts.vad)
        geometry = sched.chunk_geometry
        self.first_chunk, self.chunk = geometry.first_chunk, geometry.chunk
        self.pre_cache, self.drop_extra = geometry.pre_encode_cache, geometry.drop_extra
        self.slot = -1  # assigned by ChunkScheduler._attach on the inference thread
        # VAD transitions ("start"/"end", seconds), applied in stream-time order with the decoded tokens
        self.vad_queue: collections.deque = collections.deque()
        self._preprocessor = sched.model.preprocessor
        self._n_mels = sched.n_mels
        self.new_epoch()

    def new_epoch(self) -> None:
        """Fresh model state at the current point of the stream clock (stream start, or after a flush)."""
        self.epoch_start = self.total_samples / MODEL_SAMPLE_RATE
        self.epoch_start_samples = self.total_samples
        self.tracker.time_base = self.epoch_start
        self.featurizer = IncrementalFeaturizer(self._preprocessor)
        # feature frames not yet stepped, after the last pre_encode_cache_size frames stepped (the next context)
        self.frames = FrameBuffer(self._n_mels, self.pre_cache)
        self.steps = 0
        self.consumed = 0
        self.n_enc = 0
        # NeMo's path only (no label-looping computer): what the next step's decode continues from (None: the
        # epoch's first step); else the state lives in the decoder's slot rows
        self.decoder_state = None
        self.finalizing = None
        self.cut_at_next_word = False  # a max-duration cut waiting for the word in progress to end
        self._note_next_chunk()

    def _note_next_chunk(self) -> None:
        """Where on the stream's sample clock its next chunk is complete: the end of the STFT window of the chunk's
        last frame. It moves only when a chunk is taken (or an epoch starts), so the wake-ups' scans of every
        stream read one number instead of the featurizer's and the frames' counters."""
        last = self.consumed + (self.first_chunk if self.steps == 0 else self.chunk) - 1
        f = self.featurizer
        self.ready_at = self.epoch_start_samples + last * f.hop + f.half

    @property
    def processed_time(self) -> float:
        """Stream seconds the results so far depend on: the end of the STFT window of the last mel frame fed to
        the encoder. (Counting whole encoder frames would claim up to 64 ms more: with causal subsampling the
        last frame of a chunk has not heard the end of its 80 ms.)"""
        if self.finalizing and self.frames.pending == 0:
            return self.total_samples / MODEL_SAMPLE_RATE  # the flushed tail is decoded: everything received
        if self.consumed == 0:
            return self.epoch_start
        samples = (self.consumed - 1) * self.featurizer.hop + self.featurizer.half
        return min(self.epoch_start + samples / MODEL_SAMPLE_RATE, self.total_samples / MODEL_SAMPLE_RATE)

    @property
    def processed_samples(self) -> int:
        """``processed_time`` in samples, counted as integers (the lag and latency bookkeeping reads it per step)."""
        if (self.finalizing and self.frames.pending == 0) or self.consumed == 0:
            return round(self.processed_time * MODEL_SAMPLE_RATE)
        done = self.epoch_start_samples + (self.consumed - 1) * self.featurizer.hop + self.featurizer.half
        return done if done < self.total_samples else self.total_samples

    def ready(self) -> bool:
        if self.closed:
            return False
        if self.finalizing:
            return True
        # (the first test is implied by the second, and cheaper: most streams of a scan fail it)
        return (self.total_samples >= self.ready_at
                and self.frames.pending >= (self.first_chunk if self.steps == 0 else self.chunk))

    def samples_until_ready(self) -> int | None:
        """Audio still to come before the next chunk is complete (the window of its last frame heard), whether or
        not what was received is featurized yet."""
        if self.finalizing:
            return 0
        missing = self.ready_at - self.total_samples
        return missing if missing > 0 else 0

    def next_chunk(self) -> Chunk | None:
        need = self.first_chunk if self.steps == 0 else self.chunk
        take = min(need, self.frames.pending)
        if take == 0:
            return None  # finalizing with nothing left to decode
        x = self.frames.take(take, context=self.steps > 0)  # no context before the first step
        is_last = self.finalizing is not None and self.frames.pending == 0
        if self.steps == 0:
            drop = 0
        elif self.consumed < self.pre_cache:
            drop = self.n_enc  # the R=0 second step
        else:
            drop = self.drop_extra
        self.consumed += take
        self.steps += 1
        self._note_next_chunk()
        return Chunk(x, drop, is_last)


class ChunkScheduler(InferenceLoop):
    """Steps every cache-aware stream that holds a full chunk, in batches."""

    tracks_arrivals = True
    tracks_readiness = True

    def __init__(self, model, *, max_streams: int, frame_s: float, max_batch: int | None = None,
                 batch_window_s: float = 0.0, traced_step: bool = True) -> None:
        super().__init__(model, frame_s=frame_s, batch_window_s=batch_window_s)
        self.max_batch = max_batch  # None: every ready stream in one call; 1 = per-stream stepping (baseline)
        self.n_mels = int(model.preprocessor.featurizer.nfilt)
        # Read once, here: NeMo's cache_aware_stream_step overwrites streaming_cfg.drop_extra_pre_encoded for the
        # duration of each call, so a stream opened on another thread mid-step would read the step's value.
        self.chunk_geometry = chunk_geometry(model.encoder)
        self.decoder = BatchedGreedyDecoder(model)
        self._staging = Staging()  # where each batch's audio and chunks are assembled (one at a time)
        # streams that received audio since their features (and since their VAD) were last computed, in order
        self._unfeaturized: dict[StreamState, None] = {}
        self._unheard: dict[StreamState, None] = {}
        self._eager_lock = eager_step_lock(model.encoder)
        # the steady step runs traced on the CPU and from CUDA graphs on CUDA (traced_step.py, graphed_step.py)
        self.steady_step = steady_step_for(model.encoder, self.chunk_geometry) if traced_step else None
        # the cached frames' keys and values are kept (kv_cache.py) where the steady step uses them
        self.kv = self.steady_step.kv if self.steady_step is not None else None
        self.slots = CacheSlots(model.encoder, max_streams, self.dtype, str(self.device),
                                keys_values=self.kv is not None)
        if self.steady_step is not None:  # trace it (CPU) or capture its graphs (CUDA) before any stream waits
            with self._eager_lock:  # tracing runs NeMo's step too (another engine of this model may be stepping)
                self.steady_step.prepare(max_batch or max_streams, self.chunk_geometry)
        if self.device.type == "cuda":
            self.size_decoder_graphs(max_batch or max_streams)
            # full_graph: one CUDA graph per decode; no_while_loops: the host waits on the GPU between frames
            # (NeMo needs cuda-python >= 12.6 and a driver with conditional nodes for the first)
            mode = getattr(self.decoder.computer, "cuda_graphs_mode", None)
            logger.info("decoder sized", extra={"batch": max_batch or max_streams,
                                                "cuda_graphs_mode": getattr(mode, "value", mode)})

    def size_decoder_graphs(self, batch: int, frames: int = 16) -> None:
        """Decode one batch of ``batch`` silent rows, so that NeMo's label-looping decoder sizes its state (and, on
        CUDA, captures its graphs) for the largest batch this scheduler will step. It keeps that state while batches
        are no larger and re-captures (~0.5 s on an H200) whenever one is: with streams joining one by one,
        every step would otherwise stall on a capture."""
        enc = torch.zeros(batch, int(self.model.encoder._feat_out), frames, device=self.device, dtype=self.dtype)
        lengths = torch.full((batch,), frames, dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            self.model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=lengths,
                                                                return_hypotheses=True)

    def _new_state(self, opts: EndpointingOptions) -> StreamState:
        return StreamState(self, opts)

    def _attach(self, state: StreamState) -> None:
        state.slot = self.slots.acquire()
        self._reset_decoder(state.slot)

    def _reset_decoder(self, slot: int) -> None:
        if self.decoder.available:
            self.decoder.reset(slot)

    @property
    def supports_keyterms(self) -> bool:
        return self.decoder.available

    @functools.cached_property
    def speller(self) -> Speller:
        return Speller(self.model.tokenizer)

    def _set_keyterms(self, state: StreamState, keyterms: Keyterms | None) -> None:
        tree = None if keyterms is None else boosting_tree(self.speller, keyterms, self.decoder.computer._blank_index)
        self.decoder.set_keyterms(state.slot, tree, None if keyterms is None else keyterms.weight)

    def _decode_boosted(self, samples: np.ndarray, keyterms: Keyterms) -> list[Token]:
        x = torch.from_numpy(samples)[None]
        with torch.inference_mode():
            feats, flen = log_mel(self.model.preprocessor, x, torch.tensor([x.shape[1]]))
            enc, enc_len = self.model.encoder(audio_signal=feats.to(self.device, self.dtype),
                                              length=flen.to(self.device))
        tree = boosting_tree(self.speller, keyterms, self.decoder.computer._blank_index)
        return self.decoder.decode_whole(enc, enc_len, tree, keyterms.weight)

    def _free(self, state: StreamState) -> None:
        if state.slot >= 0 and self.decoder.boosted is not None:
            self.decoder.set_keyterms(state.slot, None)  # the slot's next stream starts without
        if state.slot >= 0:
            self.slots.release(state.slot)

    def _begin_finalize(self, state: StreamState, barrier: Barrier) -> None:
        if state.vad is not None:  # VAD changes of the audio before the barrier belong before it
            self._take_vad([state], detect([state.vad]))
        state.frames.append(state.featurizer.flush())
        state.finalizing = barrier

    def _add_audio(self, state: StreamState, samples: np.ndarray) -> None:
        state.featurizer.append(samples)  # features for all streams at once in _before_step
        state.total_samples += samples.shape[0]
        self._unfeaturized[state] = None
        if state.vad is not None:
            state.vad.feed(samples)  # detected for all streams at once in _before_step
            self._unheard[state] = None

    def _before_step(self, only: list | None = None) -> None:
        """New feature frames of every stream that received audio since (or of those among ``only``) from one
        preprocessor call (per-packet calls cost ~0.35 ms each), and, in the call for every stream, their VAD
        windows in one Silero call per round (per-stream calls cost ~0.2 ms per 32 ms window). The VAD waits for
        that call, after the step: the model does not need it (VAD changes apply when the decoding reaches their
        time; a start is confirmed only ``min_speech_ms`` and an end ``min_silence_ms`` after it, so tokens often
        come first anyway), and before the step it would delay every stream's result. Only the streams that
        received audio are looked at (``_unfeaturized``, ``_unheard``), not every stream: a finalizing stream's
        audio is featurized by its flush, a closed one's never."""
        pending = self._unfeaturized
        if only is None:
            fresh = [s for s in pending if not s.closed and not s.finalizing]
            pending.clear()
        else:
            fresh = [s for s in only if s in pending and not s.closed and not s.finalizing]
            for s in fresh:
                del pending[s]
        featurized = featurize_batch(self.model.preprocessor, [s.featurizer for s in fresh], self._staging)
        for state, feats in zip(fresh, featurized):
            state.frames.append(feats)
        if only is None and self._unheard:
            # (a stream without a whole window yet is heard once more audio comes: it is added again then)
            listening = [s for s in self._unheard if not s.closed and not s.finalizing and s.vad.windows_ready]
            self._unheard.clear()
            if listening:
                self._take_vad(listening, detect([s.vad for s in listening]))

    def _take_vad(self, states: list[StreamState], changes: list[list[tuple[str, int]]]) -> None:
        for state, found in zip(states, changes):
            # the detector counts samples from the stream start, across flushes
            state.vad_queue.extend((kind, at / MODEL_SAMPLE_RATE) for kind, at in found)
            # VAD runs ahead of the model: a start may be announced at once, unless an end is still waiting for
            # the model to decode up to it (the segment it closes is not finished yet)
            while state.vad_queue and state.vad_queue[0][0] == "start":
                self._emit(state, state.tracker.start(state.vad_queue.popleft()[1]))

    # -- one batched step over every ready stream --------------------------------------------------------------
    def _step_all(self, ready: list[StreamState]) -> None:
        """Step every ready stream: one batch per step kind, each cut to ``max_batch`` streams.

        Batches are pipelined: the next batch's encoder step is issued before this batch's per-stream work
        (transcripts, endpoints, events). On CUDA the encoder then runs while Python walks this batch's streams;
        on the CPU the order changes nothing. The decode stays in order: NeMo's label-looping decoder waits on
        the GPU between frames unless it runs as one CUDA graph."""
        groups: dict[tuple[int, bool], list[tuple[StreamState, Chunk]]] = {}
        for state in ready:
            chunk = state.next_chunk()
            if chunk is None:
                self._guard(state, self._finalize, state)
            else:
                groups.setdefault((chunk.drop, chunk.is_last), []).append((state, chunk))
        size = self.max_batch or len(ready)
        batches = [(items[i:i + size], drop, is_last)
                   for (drop, is_last), items in groups.items() for i in range(0, len(items), size)]

        def issue(k: int) -> Issued | None:
            items, drop, is_last = batches[k]
            return self._or_fail([s for s, _ in items], self._issue, items, drop, is_last)

        issued = issue(0) if batches else None
        for i in range(len(batches)):
            decoded = self._or_fail(issued.states, self._read, issued) if issued is not None else None
            issued = issue(i + 1) if i + 1 < len(batches) else None
            if decoded is not None:
                self._deliver(*decoded)

    def _or_fail(self, states: list[StreamState], fn, *args):
        """``fn(*args)``; if it raises, ``states`` (the batch's streams) fail, never the thread, and None is
        returned."""
        try:
            return fn(*args)
        except Exception as e:
            logger.exception("batched step failed", extra={"batch": len(states)})
            for state in states:
                self._emit(state, [StreamFailed(f"inference failed: {type(e).__name__}: {e}", e)])
                self._release(state)
            return None

    def _issue(self, items: list[tuple[StreamState, Chunk]], drop: int, is_last: bool) -> Issued:
        """The encoder step of one batch, its new caches written back to the slots: on CUDA only queued."""
        t0 = time.perf_counter()
        items = sorted(items, key=lambda item: item[0].slot)  # in slot order, a run of slots is read as a view
        states = [s for s, _ in items]
        x, lengths = _batch_of([c.features for _, c in items], self._staging)
        lengths = lengths.to(self.device)
        slots = [s.slot for s in states]
        index = torch.tensor(slots, dtype=torch.int64, device=self.device)
        span = self.slots.span_of(slots)
        c_ch, c_t, c_len = self.slots.gather(index, span)
        # [B, T, F] to the encoder's [B, F, T] as a view: its first op transposes it back, to a contiguous tensor
        x = torch.from_numpy(x).to(device=self.device, dtype=self.dtype).transpose(1, 2)
        steady = (not is_last and drop == self.chunk_geometry.drop_extra
                  and x.shape[2] == self.chunk_geometry.steady_width)
        with torch.inference_mode():
            if steady and self.steady_step is not None:
                kv = self.slots.gather_keys_values(index, span) if self.kv is not None else ()
                enc, enc_len, n_ch, n_t, n_len, *kv = self.steady_step(x, lengths, c_ch, c_t, c_len, *kv)
            else:
                with self._eager_lock:  # NeMo sets and restores the encoder's streaming_cfg (``eager_step_lock``)
                    enc, enc_len, n_ch, n_t, n_len = self.model.encoder.cache_aware_stream_step(
                        processed_signal=x, processed_signal_length=lengths, cache_last_channel=c_ch,
                        cache_last_time=c_t, cache_last_channel_len=c_len, keep_all_outputs=is_last,
                        drop_extra_pre_encoded=drop)
                kv = self.kv.project(n_ch) if self.kv is not None else ()  # NeMo's step: rebuild them
            self.slots.scatter(index, n_ch, n_t, n_len)
            if kv:
                self.slots.scatter_keys_values(index, *kv)
        return Issued(states, index, enc, enc_len, is_last, time.perf_counter() - t0)

    def _read(self, issued: Issued) -> tuple[Issued, list[tuple[list[Token], object]], list[int], float]:
        """Decode an issued batch and read its results to the host (on CUDA: waits for its encoder step)."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            decoded = self._decode(issued.enc, issued.enc_len, issued.index,
                                   [s.decoder_state for s in issued.states])
        frames = [int(n) for n in issued.enc_len.tolist()]
        return issued, decoded, frames, issued.issue_s + time.perf_counter() - t0

    def _deliver(self, issued: Issued, decoded: list[tuple[list[Token], object]], frames: list[int],
                 seconds: float) -> None:
        """Each stream's share of a decoded batch: transcript, endpoints, events, result latency."""
        self.metrics.record_step(len(issued.states), seconds, sum(frames) * self.frame_s)
        after_step, is_last = self._after_step, issued.is_last
        for state, (tokens, carry), n in zip(issued.states, decoded, frames):
            try:  # (``_guard`` inlined: a call less per stream-step)
                after_step(state, tokens, carry, n, is_last)
            except Exception as e:
                self._fail(state, e)
        self._record_result_latency(issued.states, time.monotonic())
        self._readers_to_wake.send()  # (before the next batch's work)

    def _decode(self, enc: torch.Tensor, enc_len: torch.Tensor, index: torch.Tensor,
                carries: list) -> list[tuple[list[Token], object]]:
        """Each stream's tokens of this step and what its next step continues from (the carry; None where the
        decoder keeps the state in its slot rows). Frames count from the epoch start (the decoder state keeps the
        decoded length)."""
        if self.decoder.available:  # NeMo's label-looping computer, read batched, states in slots (decoding.py)
            return [(tokens, None) for tokens in self.decoder.decode(enc, enc_len, index)]
        # NeMo's own path, continuing from a carry that holds no tokens (``_carry``): ``hyp`` holds exactly this
        # step's tokens
        prev = [_carry(c) for c in carries]
        hyps = self.model.decoding.rnnt_decoder_predictions_tensor(
            encoder_output=enc, encoded_lengths=enc_len, return_hypotheses=True,
            partial_hypotheses=None if all(p is None for p in prev) else prev)
        hyps = hyps[0] if isinstance(hyps, tuple) else hyps
        return [(tokens_of(h), h) for h in hyps]

    def _after_step(self, state: StreamState, tokens: list[Token], carry, n_frames: int, is_last: bool) -> None:
        state.decoder_state = carry
        state.n_enc += n_frames
        tr = state.tracker
        eou_ids = self.vocab.eou_ids
        if not (state.vad_queue or is_last or state.cut_at_next_word
                or (eou_ids and tokens and not eou_ids.isdisjoint([t.id for t in tokens]))):
            # nothing splits this step's tokens (most steps): speech going on, or silence between segments (no
            # event, no endpoint to decide)
            if tokens or tr.open:
                now = state.processed_time
                self._emit(state, tr.add(tokens, now))
                self._endpoint_by_rule(state, bool(tokens), now)
            return
        now = state.processed_time
        events: list[Event] = []
        run: list[Token] = []

        def add_run() -> None:
            if run:
                events.extend(tr.add(run, now))
                run.clear()

        for tok in tokens:  # VAD cuts and <EOU> split this step's tokens where they fall in time
            at = tr.time_of_frame(tok.frame)
            if state.cut_at_next_word and self.vocab.starts_word[tok.id] and tok.id not in self.vocab.eou_ids:
                add_run()
                state.cut_at_next_word = False
                if tr.open:
                    events.extend(tr.endpoint("max_duration", now))
            mid_word = run and not self.vocab.starts_word[tok.id]  # a cut never splits a word
            while state.vad_queue and state.vad_queue[0][1] <= at and not mid_word:
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
        if not tr.open:
            state.cut_at_next_word = False
        if state.cut_at_next_word:
            if tokens:
                return  # the word may still go on: wait for its end
            state.cut_at_next_word = False
            self._emit(state, tr.endpoint("max_duration", now))
            return
        self._endpoint_by_rule(state, bool(tokens), now)

    def _endpoint_by_rule(self, state: StreamState, had_tokens: bool, now: float) -> None:
        reason = self._rule_endpoint(state, now)
        if reason == "max_duration" and had_tokens:
            # this step's last token may be the first piece of a word whose rest comes next step ("th" |
            # "irty"): cut before the next word-starting token instead, or at the next step without tokens
            state.cut_at_next_word = True
        elif reason:
            self._emit(state, state.tracker.endpoint(reason, now))

    @staticmethod
    def _apply_vad(state: StreamState, kind: str, at: float, now: float) -> list[Event]:
        return state.tracker.start(at) if kind == "start" else state.tracker.endpoint("vad", now)

    def _rule_endpoint(self, state: StreamState, now: float) -> str | None:
        """Endpoints decided by time (``now``: the stream time decoded): a segment too long, or too long without a
        new token."""
        tr, opts = state.tracker, state.opts
        if not tr.open:
            return None
        if opts.max_segment_s is not None and now - tr.started_at >= opts.max_segment_s:
            return "max_duration"
        if opts.trailing_blank_ms is not None and not _vad_hears_speech(state):
            last = tr.time_of_frame(tr.last_token_frame + 1) if tr.last_token_frame is not None else tr.started_at
            if (now - last) * 1000 >= opts.trailing_blank_ms - 1e-6:
                return "blank"
        return None

    def _finalize(self, state: StreamState) -> None:
        """The barrier of a flush/finish was decoded to the end: close the segment, then reset or end."""
        barrier = state.finalizing
        self._emit(state, state.tracker.endpoint(barrier.value, state.processed_time))
        if barrier is Barrier.FINISH:
            self._release(state)  # before StreamEnded: a consumer that sees the end finds the capacity back
            seconds = round(state.total_samples / MODEL_SAMPLE_RATE, 3)
            self._emit(state, [StreamEnded(seconds, state.tracker.segments_finalised)])
            return
        self.slots.reset(state.slot)
        self._reset_decoder(state.slot)
        state.new_epoch()


def _vad_hears_speech(state: StreamState) -> bool:
    """Whether the VAD was in speech at the stream time the model has reached. The VAD runs ahead of the model (by
    up to everything received when audio comes faster than real time), so its own ``in_speech`` may describe later
    audio; a speech end it found but the model has not reached yet means speech at the model's time."""
    if state.vad is None:
        return False
    if state.vad_queue:
        return state.vad_queue[0][0] == "end"
    return state.vad.in_speech


_EAGER_LOCKS_GUARD = threading.Lock()


def eager_step_lock(encoder) -> threading.Lock:
    """One lock per encoder object: NeMo's eager ``cache_aware_stream_step`` overwrites
    ``encoder.streaming_cfg.drop_extra_pre_encoded`` for the call and restores it after, so two engines
    stepping one model object must not interleave those calls (a restore of one leaves the other's value)."""
    with _EAGER_LOCKS_GUARD:
        lock = encoder.__dict__.get("_parakeet_eager_step_lock")
        if lock is None:
            lock = threading.Lock()
            encoder.__dict__["_parakeet_eager_step_lock"] = lock
        return lock


def _batch_of(chunks: list[np.ndarray], staging: Staging) -> tuple[np.ndarray, torch.Tensor]:
    """Chunks [T_i, F] as one zero-padded batch [B, T, F] in ``staging`` and their lengths (steady chunks are all of
    one width: stacked without padding)."""
    widths = [c.shape[0] for c in chunks]
    width, n_mels = max(widths), chunks[0].shape[1]
    x = staging.array((len(chunks), width, n_mels), zeroed=min(widths) < width)
    if min(widths) == width:  # (views joined on T, then split: np.stack costs ~0.5 us more per stream)
        np.concatenate(chunks, out=x.reshape(-1, n_mels))
    else:
        for row, c in zip(x, chunks):
            row[: c.shape[0]] = c
    return x, torch.tensor(widths, dtype=torch.int64)


def _carry(hyp):
    """What the next step continues from: only the decoder state. NeMo's ``Hypothesis.merge_`` would otherwise
    concatenate every token, timestamp and confidence of the stream's history on each step (work growing with
    the stream's age) and mix step-local timestamps."""
    if hyp is None:
        return None
    from nemo.collections.asr.parts.utils.rnnt_utils import Hypothesis

    return Hypothesis(score=0.0, y_sequence=None, dec_state=hyp.dec_state, timestamp=None,
                      last_token=hyp.last_token)
