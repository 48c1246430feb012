"""How the engine uses CPU threads: OpenMP's wait policy, and how many threads the inference thread's steps use.

Two facts, measured on a 2-core VM with the demo model (``bench/realtime_load.py``, ``bench/neighbour.py``):

- OpenMP's default wait policy spins its pool threads between parallel regions. A single real-time stream then
  costs ~0.4 of a core doing nothing; with ``OMP_WAIT_POLICY=PASSIVE`` it costs ~0.15. The price is paid under
  load: waking the pool for each parallel region makes a step ~40 % longer (64 streams alone: p95 259 ms against
  103 ms spinning), but spinning threads stall outright beside another torch process, which is the common case.
  libgomp reads the policy once, when torch loads, so ``prefer_passive_openmp`` sets it at ``import
  parakeet_stream`` unless torch is already loaded or the variable is already set (yours wins).
- Beside another process doing torch work (its threads spinning on every core), a step split over two threads
  waits at every barrier for a thread the kernel has not scheduled: 64 streams went from p95 121 ms to 515 ms,
  and with spinning threads of its own the engine stopped progressing. On one thread the same 64 streams kept
  p95 123 ms. Alone, one thread serves fewer streams than all cores (~100 against ~160). With ``num_threads="auto"``
  the count is chosen as it runs (``ThreadGovernor``): all cores, one while a probe shows that one is clearly
  cheaper. That is opt-in because a step's rounding depends on its thread count (oneDNN's fp32 convolutions, and
  bf16 kernels on some CPUs): every probe and switch lets a stream's text drift from offline decoding in near-ties,
  which tiny test models hit within seconds. The default is a fixed count (all cores), exact, and with sleeping
  OpenMP threads one real-time stream beside a torch neighbour still ends 0.18 s after its audio.
"""
from __future__ import annotations

import collections
import logging
import os
import statistics
import sys
import time

logger = logging.getLogger("parakeet_stream")

PROBE_STEPS = 4  # steps run with the other thread count in one probe
WINDOW_STEPS = 8  # recent steps with the current count a probe is compared with
# switch when the probe's cost per stream is below this share of the current one: to one thread only on clear
# contention (alone, one thread's steps cost 0.7-1.3x those of two, from noise and batch size; beside a spinning
# neighbour, two threads' cost several times one's), back to all cores as soon as they are cheaper
SWITCH_TO_ONE = 0.5
SWITCH_TO_MOST = 0.8
MIN_WINDOW_STEPS = 3  # a probe needs at least this many recent steps to compare with
SLOW_STEP_S = 0.25  # a step this long with all threads (a stall beside spinning neighbours) brings a probe forward
PROBE_FEWER_EVERY_S = 2.0  # with all threads: how often one thread is tried (cheap: a little slower alone)
PROBE_MORE_EVERY_S = (5.0, 60.0)  # on one thread: first and longest interval between tries of all threads (a
#                                   try under contention costs PROBE_STEPS slow steps; it backs off by doubling)


# Read once by the native libraries when torch loads; a value already in the environment is kept.
CPU_RUNTIME_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",  # OpenMP pool threads sleep between steps instead of spinning
    # MKL picks its sgemm kernels by shape and alignment: on AVX-512 CPUs a stream's rows computed in a batch of
    # eight came out different from the same rows computed alone, so batched streaming drifted from offline
    # decoding (tests/engine/test_batching.py failed 4 of 13 there). STRICT makes results independent of them.
    "MKL_CBWR": "AUTO,STRICT",
}


AUTO = "auto"  # ``num_threads`` value: the governor chooses the count as the engine runs


def check_num_threads(value: int | str | None) -> int | str | None:
    """``value`` as given where it is a count of at least 1, ``"auto"`` or None; else a ValueError saying what is
    accepted."""
    if value is None or value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"num_threads must be a count of at least 1, 'auto' or None; got {value!r}")


def threads_argument(text: str) -> int | str:
    """argparse type of ``--threads``: a count of at least 1 or ``auto``."""
    import argparse

    if text == AUTO:
        return AUTO
    try:
        return check_num_threads(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count of at least 1 or 'auto', got {text!r}") from None


THREADS_HELP = ("CPU threads of the engine's steps: a count, or 'auto' (all cores, one while other processes "
                "compete for them; rounding may then differ from offline decoding). Default: all cores")


def prefer_cpu_runtime_env() -> list[str]:
    """Set ``CPU_RUNTIME_ENV`` for this process where torch has not loaded yet and nobody chose a value; returns
    the names set (none once torch is loaded: too late to matter)."""
    if "torch" in sys.modules:
        return []
    chosen = [name for name in CPU_RUNTIME_ENV if name not in os.environ]
    for name in chosen:
        os.environ[name] = CPU_RUNTIME_ENV[name]
    return chosen


class ThreadGovernor:
    """Chooses the torch thread count of the inference thread's steps: ``most`` threads, or one while one is
    measured to be cheaper per stream (another process competing for the cores).

    Runs on the inference thread only: ``before_step`` sets the count for the coming step, ``after_step`` records
    what it cost. Every so often a few steps run with the other count (a probe); their median cost per stream is
    compared with the median of the steps just before, and the cheaper count is kept if it wins by a clear margin
    (``SWITCH_TO_ONE``, ``SWITCH_TO_MOST``). Probes with a very different batch size are not compared. ``adaptive=False`` keeps ``most``.
    """

    def __init__(self, most: int, *, adaptive: bool = True, clock=time.monotonic) -> None:
        self.most = max(1, most)
        self.adaptive = adaptive and self.most > 1
        self.threads = self.most
        self.switches = 0
        self._clock = clock
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=WINDOW_STEPS)
        self._probe: list[tuple[int, float]] | None = None  # (batch, seconds) of the probe under way
        self._more_every = PROBE_MORE_EVERY_S[0]
        self._next_probe = clock() + PROBE_FEWER_EVERY_S
        self._applied: int | None = None

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def _other(self) -> int:
        return 1 if self.threads == self.most else self.most

    def before_step(self) -> None:
        if self.adaptive and self._probe is None and len(self._recent) >= MIN_WINDOW_STEPS:
            stalled = self.threads == self.most and self._recent[-1][1] >= SLOW_STEP_S
            if stalled or self._clock() >= self._next_probe:
                self._probe = []
        self._apply(self._other() if self._probe is not None else self.threads)

    def after_step(self, batch: int, seconds: float) -> None:
        if not self.adaptive or batch < 1:
            return
        if self._probe is None:
            self._recent.append((batch, seconds))
            return
        self._probe.append((batch, seconds))
        if len(self._probe) >= PROBE_STEPS:
            self._judge(self._probe)
            self._probe = None

    def _judge(self, probe: list[tuple[int, float]]) -> None:
        now_batch = statistics.median(b for b, _ in self._recent)
        probe_batch = statistics.median(b for b, _ in probe)
        current = statistics.median(s / b for b, s in self._recent)
        other = statistics.median(s / b for b, s in probe)
        comparable = 0.5 <= probe_batch / now_batch <= 2.0
        logger.debug("cpu threads probe", extra={
            "threads": self.threads, "probed": self._other(), "batch": now_batch, "probe_batch": probe_batch,
            "cost_per_stream_ms": round(current * 1000, 3), "probe_cost_per_stream_ms": round(other * 1000, 3)})
        gain = SWITCH_TO_ONE if self.threads == self.most else SWITCH_TO_MOST
        if comparable and other < gain * current:
            before, self.threads = self.threads, self._other()
            self.switches += 1
            self._recent.clear()
            self._recent.extend(probe)
            self._more_every = PROBE_MORE_EVERY_S[0]
            logger.info("cpu threads changed", extra={
                "threads": self.threads, "was": before, "cost_per_stream_ms": round(other * 1000, 3),
                "was_cost_per_stream_ms": round(current * 1000, 3),
                "why": "contention" if self.threads == 1 else "cores free again"})
        elif self.threads == 1 and comparable:
            self._more_every = min(self._more_every * 2, PROBE_MORE_EVERY_S[1])
        self._next_probe = self._clock() + (PROBE_FEWER_EVERY_S if self.threads == self.most else self._more_every)

    def _apply(self, threads: int) -> None:
        if threads != self._applied:
            import torch

            torch.set_num_threads(threads)
            self._applied = threads
