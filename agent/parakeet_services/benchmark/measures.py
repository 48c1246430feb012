"""What every measured system reports (``LevelResult``) and the measurements they share: latency percentiles,
speech ends matched to finals, latency growth (a backlog), peak memory."""
from __future__ import annotations

import resource
import threading
from dataclasses import dataclass, field

import numpy as np

from parakeet_stream.audio import MODEL_SAMPLE_RATE


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


def dependency_samples(audio_end: float, total: int) -> int:
    """The input samples a result depends on (``Partial.audio_end`` is that point on the stream clock)."""
    return min(max(round(audio_end * MODEL_SAMPLE_RATE), 1), total)


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


def squash(text: str) -> str:
    """Text without spaces: segment cuts may fall inside a word, so compare the character stream."""
    return "".join(text.split())


def rss_mb() -> float:
    """The process's peak resident memory (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gpu_peak_mb(device: str) -> float | None:
    """Peak CUDA memory torch allocated (MiB); None off the GPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)
