"""What an engine counts as it runs: steps, batch sizes, step and result latencies, lag, CPU threads."""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

STEP_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
RESULT_LATENCY_MAX_MS = 10_000  # result latencies are counted per millisecond up to here (the last bin: beyond)


@dataclass
class EngineMetrics:
    """Counters since start; ``step_latency_buckets`` maps an upper bound in seconds to a cumulative count.

    ``result_latency_ms`` counts every stream-step's result latency per whole millisecond: the time from the
    arrival of the last audio a step's result depends on (``Stream.processed_time``) to the end of that step, for
    every step of every stream whether or not its text changed (``Partial`` events come only with new text)."""

    active_streams: int = 0
    streams_opened: int = 0
    steps: int = 0
    streams_stepped: int = 0
    audio_seconds: float = 0.0
    step_seconds_sum: float = 0.0
    last_batch_size: int = 0
    max_batch_size: int = 0
    step_latency_buckets: dict[float, int] = field(
        default_factory=lambda: dict.fromkeys((*STEP_LATENCY_BUCKETS, float("inf")), 0))
    result_latency_ms: list[int] = field(default_factory=lambda: [0] * (RESULT_LATENCY_MAX_MS + 1))
    result_latency_seconds_sum: float = 0.0
    wakeups: int = 0  # times the inference thread woke to work (``InferenceLoop._round``, ``_plan_sleep``)
    lagging_streams: int = 0  # streams behind now (``InferenceLoop._check_lag``)
    lag_episodes: int = 0  # times a stream fell behind
    max_lag_seconds: float = 0.0  # the longest any live stream's decodable audio has waited, at the last look
    cpu_threads: int = 0  # torch threads of the steps now (``threads.ThreadGovernor``)
    thread_switches: int = 0
    # held to count: the inference thread records while callers take snapshots
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self, active: int) -> EngineMetrics:
        with self.lock:
            return EngineMetrics(active, self.streams_opened, self.steps, self.streams_stepped,
                                 round(self.audio_seconds, 3), self.step_seconds_sum, self.last_batch_size,
                                 self.max_batch_size, dict(self.step_latency_buckets), list(self.result_latency_ms),
                                 self.result_latency_seconds_sum, self.wakeups, self.lagging_streams,
                                 self.lag_episodes, self.max_lag_seconds, self.cpu_threads, self.thread_switches)

    @classmethod
    def merged(cls, snapshots: list[EngineMetrics]) -> EngineMetrics:
        """One engine's counts from its lanes' snapshots: sums, histograms added, the largest of the maxima."""
        if len(snapshots) == 1:
            return snapshots[0]
        out = cls()
        for m in snapshots:
            for name in ("active_streams", "streams_opened", "steps", "streams_stepped", "audio_seconds",
                         "step_seconds_sum", "result_latency_seconds_sum", "wakeups", "lagging_streams",
                         "lag_episodes", "cpu_threads", "thread_switches"):
                setattr(out, name, getattr(out, name) + getattr(m, name))
            out.max_batch_size = max(out.max_batch_size, m.max_batch_size)
            out.max_lag_seconds = max(out.max_lag_seconds, m.max_lag_seconds)
            for le, count in m.step_latency_buckets.items():
                out.step_latency_buckets[le] += count
            out.result_latency_ms = [a + b for a, b in zip(out.result_latency_ms, m.result_latency_ms)]
        out.audio_seconds = round(out.audio_seconds, 3)
        out.last_batch_size = snapshots[0].last_batch_size
        return out

    def record_result_latency(self, seconds: float) -> None:
        self.record_result_latencies([seconds])

    def record_result_latencies(self, seconds: list[float]) -> None:
        """Count several results' latencies under one acquisition of the lock (a batch's streams)."""
        with self.lock:
            bins = self.result_latency_ms
            for s in seconds:
                bins[min(max(int(s * 1000), 0), RESULT_LATENCY_MAX_MS)] += 1
            self.result_latency_seconds_sum += sum(seconds)

    @property
    def results(self) -> int:
        return sum(self.result_latency_ms)

    def result_latency_buckets(self, bounds: tuple[float, ...] = STEP_LATENCY_BUCKETS) -> list[tuple[float, int]]:
        """Cumulative counts of results at most ``le`` seconds late, for each bound (Prometheus' histogram; exact
        to the millisecond: a result in bin ``ms`` was ``ms`` to ``ms + 1`` ms late)."""
        out, seen, ms = [], 0, 0
        for le in bounds:
            while ms < RESULT_LATENCY_MAX_MS and ms + 1 <= round(le * 1000):
                seen += self.result_latency_ms[ms]
                ms += 1
            out.append((le, seen))
        return out

    def result_latency_percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of result latency in ms (to the millisecond), None before any result."""
        total = self.results
        if total == 0:
            return None
        rank, seen = q / 100 * total, 0
        for ms, count in enumerate(self.result_latency_ms):
            seen += count
            if seen >= rank and count:
                return float(ms)
        return float(RESULT_LATENCY_MAX_MS)

    def record_step(self, batch: int, seconds: float, audio_seconds: float) -> None:
        with self.lock:
            self.steps += 1
            self.streams_stepped += batch
            self.step_seconds_sum += seconds
            self.audio_seconds += audio_seconds
            self.last_batch_size = batch
            self.max_batch_size = max(self.max_batch_size, batch)
            i = bisect.bisect_left(STEP_LATENCY_BUCKETS, seconds)
            for le in (*STEP_LATENCY_BUCKETS[i:], float("inf")):
                self.step_latency_buckets[le] += 1
