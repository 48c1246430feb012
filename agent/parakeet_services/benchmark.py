"""``parakeet-stream bench``: how many live streams one engine sustains, at what latency, against baselines.

N streams are fed at real-time pace (20 ms packets, staggered starts) from speech with pauses. Latency is
measured from the engine's own timestamps: a Partial carries ``audio_end`` (the stream audio its result depends
on) and ``emitted_at``; the feeder records when the packet holding sample ``audio_end`` arrived. The same audio runs through the baselines in the same process:

* ``per_stream``  — the engine with ``max_batch=1``: one stream per model call, with every per-step gain of the
  engine (traced step, packed weights, kept keys and values), so it isolates what batching brings;
* ``per_stream_nemo`` — one stream per call of NeMo's own eager ``cache_aware_stream_step`` on a copy of the model
  no engine has changed (``nemo_step=True``): how NVIDIA's Pipecat service and dalston's nemotron path step;
* ``vad_offline`` — the original dalston design: Silero VAD segments, each decoded offline after its end;
* ``nemo_pipeline`` — NeMo's own ``nemo.collections.asr.inference`` cache-aware pipeline (``nemo_pipeline.py``).

The ramp raises N until p95 latency exceeds the chunk or latency keeps growing (a backlog); the last N that
passed is the maximum sustainable stream count. Heavy imports (torch, NeMo) happen inside functions.
"""
from __future__ import annotations

import dataclasses
import datetime
import heapq
import json
import math
import os
import platform
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from parakeet_stream.models import frame_seconds

SAMPLE_RATE = 16000
PACKET_MS = 20
PACKET = SAMPLE_RATE * PACKET_MS // 1000
RANDOM_ARCHS = ("tiny", "large", "xl")
BASELINES = ("per_stream", "per_stream_nemo", "vad_offline", "nemo_pipeline")
LEVEL_GRACE_S = 30.0  # after the last packet, how long a level may take to deliver its results
# Sentences the demo model transcribes word for word (tests/support.py RELIABLE_SENTENCES) plus a few more
# from its closed vocabulary, so a run on the demo model also shows real text.
SENTENCES = (
    "call me at seven thirty", "four five six", "set a timer for ten minutes", "please open the window",
    "turn on the lights", "call me at seven thirty tomorrow morning", "we have ten minutes left",
    "can you call john for me", "please close the door", "set an alarm for six fifteen",
)
VOICES = ("en-us", "en-gb")


# -- configuration -------------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """Every knob of a run; the CLI fills it, tests build it directly."""

    model: str = "large"  # tiny | large | xl (random weights, real layout), a known name, or a .nemo path
    chunk_ms: int = 160
    dtype: str = "bf16"
    device: str = "cpu"
    threads: int | None = 2
    seconds: float = 12.0  # audio per stream
    files: tuple[str, ...] = ()
    levels: tuple[int, ...] | None = None  # fixed stream counts; None = ramp (doubling, then bisection)
    baseline_levels: tuple[int, ...] | None = None  # fixed stream counts of the baselines; None = as the engine
    max_level: int = 4096
    spread_s: float = 1.0  # stream i starts at i * spread_s / N
    batch_window_ms: float | None = None  # the tick of the engine's chunk clock (None: the engine's default)
    max_batch: int | None = None  # the engine's streams per model call (None: every ready stream; more: pipelined)
    # the engine again with each of these caps (at its levels above the cap), reported beside the baselines as
    # ``engine_max_batch_<cap>`` with ratios to the engine: which cut of a large step serves best
    max_batch_variants: tuple[int, ...] = ()
    baselines: tuple[str, ...] = BASELINES
    vad: bool = True  # endpointing by Silero VAD (the same detector the vad_offline baseline uses)
    min_silence_ms: int = 500
    seed: int = 0
    time_budget_s: float = 780.0  # stop ramping (and skip baselines) once this much time has gone
    out: str | None = None


@dataclass
class Workload:
    """Distinct stream audios (stream i plays ``audio[i % len]``) and where speech ends in each (seconds)."""

    audio: list[np.ndarray]
    speech_ends: list[list[float]]
    source: str

    def for_stream(self, i: int) -> int:
        return i % len(self.audio)


@dataclass
class LevelResult:
    system: str
    streams: int
    partials: int = 0
    # p50/p95/p99/max of per-result latency: every stream-step's result where the engine reports them (``results``
    # of them, text changed or not), else every partial; ``partial_latency_ms``: partials only
    latency_ms: dict[str, float] = field(default_factory=dict)
    results: int = 0
    partial_latency_ms: dict[str, float] = field(default_factory=dict)
    final_latency_ms: dict[str, float] = field(default_factory=dict)  # speech end -> final
    speech_ends: int = 0
    finals_matched: int = 0
    latency_growth_ms: float = 0.0
    compute_rtf: float = 0.0  # model compute seconds / audio seconds
    cpu_utilisation: float = 0.0  # process CPU seconds / wall seconds (all threads)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    steps: int = 0
    mean_batch: float = 0.0
    max_batch: int = 0
    feeder_lag_ms_p99: float = 0.0
    text_matches_offline: int | None = None  # streams whose joined finals equal the offline decode
    failed_streams: int = 0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    sustainable: bool = False
    note: str = ""


# -- workload ------------------------------------------------------------------------------------------------
def espeak(text: str, voice: str, rate: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng as 16 kHz float32, trailing silence trimmed (so its end is speech end)."""
    import soundfile as sf
    import soxr

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", f.name, text], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        audio, sr = sf.read(f.name, dtype="float32")
    return trim_trailing_silence(soxr.resample(audio, sr, SAMPLE_RATE).astype(np.float32))


def trim_trailing_silence(audio: np.ndarray) -> np.ndarray:
    """Cut after the last sample above 1 % of the peak, so the clip's end is where its speech ends."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * max(float(np.abs(audio).max()), 1e-6))
    return audio[: loud[-1] + 1] if loud.size else audio


def compose(utterances: list[np.ndarray], pauses: list[float], tail_s: float = 1.5) -> tuple[np.ndarray, list[float]]:
    """Utterances separated by pauses, ending in silence long enough for the VAD to close the last one."""
    parts, ends, pos = [], [], 0
    for utt, pause in zip(utterances, pauses):
        gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
        parts += [gap, utt]
        pos += gap.shape[0] + utt.shape[0]
        ends.append(pos / SAMPLE_RATE)
    parts.append(np.zeros(int(tail_s * SAMPLE_RATE), np.float32))
    return np.concatenate(parts), ends


def speech_workload(seconds: float, variants: int = 8, seed: int = 0) -> Workload:
    """``variants`` espeak-ng compositions of about ``seconds`` each: sentences, voices and pauses vary."""
    rng = np.random.default_rng(seed)
    cache: dict[tuple[str, str], np.ndarray] = {}
    audios, ends = [], []
    for _ in range(variants):
        utts, pauses, total = [], [], 0.0
        while total < seconds - 2.5 or not utts:
            key = (SENTENCES[rng.integers(len(SENTENCES))], VOICES[rng.integers(len(VOICES))])
            if key not in cache:
                cache[key] = espeak(*key)
            pause = float(rng.uniform(0.7, 1.5))
            utts.append(cache[key])
            pauses.append(pause)
            total += pause + cache[key].shape[0] / SAMPLE_RATE
        audio, e = compose(utts, pauses)
        audios.append(audio)
        ends.append(e)
    return Workload(audios, ends, f"espeak-ng, {variants} compositions of ~{seconds:.0f} s (sentences with pauses)")


def detect_speech_ends(audio: np.ndarray, min_gap_s: float = 0.3) -> list[float]:
    """Speech ends in a recording: ends of loud 10 ms runs followed by at least ``min_gap_s`` of quiet."""
    hop = SAMPLE_RATE // 100
    n = audio.shape[0] // hop
    if n == 0:
        return []
    energy = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = energy > max(float(energy.max()) * 0.03, 1e-4)
    ends, last_loud = [], None
    for i, is_loud in enumerate(loud):
        if is_loud:
            last_loud = i
        elif last_loud is not None and (i - last_loud) * 0.01 >= min_gap_s:
            ends.append((last_loud + 1) * 0.01)
            last_loud = None
    return ends


def file_workload(paths: tuple[str, ...]) -> Workload:
    import soundfile as sf
    import soxr

    audios, ends = [], []
    for p in paths:
        audio, sr = sf.read(p, dtype="float32", always_2d=True)
        audio = soxr.resample(audio.mean(axis=1), sr, SAMPLE_RATE).astype(np.float32) if sr != SAMPLE_RATE \
            else audio.mean(axis=1).astype(np.float32)
        audio = np.concatenate([audio, np.zeros(int(1.5 * SAMPLE_RATE), np.float32)])
        audios.append(audio)
        ends.append(detect_speech_ends(audio))
    return Workload(audios, ends, "files: " + ", ".join(os.path.basename(p) for p in paths))


def dependency_samples(audio_end: float, total: int) -> int:
    """The input samples a result depends on (``Partial.audio_end`` is that point on the stream clock)."""
    return min(max(round(audio_end * SAMPLE_RATE), 1), total)


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    v = np.asarray(values, dtype=np.float64) * 1000.0
    return {k: round(float(np.percentile(v, q)), 1) for k, q in (("p50", 50), ("p95", 95), ("p99", 99))} | \
        {"min": round(float(v.min()), 1), "max": round(float(v.max()), 1), "mean": round(float(v.mean()), 1)}


def result_percentiles(metrics) -> dict[str, float]:
    """p50/p95/p99/max of the engine's own count of every stream-step result's latency (1 ms bins)."""
    if not metrics.results:
        return {}
    return {f"p{q}": metrics.result_latency_percentile(q) for q in (50, 95, 99)} | \
        {"min": metrics.result_latency_percentile(0), "max": metrics.result_latency_percentile(100)}


def latency_growth(points: list[tuple[float, float]]) -> float:
    """Median latency of the last fifth minus that of the second fifth (by dependency time): a backlog grows."""
    if len(points) < 10:
        return 0.0
    pts = sorted(points)
    k = len(pts) // 5
    late = np.median([lat for _, lat in pts[-k:]])
    early = np.median([lat for _, lat in pts[k:2 * k]])
    return float(late - early)


def histogram_median(counts: np.ndarray) -> float | None:
    """The median of a per-millisecond latency histogram (ms; the upper middle one of an even count), None when
    it is empty."""
    total = int(counts.sum())
    if total == 0:
        return None
    return float(np.searchsorted(np.cumsum(counts), (total + 1) / 2))


def result_growth(snapshots: list[np.ndarray]) -> float | None:
    """``latency_growth`` over every stream-step's result: the engine's cumulative latency histogram, sampled at
    regular times while the audio is fed, gives one median per interval; the median of the last fifth of those
    minus that of the second fifth (seconds). Hundreds of results instead of a few dozen partials, so one slow
    partial does not make a level look like it falls behind. None with too few intervals."""
    medians = [m for m in (histogram_median(b - a) for a, b in zip(snapshots, snapshots[1:])) if m is not None]
    if len(medians) < 10:
        return None
    k = len(medians) // 5
    return float(np.median(medians[-k:]) - np.median(medians[k:2 * k])) / 1000


class ResultSampler:
    """Samples an engine's cumulative result-latency histogram every ``period`` seconds (for ``result_growth``)."""

    def __init__(self, engine, period: float = 0.5) -> None:
        self.engine, self.period = engine, period
        self.snapshots: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> ResultSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        self.snapshots.append(np.asarray(self.engine.metrics().result_latency_ms, dtype=np.int64))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()


def squash(text: str) -> str:
    """Text without spaces: segment cuts may fall inside a word, so compare the character stream."""
    return "".join(text.split())


# -- real-time feeder ----------------------------------------------------------------------------------------
class Feeder:
    """Pushes every stream's 20 ms packets at their real-time due times from one thread; records arrivals."""

    def __init__(self, audios: list[np.ndarray], spread_s: float) -> None:
        n = len(audios)
        self.audios = audios
        self.starts = [i * spread_s / n for i in range(n)]
        self.counts = [math.ceil(a.shape[0] / PACKET) for a in audios]
        self.arrivals = [np.zeros(c) for c in self.counts]
        self.lags: list[float] = []

    def run(self, push: Callable[[int, np.ndarray], None], finish: Callable[[int], None],
            progress: Callable[[float], None] | None = None) -> float:
        """Feed everything; returns the monotonic time of stream 0's first packet."""
        t0 = time.monotonic() + 0.05
        heap = [(t0 + s, i, 0) for i, s in enumerate(self.starts)]
        heapq.heapify(heap)
        next_report = t0 + 5.0
        while heap:
            due, i, k = heapq.heappop(heap)
            wait = due - time.monotonic()
            if wait > 0.001:
                time.sleep(wait)
            now = time.monotonic()
            self.lags.append(max(0.0, now - due))
            self.arrivals[i][k] = now
            push(i, self.audios[i][k * PACKET:(k + 1) * PACKET])
            if k + 1 < self.counts[i]:
                heapq.heappush(heap, (due + PACKET_MS / 1000, i, k + 1))
            else:
                finish(i)
            if progress and now >= next_report:
                progress(now - t0)
                next_report = now + 5.0
        return t0

    def arrival_of_sample(self, i: int, samples: int) -> float:
        """When the packet holding sample number ``samples`` (1-based count) was pushed."""
        k = min(max(math.ceil(samples / PACKET) - 1, 0), self.counts[i] - 1)
        return float(self.arrivals[i][k])


# -- measured systems ----------------------------------------------------------------------------------------
def match_finals(ends: list[float], finals: list[tuple[float, float]], window_s: float) -> list[tuple[float, float]]:
    """Pair each true speech end with the first unused final (audio time, emitted) near it: the VAD may call the
    end up to a few hundred ms early on a fading last phoneme, or up to ``window_s`` late."""
    pairs, used = [], set()
    for e in ends:
        for j, (at, emitted) in enumerate(finals):
            if j not in used and e - 0.5 <= at <= e + window_s:
                used.add(j)
                pairs.append((e, emitted))
                break
    return pairs


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _gpu_peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


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
            final_lat += [emitted - feeder.arrival_of_sample(i, round(e * SAMPLE_RATE)) for e, emitted in pairs]
        audio_s = sum(a.shape[0] for a in feeder.audios) / SAMPLE_RATE
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
            failed_streams=failed, peak_rss_mb=round(_rss_mb(), 1), peak_gpu_mb=_gpu_peak_mb(self.cfg.device))
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
                done.append((i, end / SAMPLE_RATE, time.monotonic(), time.perf_counter() - t))

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
            final_lat += [emitted - feeder.arrival_of_sample(i, round(e * SAMPLE_RATE)) for e, emitted in pairs]
        audio_s = sum(a.shape[0] for a in audios) / SAMPLE_RATE
        p = percentiles(final_lat)
        res = LevelResult(
            system="vad_offline", streams=n, final_latency_ms=p, speech_ends=n_ends, finals_matched=matched,
            compute_rtf=round(sum(d for *_, d in done) / audio_s, 4), cpu_utilisation=round(cpu / wall, 2),
            audio_seconds=round(audio_s, 1), wall_seconds=round(wall, 1), steps=len(done), mean_batch=1.0,
            max_batch=1, feeder_lag_ms_p99=round(float(np.percentile(feeder.lags, 99)) * 1000, 1),
            peak_rss_mb=round(_rss_mb(), 1), peak_gpu_mb=_gpu_peak_mb(cfg.device),
            note="no partial results: text only after VAD end + offline decode")
        # it keeps up while the decode queue drains: the final latency stays below the silence wait + 1 s
        res.sustainable = bool(p) and p["p95"] <= cfg.min_silence_ms + 1000 and matched == n_ends
        return res


# -- orchestration -------------------------------------------------------------------------------------------
def ramp(run_level: Callable[[int], LevelResult], levels: tuple[int, ...] | None, deadline: float,
         max_level: int = 4096, refine: int = 3) -> tuple[list[LevelResult], int]:
    """Find the largest sustainable N: fixed ``levels`` run as given; otherwise N doubles from 1 until a level
    fails (or time runs out), then up to ``refine`` bisection steps narrow it to within ~1/8. Returns the
    results in run order and the largest sustainable N (0 if none)."""
    results: list[LevelResult] = []
    best, failed_at = 0, None

    def attempt(n: int) -> bool:
        nonlocal best, failed_at
        r = run_level(n)
        results.append(r)
        if r.sustainable:
            best = max(best, n)
        else:
            failed_at = n if failed_at is None else min(failed_at, n)
        return r.sustainable

    if levels:
        for n in levels:
            if results and time.monotonic() > deadline:
                break
            attempt(n)
        return results, best
    n = 1
    while n <= max_level and (not results or time.monotonic() < deadline):
        if not attempt(n):
            break
        n *= 2
    for _ in range(refine):
        if failed_at is None or failed_at - best <= max(1, best // 8) or time.monotonic() > deadline:
            break
        attempt((best + failed_at) // 2 if best else max(1, failed_at // 2))
    return results, best


def build_off_main_thread(build: Callable[[], Any]) -> Any:
    """Run ``build`` on a short-lived thread. Each thread that runs torch ops keeps an OpenMP pool until it
    exits, and with more pool threads than cores every engine step slows down ~1.8x (see ``Engine._start``):
    so the main thread of the benchmark never runs torch ops itself, and each engine's thread is the only one."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(_capture(build)), name="bench-build")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _capture(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as e:  # re-raised on the calling thread
        return False, e


RANDOM_TOKENS_PER_FRAME = 0.3  # English speech on Parakeet's 80 ms frames (tokens / frame of real checkpoints)


def load_model(cfg: BenchConfig):
    """The NeMo model for ``cfg.model``: random weights at a real layout, or a checkpoint; on the device in
    the requested dtype (``prepare_model`` keeps the preprocessor on the CPU, where features are computed)."""
    from parakeet_stream.models import select_chunk

    model = _build_model(cfg)
    if cfg.model in RANDOM_ARCHS:
        from parakeet_stream.testing import calibrate_token_rate

        # random joints emit up to max_symbols tokens a frame; speech gives ~0.3, and the decoder's cost follows.
        # Calibrated in the dtype and on the device it runs in: a blank bias tuned in fp32 rounds differently in
        # bf16, and the random joint's rate is a steep function of it (xl emitted nothing at all).
        # And in the look-ahead the engine will stream with: each attention context gives other random outputs.
        model.encoder.set_default_att_context_size(select_chunk(model, cfg.chunk_ms)[1])
        rate = calibrate_token_rate(model, speech_workload(4.0, seed=cfg.seed).audio[0], RANDOM_TOKENS_PER_FRAME)
        print(f"bench: random joint calibrated to {rate:.3f} tokens per encoder frame", file=sys.stderr, flush=True)
    return model


def _build_model(cfg: BenchConfig):
    from parakeet_stream.engine import prepare_model
    from parakeet_stream.models import load_nemo_model, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    if cfg.model in RANDOM_ARCHS:
        from parakeet_stream.testing import build_random_model

        model = build_random_model(cfg.model, seed=cfg.seed)
    else:
        model = load_nemo_model(cfg.model, "cpu")
    model = prepare_model(model, resolve_dtype(cfg.dtype, device))
    if device != "cpu":
        model.to(device)
        model.preprocessor.to("cpu")  # where prepare_model keeps it: features are computed on the CPU
    return model


def plain_copy(model, cfg: BenchConfig):
    """The same weights in a model no engine has changed: the engine keeps projections and packs weights in the
    layers of the model it serves, and the baselines that stand for NeMo's code must run NeMo's layers (a NeMo
    model cannot be ``deepcopy``-ed: the architecture is built again and the weights copied)."""
    copy = _build_model(cfg)
    copy.load_state_dict(model.state_dict())
    copy.encoder.set_default_att_context_size(list(model.encoder.att_context_size))
    return copy


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import nemo

        info["nemo"] = nemo.__version__
    except Exception:  # NeMo missing is reported by the model load itself
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def compare(engine: list[LevelResult], engine_best: int, others: dict[str, dict]) -> dict[str, Any]:
    """Each baseline as a ratio to the engine: sustainable streams, and latency/compute at a common N."""
    by_n = {r.streams: r for r in engine}
    out: dict[str, Any] = {}
    for name, b in others.items():
        if not b.get("levels"):
            continue
        entry: dict[str, Any] = {"max_sustainable_streams": b["max_sustainable_streams"]}
        if name != "vad_offline":
            entry["engine_streams_ratio"] = _ratio(engine_best, b["max_sustainable_streams"]) \
                if b["max_sustainable_streams"] else (f">= {engine_best}x (baseline sustains 0)" if engine_best else None)
        common = [lv for lv in b["levels"] if lv["streams"] in by_n]
        if common:
            lv = max(common, key=lambda x: x["streams"])
            e = by_n[lv["streams"]]
            entry["at_streams"] = lv["streams"]
            entry["latency_p95_ratio"] = _ratio(lv["latency_ms"].get("p95"), e.latency_ms.get("p95"))
            entry["final_latency_p95_ratio"] = _ratio(lv["final_latency_ms"].get("p95"),
                                                      e.final_latency_ms.get("p95"))
            entry["final_latency_p50_ratio"] = _ratio(lv["final_latency_ms"].get("p50"),
                                                      e.final_latency_ms.get("p50"))
            entry["compute_rtf_ratio"] = _ratio(lv["compute_rtf"], e.compute_rtf)
        out[name] = entry
    return out


def run_benchmark(cfg: BenchConfig, *, model=None, workload: Workload | None = None,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the engine ramp and the baselines; returns the JSON-ready result (also written to ``cfg.out``)."""
    import torch

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    started = time.monotonic()
    deadline = started + cfg.time_budget_s
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    machine = machine_info(cfg.device)
    log(f"bench: model={cfg.model} dtype={cfg.dtype} chunk={cfg.chunk_ms} ms device={cfg.device} "
        f"load={machine['load_avg_at_start']}")
    if model is None:
        log("bench: building/loading the model ...")
        model = build_off_main_thread(lambda: load_model(cfg))
    if workload is None:
        log("bench: synthesizing speech ...")
        workload = file_workload(cfg.files) if cfg.files else speech_workload(cfg.seconds, seed=cfg.seed)
    offline = _offline_texts(model, cfg, workload)
    levels = tuple(cfg.levels) if cfg.levels else None
    base_levels = tuple(cfg.baseline_levels) if cfg.baseline_levels else levels

    def runner(run, label: str) -> Callable[[int], LevelResult]:
        def level(n: int) -> LevelResult:
            log(f"  {label}: N={n} ...")
            r = run(workload, n, log)
            log(f"  {label}: N={n} p95={r.latency_ms.get('p95', '-')} ms final p95="
                f"{r.final_latency_ms.get('p95', '-')} ms rtf={r.compute_rtf} batch={r.mean_batch}"
                f"/{r.max_batch} growth={r.latency_growth_ms} ms -> {'ok' if r.sustainable else 'NOT sustainable'}")
            return r
        return level

    _warm_up(model, cfg, workload, offline)
    plain_model: list = []

    def plain():
        """NeMo's own layers for the baselines that stand for NeMo's code (built once, when first needed)."""
        if not plain_model:
            log("bench: building a copy of the model with NeMo's own layers ...")
            plain_model.append(build_off_main_thread(lambda: plain_copy(model, cfg)))
        return plain_model[0]
    baselines: dict[str, dict[str, Any]] = {}
    engine_levels: list[LevelResult] = []
    engine_best = 0

    def assemble() -> dict[str, Any]:
        result = {
            "config": dataclasses.asdict(cfg), "machine": machine, "workload": workload.source,
            "audio_seconds_per_stream": [round(a.shape[0] / SAMPLE_RATE, 2) for a in workload.audio],
            "model": {"name": cfg.model, "params": sum(p.numel() for p in model.parameters()),
                      "frame_s": frame_seconds(model), "chunk_ms": cfg.chunk_ms},
            "latency_definition": "per-result: end of the step that produced a result - arrival of the packet holding "
                                  "the last sample its encoder frames depend on, for every stream-step (engine "
                                  "and per_stream: EngineMetrics.result_latency_ms; other baselines: their "
                                  "partials); partial: the same for Partial events only (Partial.emitted_at); "
                                  "final: Final.emitted_at - arrival of the packet holding the last speech "
                                  "sample (includes the VAD silence wait)",
            "engine": {"levels": [dataclasses.asdict(r) for r in engine_levels],
                       "max_sustainable_streams": engine_best},
            "baselines": baselines,
            "comparison": compare(engine_levels, engine_best, baselines),
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            "wall_seconds": round(time.monotonic() - started, 1),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if cfg.out:  # written after every phase, so a run cut short still leaves its numbers
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
        return result

    engine_levels, engine_best = ramp(runner(EngineRun(model, cfg, offline, None), "engine"),
                                      levels, deadline, cfg.max_level)
    assemble()
    if "per_stream" in cfg.baselines:
        res, best = ramp(runner(EngineRun(model, cfg, offline, 1), "per_stream"), base_levels, deadline,
                         cfg.max_level)
        baselines["per_stream"] = {"levels": [dataclasses.asdict(r) for r in res], "max_sustainable_streams": best}
        assemble()
    if "per_stream_nemo" in cfg.baselines:
        res, best = ramp(runner(EngineRun(plain(), cfg, offline, 1, nemo_step=True), "per_stream_nemo"),
                         base_levels, deadline, cfg.max_level)
        baselines["per_stream_nemo"] = {"levels": [dataclasses.asdict(r) for r in res],
                                        "max_sustainable_streams": best}
        assemble()
    common = max(base_levels) if base_levels else max(engine_best, 1)
    if "vad_offline" in cfg.baselines:
        r = runner(VadOfflineRun(model, cfg), "vad_offline")(common)
        baselines["vad_offline"] = {"levels": [dataclasses.asdict(r)],
                                    "max_sustainable_streams": common if r.sustainable else None,
                                    "note": "run at the engine's max sustainable N only (not ramped)"}
        assemble()
    if "nemo_pipeline" in cfg.baselines:
        from . import nemo_pipeline

        baselines["nemo_pipeline"] = nemo_pipeline.run(plain(), cfg, workload, base_levels, deadline, log)
    for cap in cfg.max_batch_variants:
        name = f"engine_max_batch_{cap}"
        if time.monotonic() > deadline:  # exploratory: never at the cost of the run's time box
            baselines[name] = {"levels": [], "max_sustainable_streams": None, "skipped": "time budget spent"}
            continue
        candidates = levels or (max(engine_best, 1),)
        at = tuple(n for n in candidates if n > cap) or (max(candidates),)
        res, best = ramp(runner(EngineRun(model, cfg, offline, cap, system=name), name), at, deadline,
                         cfg.max_level)
        baselines[name] = {"levels": [dataclasses.asdict(r) for r in res], "max_sustainable_streams": best}
        assemble()
    return assemble()


def _offline_texts(model, cfg: BenchConfig, workload: Workload) -> list[str]:
    """Offline decode of each distinct audio: what every stream's joined finals must equal."""
    import parakeet_stream as ps

    engine = ps.Engine.from_model(model, ps.EngineConfig(model=cfg.model, chunk_ms=cfg.chunk_ms, max_streams=1))
    try:
        return [engine.transcribe(a).text for a in workload.audio]
    finally:
        engine.close()


def _warm_up(model, cfg: BenchConfig, workload: Workload, offline: list[str]) -> None:
    """One short stream first, so one-off costs (allocator, kernels, VAD load) do not land in level 1."""
    short = Workload([a[: 3 * SAMPLE_RATE] for a in workload.audio[:1]], [[]], "warm-up")
    warm_cfg = dataclasses.replace(cfg, spread_s=0.0)
    EngineRun(model, warm_cfg, [""], None)(short, 1, lambda s: None)


# -- report --------------------------------------------------------------------------------------------------
def markdown(result: dict[str, Any]) -> str:
    """The result as markdown: one row per measured level, then the ratios and the machine."""
    m, cfg = result["machine"], result["config"]
    lines = [
        f"### `{cfg['model']}` {cfg['dtype']} @ {cfg['chunk_ms']} ms on {m.get('gpu') or m['cpu']} "
        f"({m['torch_threads']} threads, load {m['load_avg_at_start'][0]} → {result['load_avg_at_end'][0]})",
        "",
        "| system | N | results | p50 ms | p95 ms | p99 ms | partials | partial p95 ms | final p50 ms | final p95 ms "
        "| RTF | batch mean/max | text = offline | growth ms | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(r, "engine") for r in result["engine"]["levels"]]
    for name, b in result["baselines"].items():
        rows += [(r, name) for r in b.get("levels", [])]
    for r, name in rows:
        lat, fin, part = r["latency_ms"], r["final_latency_ms"], r.get("partial_latency_ms") or r["latency_ms"]
        lines.append(
            f"| {name} | {r['streams']} | {r.get('results') or r['partials']} | {_ms(lat.get('p50'))} | "
            f"{_ms(lat.get('p95'))} | {_ms(lat.get('p99'))} | {r['partials']} | {part.get('p95', '–')} | "
            f"{fin.get('p50', '–')} | {fin.get('p95', '–')} | {r['compute_rtf']} | "
            f"{r['mean_batch']}/{r['max_batch']} | {_of(r['text_matches_offline'], r['streams'])} | "
            f"{r['latency_growth_ms']} | {'✓' if r['sustainable'] else '✗'} |")
    lines += ["", f"**Engine: max sustainable streams = {result['engine']['max_sustainable_streams']}** "
                  f"(p95 per-result latency ≤ {cfg['chunk_ms']} ms, no growing backlog)."]
    for name, c in result["comparison"].items():
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in c.items()]
        lines.append(f"- {name}: " + ", ".join(parts))
    for name, b in result["baselines"].items():
        if b.get("skipped"):
            lines.append(f"- {name}: not run — {b['skipped']}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    """A latency cell; the engine counts results per millisecond up to RESULT_LATENCY_MAX_MS, later ones in its
    last bin, so a percentile there means at least that."""
    from parakeet_stream.runtime.metrics import RESULT_LATENCY_MAX_MS

    if value is None:
        return "–"
    return f"≥ {value}" if value >= RESULT_LATENCY_MAX_MS else str(value)


def _of(count: int | None, total: int) -> str:
    return "–" if count is None else f"{count}/{total}"


def main(cfg: BenchConfig) -> int:
    if cfg.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.out = f"bench/results/{Path(cfg.model).stem}-{cfg.dtype}-{cfg.chunk_ms}ms-{cfg.device}-{stamp}.json"
    result = run_benchmark(cfg)
    print(markdown(result))
    print(f"\nJSON: {cfg.out}", file=sys.stderr)
    return 0
