"""The systems measured at one level of N streams, each returning a ``LevelResult``: the streaming engine (also
as the ``per_stream`` and ``per_stream_nemo`` baselines and with batch caps) and ``vad_offline``, the original
dalston design. NeMo's own pipeline is in ``nemo_pipeline``."""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Callable

import numpy as np

from parakeet_stream.audio import MODEL_SAMPLE_RATE

from .config import LEVEL_GRACE_S, BenchConfig
from .feeder import Feeder
from .measures import (LevelResult, ResultSampler, dependency_samples, gpu_peak_mb, latency_growth, match_finals,
                       percentiles, result_growth, result_percentiles, rss_mb, squash)
from .workload import Workload


class EngineRun:
    """One level of the streaming engine (batched, or ``max_batch=1`` for the per-stream baseline)."""

    def __init__(self, model, cfg: BenchConfig, offline: list[str], max_batch: int | None,
                 nemo_step: bool = False, system: str | None = None):
        self.model, self.cfg, self.offline, self.max_batch = model, cfg, offline, max_batch
        self.nemo_step = nemo_step  # NeMo's own step on a model no engine has changed (``plain_copy``)
        self.system = system or ("engine" if max_batch is None else "per_stream_nemo" if nemo_step else "per_stream")

    def __call__(self, workload: Workload, n: int, log: Callable[[str], None]) -> LevelResult:
        import parakeet_stream as ps

        cfg = self.cfg
        system = self.system
        config = ps.EngineConfig(model=cfg.model, chunk_ms=cfg.chunk_ms, max_streams=n,
                                 max_batch=self.max_batch or cfg.max_batch, nemo_step=self.nemo_step,
                                 batch_window_ms=None if self.max_batch == 1 else cfg.batch_window_ms)
        engine = ps.Engine.from_model(self.model, config)
        opts = ps.EndpointingOptions(vad=cfg.vad, eou=False, trailing_blank_ms=None,
                                     min_silence_ms=cfg.min_silence_ms)
        try:
            streams = [engine.open_stream(endpointing=opts, stream_id=f"s{i}") for i in range(n)]
            audios = [workload.audio[workload.for_stream(i)] for i in range(n)]
            feeder = Feeder(audios, cfg.spread_s)
            cpu0, wall0 = time.process_time(), time.monotonic()
            with ResultSampler(engine) as sampler:
                feeder.run(lambda i, pcm: streams[i].push(pcm), lambda i: streams[i].finish(),
                           lambda t: log(f"    {system} N={n}: {t:.0f} s fed, {engine.metrics().steps} steps"))
            deadline = time.monotonic() + LEVEL_GRACE_S
            events = [_drain(s, deadline) for s in streams]
            wall = time.monotonic() - wall0
            cpu = time.process_time() - cpu0
            metrics = engine.metrics()
        finally:
            engine.close()
        return self._result(system, n, workload, feeder, events, metrics, wall, cpu, sampler.snapshots)

    def _result(self, system, n, workload, feeder, events, metrics, wall, cpu, snapshots) -> LevelResult:
        from parakeet_stream.events import Final, Partial, StreamFailed

        chunk_s = self.cfg.chunk_ms / 1000
        lat, points, final_lat, texts_ok, failed, n_ends, matched = [], [], [], 0, 0, 0, 0
        for i, evs in enumerate(events):
            total = feeder.audios[i].shape[0]
            for ev in evs:
                if isinstance(ev, Partial):
                    dep = feeder.arrival_of_sample(i, dependency_samples(ev.audio_end, total))
                    lat.append(ev.emitted_at - dep)
                    points.append((dep, ev.emitted_at - dep))
            failed += any(isinstance(ev, StreamFailed) for ev in evs)
            finals = [e for e in evs if isinstance(e, Final)]
            text = " ".join(f.text for f in finals)
            texts_ok += squash(text) == squash(self.offline[workload.for_stream(i)])
            ends = workload.speech_ends[workload.for_stream(i)]
            vad_finals = [(f.audio_end, f.emitted_at) for f in finals if f.reason == "vad"]
            pairs = match_finals(ends, vad_finals, self.cfg.min_silence_ms / 1000 + 1.0)
            n_ends += len(ends)
            matched += len(pairs)
            final_lat += [emitted - feeder.arrival_of_sample(i, round(e * MODEL_SAMPLE_RATE)) for e, emitted in pairs]
        audio_s = sum(a.shape[0] for a in feeder.audios) / MODEL_SAMPLE_RATE
        growth = result_growth(snapshots)
        if growth is None:  # too short a run for intervals: the partials' own trend
            growth = latency_growth(points)
        partial_p = percentiles(lat)
        p = result_percentiles(metrics) or partial_p
        res = LevelResult(
            system=system, streams=n, partials=len(lat), latency_ms=p, results=metrics.results,
            partial_latency_ms=partial_p, final_latency_ms=percentiles(final_lat),
            speech_ends=n_ends, finals_matched=matched, latency_growth_ms=round(growth * 1000, 1),
            compute_rtf=round(metrics.step_seconds_sum / audio_s, 4), cpu_utilisation=round(cpu / wall, 2),
            audio_seconds=round(audio_s, 1), wall_seconds=round(wall, 1), steps=metrics.steps,
            mean_batch=round(metrics.streams_stepped / max(metrics.steps, 1), 2), max_batch=metrics.max_batch_size,
            feeder_lag_ms_p99=round(float(np.percentile(feeder.lags, 99)) * 1000, 1), text_matches_offline=texts_ok,
            failed_streams=failed, peak_rss_mb=round(rss_mb(), 1), peak_gpu_mb=gpu_peak_mb(self.cfg.device))
        res.sustainable = bool(p) and p["p95"] <= chunk_s * 1000 and growth <= chunk_s / 2 and failed == 0 \
            and res.feeder_lag_ms_p99 <= chunk_s * 500
        if res.feeder_lag_ms_p99 > chunk_s * 500:
            res.note = "the feeder thread fell behind real time: this N cannot be generated from one Python thread"
        return res


def _drain(stream, deadline: float) -> list:
    """All events of a finished stream (the engine timestamps them, so reading late changes nothing). A stream
    still running at ``deadline`` is closed and gets a StreamFailed marker: the level fell hopelessly behind."""
    from parakeet_stream.events import StreamFailed

    events = []
    while True:
        ev = stream.next_event(timeout=max(0.01, deadline - time.monotonic()))
        if ev is None:
            if time.monotonic() >= deadline and not stream.closed:
                stream.close()
                events.append(StreamFailed("benchmark: not finished within the grace period"))
            return events
        events.append(ev)


class VadOfflineRun:
    """The original dalston design: per-stream Silero VAD; each closed segment is decoded offline by one
    model worker (FIFO), and that decode is the segment's only result."""

    def __init__(self, model, cfg: BenchConfig) -> None:
        self.model, self.cfg = model, cfg

    def __call__(self, workload: Workload, n: int, log: Callable[[str], None]) -> LevelResult:
        import parakeet_stream as ps
        from parakeet_stream.endpointing import VoiceActivity

        cfg = self.cfg
        engine = ps.Engine.from_model(self.model, ps.EngineConfig(model=cfg.model, chunk_ms=cfg.chunk_ms,
                                                                  max_streams=1))
        opts = ps.EndpointingOptions(vad=True, min_silence_ms=cfg.min_silence_ms)
        vads = [VoiceActivity(opts) for _ in range(n)]
        audios = [workload.audio[workload.for_stream(i)] for i in range(n)]
        feeder = Feeder(audios, cfg.spread_s)
        vad_q: queue.Queue = queue.Queue()
        seg_q: queue.Queue = queue.Queue()
        done: list[tuple[int, float, float, float]] = []  # stream, segment end (s), emitted, decode seconds
        open_at = [None] * n
        fed = [0] * n

        stop = threading.Event()

        def vad_worker() -> None:
            while (item := vad_q.get()) is not None and not stop.is_set():
                i, pcm = item
                if pcm is None:  # stream end: a segment still open is decoded to the end
                    if open_at[i] is not None:
                        seg_q.put((i, open_at[i], fed[i]))
                    continue
                for kind, at in vads[i].process(pcm):
                    if kind == "start":
                        open_at[i] = at
                    elif open_at[i] is not None:
                        seg_q.put((i, open_at[i], at))
                        open_at[i] = None
                fed[i] += pcm.shape[0]
            seg_q.put(None)

        def decode_worker() -> None:
            while (item := seg_q.get()) is not None and not stop.is_set():
                i, start, end = item
                t = time.perf_counter()
                engine.transcribe(audios[i][start:end])
                done.append((i, end / MODEL_SAMPLE_RATE, time.monotonic(), time.perf_counter() - t))

        workers = [threading.Thread(target=vad_worker, daemon=True), threading.Thread(target=decode_worker,
                                                                                      daemon=True)]
        for w in workers:
            w.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        try:
            feeder.run(lambda i, pcm: vad_q.put((i, pcm)), lambda i: vad_q.put((i, None)),
                       lambda t: log(f"    vad_offline N={n}: {t:.0f} s fed, {len(done)} segments decoded"))
            vad_q.put(None)
            end = time.monotonic() + LEVEL_GRACE_S
            for w in workers:
                w.join(timeout=max(0.1, end - time.monotonic()))
            stop.set()  # fell behind: abandon the rest (counted as unmatched speech ends)
            for w in workers:
                w.join(timeout=30)
        finally:
            engine.close()
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        final_lat, n_ends, matched = [], 0, 0
        for i in range(n):
            ends = workload.speech_ends[workload.for_stream(i)]
            segs = sorted((end, emitted) for j, end, emitted, _ in done if j == i)
            pairs = match_finals(ends, segs, cfg.min_silence_ms / 1000 + 1.0)
            n_ends += len(ends)
            matched += len(pairs)
            final_lat += [emitted - feeder.arrival_of_sample(i, round(e * MODEL_SAMPLE_RATE)) for e, emitted in pairs]
        audio_s = sum(a.shape[0] for a in audios) / MODEL_SAMPLE_RATE
        p = percentiles(final_lat)
        res = LevelResult(
            system="vad_offline", streams=n, final_latency_ms=p, speech_ends=n_ends, finals_matched=matched,
            compute_rtf=round(sum(d for *_, d in done) / audio_s, 4), cpu_utilisation=round(cpu / wall, 2),
            audio_seconds=round(audio_s, 1), wall_seconds=round(wall, 1), steps=len(done), mean_batch=1.0,
            max_batch=1, feeder_lag_ms_p99=round(float(np.percentile(feeder.lags, 99)) * 1000, 1),
            peak_rss_mb=round(rss_mb(), 1), peak_gpu_mb=gpu_peak_mb(cfg.device),
            note="no partial results: text only after VAD end + offline decode")
        # it keeps up while the decode queue drains: the final latency stays below the silence wait + 1 s
        res.sustainable = bool(p) and p["p95"] <= cfg.min_silence_ms + 1000 and matched == n_ends
        return res


def warm_up(model, cfg: BenchConfig, workload: Workload) -> None:
    """One short stream first, so one-off costs (allocator, kernels, VAD load) do not land in level 1."""
    short = Workload([a[: 3 * MODEL_SAMPLE_RATE] for a in workload.audio[:1]], [[]], "warm-up")
    warm_cfg = dataclasses.replace(cfg, spread_s=0.0)
    EngineRun(model, warm_cfg, [""], None)(short, 1, lambda s: None)
