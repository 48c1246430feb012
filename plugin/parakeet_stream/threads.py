"""How the engine uses CPU threads: how long OpenMP's pool spins, and how many threads each step uses.

Measured on a 2-core VM with the demo model (``bench/realtime_load.py``, ``bench/neighbour.py``):

- Spinning pool threads make big steps fast: waking sleeping threads (``OMP_WAIT_POLICY=PASSIVE``) for each of a
  step's parallel regions made it ~40 % longer (64 streams alone: p95 259-293 ms against 103-117 ms spinning).
  But spinning for libgomp's default ~3 ms after every region costs an idle real-time stream most of a core, and
  beside another torch process whose threads spin too, both stall at every barrier. ``GOMP_SPINCOUNT=20000``
  (~0.2 ms) keeps the speed of spinning within a step and lets the threads sleep between steps. libgomp reads it
  once, when torch loads, so ``prefer_cpu_runtime_env`` sets it at ``import parakeet_stream`` unless torch is
  already loaded or you chose ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` yourself (yours wins).
- One thread beats all cores in two cases: while another process competes for the cores (a step split over two
  threads waits at every barrier for the one the kernel has not scheduled: 64 streams went from p95 121 ms to
  515 ms, on one thread 123 ms), and while the load is light (one stream's step on one thread is a few ms of a
  160 ms chunk, and a second thread only adds its spinning). ``ThreadGovernor`` measures and moves between the
  two as the engine runs. It is on by default where a step's bits do not depend on its thread count (fp32 on the
  CPU with 1×1 convolutions as MKL products, ``pointwise.py``, checked at load): then moving costs nothing in
  exactness. Where they do (bf16 kernels on some CPUs), the count stays fixed unless ``num_threads="auto"``
  asks for the governor anyway, accepting that a stream's text may drift from offline decoding in near-ties. A
  count you give is always kept.
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
# switch when the probe's cost per stream is below this share of the current one: to one thread on clear
# contention (alone, one thread's steps cost 0.7-1.3x those of two, from noise and batch size; beside a spinning
# neighbour, two threads' cost several times one's), back to all cores as soon as they are cheaper
SWITCH_TO_ONE = 0.5
SWITCH_TO_MOST = 0.8
# light load: one thread is taken, however much faster all cores are, while it would keep the inference thread
# stepping at most this share of the time (one real-time stream of the demo model: ~5 %); all cores are tried
# again once one thread steps more than the second share
LIGHT_BUSY = (0.25, 0.4)
BUSY_WINDOW_S = 1.0  # the recent time over which that share is measured
GROWN_PROBE_AFTER_S = 0.5  # on one thread grown busy: the least time between tries of all cores (streams arriving
#                            while one thread serves a light load must not wait seconds for the second core)
MIN_WINDOW_STEPS = 3  # a probe needs at least this many recent steps to compare with
SLOW_STEP_S = 0.25  # a step this long with all threads (a stall beside spinning neighbours) brings a probe forward,
#                     and ends a probe of all threads at its first step
PROBE_FEWER_EVERY_S = 2.0  # with all threads: how often one thread is tried (cheap: a little slower alone)
PROBE_MORE_EVERY_S = (5.0, 60.0)  # on one thread: first and longest interval between tries of all threads (a
#                                   try under contention costs slow steps; it backs off by doubling)


# Read once by the native libraries when torch loads; a value already in the environment is kept.
CPU_RUNTIME_ENV = {
    # OpenMP pool threads spin ~0.2 ms after a parallel region (libgomp's default: ~3 ms), then sleep: as fast as
    # spinning within a step, asleep between steps and while a neighbour holds the core
    "GOMP_SPINCOUNT": "20000",
    # MKL picks its sgemm kernels by shape and alignment: on AVX-512 CPUs a stream's rows computed in a batch of
    # eight came out different from the same rows computed alone, so batched streaming drifted from offline
    # decoding (tests/engine/test_batching.py failed 4 of 13 there). STRICT makes results independent of them,
    # and of the thread count (pointwise.py); the branch is named where MKL is limited to AVX2 (``mkl_branch``).
    "MKL_CBWR": "AUTO,STRICT",
}
# a wait policy chosen by the user replaces the spin count (libgomp lets GOMP_SPINCOUNT override it)
CHOSEN_INSTEAD = {"GOMP_SPINCOUNT": ("OMP_WAIT_POLICY",)}


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
    chosen = [name for name in CPU_RUNTIME_ENV
              if name not in os.environ and not any(other in os.environ for other in CHOSEN_INSTEAD.get(name, ()))]
    for name in chosen:
        os.environ[name] = CPU_RUNTIME_ENV[name] if name != "MKL_CBWR" else f"{mkl_branch()},STRICT"
    return chosen


def mkl_branch(cpu_flags: str | None = None) -> str:
    """MKL's code branch for ``MKL_CBWR``: ``AUTO`` on AVX-512 CPUs; ``AVX2`` where the CPU (or
    ``MKL_ENABLE_INSTRUCTIONS``) stops at AVX2, because there ``AUTO,STRICT`` gave sgemm results that changed
    with the thread count and ``AVX2,STRICT`` did not (MKL ignores a branch the CPU cannot run, taking AUTO)."""
    limit = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").upper()
    if limit == "AVX2":
        return "AVX2"
    if cpu_flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpu_flags = next((line for line in f if line.startswith("flags")), "")
        except OSError:
            return "AUTO"
    flags = set(cpu_flags.split())
    return "AVX2" if "avx2" in flags and "avx512f" not in flags else "AUTO"


class ThreadGovernor:
    """Chooses the torch thread count of the inference thread's steps: ``most`` threads, or one while one is
    measured to be cheaper per stream (another process competing for the cores) or enough (light load).

    Runs on the inference thread only: ``before_step`` sets the count for the coming step, ``after_step`` records
    what it cost. Every so often a few steps run with the other count (a probe); their median cost per stream is
    compared with the median of the steps just before, and the count is changed where the probe wins by a clear
    margin (``SWITCH_TO_ONE``, ``SWITCH_TO_MOST``), or to one thread where it would keep the thread stepping no
    more than ``LIGHT_BUSY`` of the time. Probes with a very different batch size are not compared.
    ``adaptive=False`` keeps ``most``.
    """

    def __init__(self, most: int, *, adaptive: bool = True, clock=time.monotonic) -> None:
        self.most = max(1, most)
        self.adaptive = adaptive and self.most > 1
        self.threads = self.most
        self.switches = 0
        self._clock = clock
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=WINDOW_STEPS)
        self._busy: collections.deque[tuple[float, float]] = collections.deque()  # (end, seconds) of recent steps
        self._probe: list[tuple[int, float]] | None = None  # (batch, seconds) of the probe under way
        self._more_every = PROBE_MORE_EVERY_S[0]
        self._last_probe = clock()
        self._next_probe = clock() + PROBE_FEWER_EVERY_S
        self._applied: int | None = None

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def _other(self) -> int:
        return 1 if self.threads == self.most else self.most

    def busy_share(self) -> float:
        """The share of the last ``BUSY_WINDOW_S`` the inference thread spent in steps."""
        now = self._clock()
        while self._busy and self._busy[0][0] < now - BUSY_WINDOW_S:
            self._busy.popleft()
        return sum(s for _, s in self._busy) / BUSY_WINDOW_S

    def before_step(self) -> None:
        if self.adaptive and self._probe is None and len(self._recent) >= MIN_WINDOW_STEPS:
            now = self._clock()
            if self.threads == self.most:
                due = self._recent[-1][1] >= SLOW_STEP_S  # stalled: compared with the stalled steps only
                if due:
                    stalled = [step for step in self._recent if step[1] >= SLOW_STEP_S]
                    self._recent.clear()
                    self._recent.extend(stalled)
            else:  # on one thread and the load grew: all cores may be needed now
                due = self.busy_share() > LIGHT_BUSY[1] and now >= self._last_probe + GROWN_PROBE_AFTER_S
            if due or now >= self._next_probe:
                self._probe = []
        self._apply(self._other() if self._probe is not None else self.threads)

    def after_step(self, batch: int, seconds: float) -> None:
        if not self.adaptive or batch < 1:
            return
        self._busy.append((self._clock(), seconds))
        if self._probe is None:
            self._recent.append((batch, seconds))
            return
        self._probe.append((batch, seconds))
        stalled = self.threads == 1 and seconds >= SLOW_STEP_S and \
            seconds > 2 * statistics.median(s for _, s in self._recent)  # all cores stall: no more of them
        if stalled or len(self._probe) >= PROBE_STEPS:
            self._judge(self._probe)
            self._probe = None

    def _judge(self, probe: list[tuple[int, float]]) -> None:
        now_batch = statistics.median(b for b, _ in self._recent)
        probe_batch = statistics.median(b for b, _ in probe)
        current = statistics.median(s / b for b, s in self._recent)
        other = statistics.median(s / b for b, s in probe)
        comparable = 0.5 <= probe_batch / now_batch <= 2.0
        busy = self.busy_share()
        logger.debug("cpu threads probe", extra={
            "threads": self.threads, "probed": self._other(), "batch": now_batch, "probe_batch": probe_batch,
            "cost_per_stream_ms": round(current * 1000, 3), "probe_cost_per_stream_ms": round(other * 1000, 3),
            "busy_share": round(busy, 3)})
        why = None
        if comparable and self.threads == self.most:
            if other < SWITCH_TO_ONE * current:
                why = "contention"
            elif busy * other / current <= LIGHT_BUSY[0]:  # what one thread would be busy, at its cost
                why = "light load"
        elif comparable and other < SWITCH_TO_MOST * current and busy > LIGHT_BUSY[1] * 0.5:
            why = "cores free again"  # (not while so light that one thread is as good: it would come back)
        if why is not None:
            before, self.threads = self.threads, self._other()
            self.switches += 1
            self._recent.clear()
            self._recent.extend(probe)
            self._more_every = PROBE_MORE_EVERY_S[0]
            logger.info("cpu threads changed", extra={
                "threads": self.threads, "was": before, "cost_per_stream_ms": round(other * 1000, 3),
                "was_cost_per_stream_ms": round(current * 1000, 3), "busy_share": round(busy, 3), "why": why})
        elif self.threads == 1 and comparable:
            self._more_every = min(self._more_every * 2, PROBE_MORE_EVERY_S[1])
        self._last_probe = self._clock()
        self._next_probe = self._last_probe + (PROBE_FEWER_EVERY_S if self.threads == self.most else self._more_every)

    def _apply(self, threads: int) -> None:
        if threads != self._applied:
            import torch

            torch.set_num_threads(threads)
            self._applied = threads
