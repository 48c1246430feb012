"""Offline-only checkpoints (full-context attention, e.g. nvidia/parakeet-rnnt-0.6b): one decode per utterance.

Such a model cannot be stepped cache-aware, so, like dalston's original engine, Silero VAD cuts each stream
into utterances and every finished utterance is decoded whole. Utterances that end at the same time in
different streams are decoded in one batch. A stream gets SpeechStarted when VAD hears speech, no partials,
and its Final once the utterance has ended (after ``min_silence_ms``), at a flush, or at ``max_segment_s``.
"""
from __future__ import annotations

import numpy as np

from ..audio import MODEL_SAMPLE_RATE
from ..endpointing import EndpointingOptions, detect
from ..events import StreamEnded
from ..runtime.commands import Barrier
from ..runtime.loop import BaseStreamState, InferenceLoop, logger

PRE_ROLL_SECONDS = 1.0  # audio kept before a VAD start so the padding reaches back far enough


class UtteranceState(BaseStreamState):
    def __init__(self, loop: SegmentedScheduler, opts: EndpointingOptions) -> None:
        super().__init__(loop, opts, vad=True)
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # stream sample index of buffer[0]
        self.speech_from: int | None = None  # sample where the open utterance began
        self.done: list[tuple[int, int, str]] = []  # (from, to, reason) utterances waiting to be decoded

    def ready(self) -> bool:
        return not self.closed and bool(self.done or self.finalizing)

    def cut(self, to: int, reason: str) -> None:
        if self.speech_from is not None and to > self.speech_from:
            self.done.append((self.speech_from, to, reason))
        self.speech_from = None


class SegmentedScheduler(InferenceLoop):
    def __init__(self, model, *, max_streams: int, frame_s: float, max_batch: int | None = None,
                 batch_window_s: float = 0.0) -> None:
        super().__init__(model, frame_s=frame_s, batch_window_s=batch_window_s)
        self.max_batch = max_batch

    def _new_state(self, opts: EndpointingOptions) -> UtteranceState:
        return UtteranceState(self, opts)

    def _add_audio(self, state: UtteranceState, samples: np.ndarray) -> None:
        state.buffer = np.concatenate([state.buffer, samples])
        state.total_samples += samples.shape[0]
        state.vad.feed(samples)  # detected for all streams at once in _before_step

    def _before_step(self, only: list | None = None) -> None:
        """Every stream's VAD windows in one Silero call per round, then their cuts (``only`` is never given
        here: these streams' readiness is unknown, ``samples_until_ready`` None)."""
        states = [s for s in self._states if not s.closed and not s.finalizing]
        listening = [s for s in states if s.vad.windows_ready]
        for state, changes in zip(listening, detect([s.vad for s in listening])):
            self._apply_vad(state, changes)
        for state in states:
            self._cut_if_too_long(state, state.total_samples)
            self._trim(state)

    def _apply_vad(self, state: UtteranceState, changes: list[tuple[str, int]]) -> None:
        for kind, at in changes:
            if kind == "start":
                state.speech_from = max(at, state.buffer_start)
                self._emit(state, state.tracker.start(state.speech_from / MODEL_SAMPLE_RATE))
            else:
                self._cut_if_too_long(state, at, inclusive=False)
                state.cut(at, "vad")

    def _cut_if_too_long(self, state: UtteranceState, until: int, inclusive: bool = True) -> None:
        """Cut the open utterance every ``max_segment_s`` of stream time up to sample ``until`` (exact positions,
        however many packets one wake-up of the inference thread brought); the speech goes on in a new segment."""
        limit = state.opts.max_segment_s
        if not limit:
            return
        step = int(limit * MODEL_SAMPLE_RATE)
        last = until if inclusive else until - 1  # a cut exactly at a VAD end or a barrier is that cut's job
        while state.speech_from is not None and state.speech_from + step <= last:
            at = state.speech_from + step
            state.cut(at, "max_duration")
            state.speech_from = at
            self._emit(state, state.tracker.start(at / MODEL_SAMPLE_RATE))

    def _trim(self, state: UtteranceState) -> None:
        """Keep only audio an utterance may still need: the open or waiting ones, plus the pre-roll."""
        keep_from = state.total_samples - int(PRE_ROLL_SECONDS * MODEL_SAMPLE_RATE)
        for start, _, _ in state.done:
            keep_from = min(keep_from, start)
        if state.speech_from is not None:
            keep_from = min(keep_from, state.speech_from)
        if keep_from > state.buffer_start:
            state.buffer = state.buffer[keep_from - state.buffer_start:]
            state.buffer_start = keep_from

    def _begin_finalize(self, state: UtteranceState, barrier: Barrier) -> None:
        self._apply_vad(state, detect([state.vad])[0])  # the audio before the barrier first
        self._cut_if_too_long(state, state.total_samples, inclusive=False)
        state.cut(state.total_samples, barrier.value)
        state.finalizing = barrier

    def _step_all(self, ready: list[UtteranceState]) -> None:
        jobs = [(s, u) for s in ready for u in s.done]
        size = self.max_batch or max(len(jobs), 1)
        for i in range(0, len(jobs), size):
            batch = jobs[i:i + size]
            audios = [s.buffer[a - s.buffer_start:b - s.buffer_start] for s, (a, b, _) in batch]
            for (state, utterance), tokens in zip(batch, self.decode_batch(audios)):
                self._guard(state, self._deliver, state, utterance, tokens)
        for state in ready:
            state.done.clear()
            if state.finalizing and not state.closed:
                self._guard(state, self._finish_barrier, state)
            elif not state.closed:
                self._trim(state)
                if state.speech_from is not None:
                    # the utterance that a cut opened while the last one waited for its decode: its start is
                    # told now, after that one's end (``_cut_if_too_long`` could not: its segment was still open)
                    self._emit(state, state.tracker.start(state.speech_from / MODEL_SAMPLE_RATE))

    def _deliver(self, state: UtteranceState, utterance: tuple[int, int, str], tokens) -> None:
        start, end, reason = utterance
        tr = state.tracker
        tr.time_base = start / MODEL_SAMPLE_RATE
        self._emit(state, tr.start(tr.time_base))  # when VAD heard this one start before the last was decoded
        tr.add([t for t in tokens if t.id not in self.vocab.eou_ids], end / MODEL_SAMPLE_RATE)  # no partials here
        self._emit(state, tr.endpoint(reason, end / MODEL_SAMPLE_RATE))

    def _finish_barrier(self, state: UtteranceState) -> None:
        if state.finalizing is Barrier.FINISH:
            self._release(state)  # before StreamEnded, as in ChunkScheduler._finalize
            seconds = round(state.total_samples / MODEL_SAMPLE_RATE, 3)
            self._emit(state, [StreamEnded(seconds, state.tracker.segments_finalised)])
        else:
            state.finalizing = None


def log_segmented_mode(name: str) -> None:
    logger.warning(
        f"model {name!r} is not cache-aware (full-context attention): running in VAD-segmented mode — each "
        f"utterance is transcribed once Silero VAD hears it end, so there are no partial results and finals "
        f"arrive after the end of speech; use a cache-aware checkpoint for streaming latency")
