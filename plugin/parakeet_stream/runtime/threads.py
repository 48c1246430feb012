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
import collections.abc
import logging
import os
import statistics
import sys
import time

logger = logging.getLogger("parakeet_stream")

PROBE_STEPS = 4  # steps run with the other thread count in one probe
WINDOW_STEPS = 8  # recent steps with the current count a probe is compared with
MIN_WINDOW_STEPS = 3  # a decision needs at least this many recent steps
# contention: the steps' threads got less than this share of their cores (process CPU time / wall time / threads;
# alone, two spinning threads measured 0.9, beside a torch process spinning on both cores 0.5)
CONTENDED_SHARE = 0.7
# all cores again (after contention) when a probe's cost per stream is below this share of one thread's: at a
# large batch much of a step is per-stream Python that a second thread does not speed up, so all cores may be
# only 10-20 % cheaper per stream and still be what keeps a heavy load real-time
SWITCH_TO_MOST = 0.95
# light load: one thread is taken while it would keep the inference thread stepping at most the first share of
# the time (one real-time stream of the demo model: ~5 %; a second thread would only add its spinning); all
# cores are tried again once one thread steps more than the second share
LIGHT_BUSY = (0.25, 0.4)
BUSY_WINDOW_S = 1.0  # the recent time over which that share is measured
LIGHT_PROBE_EVERY_S = 2.0  # with all threads at a light load: how often one thread is tried
PROBE_MORE_EVERY_S = (5.0, 60.0)  # on one thread: first and longest interval between tries of all cores (a try
#                                   under contention costs a slow step; it backs off by doubling)
FREE_FOR_PROBE = 0.75  # on one thread, all cores are tried only while other processes leave this share of them
#                       free (/proc/stat): a try beside a busy neighbour stalls, with spinning threads for seconds
GROWN_AFTER_S = 0.5  # on one thread taken for a light load: the least time before a grown load takes all cores
#                      (streams arriving while one thread serves a light load must not wait for the second core)


# Read once by the native libraries (``prefer_cpu_runtime_env`` says when); a value already set is kept.
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
# read by libgomp when torch loads; MKL reads MKL_CBWR later, at its first call (so after an ``import torch`` too)
READ_WHEN_TORCH_LOADS = ("GOMP_SPINCOUNT",)


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


THREADS_HELP = ("CPU threads of each step, on one lane: a count (fixed), or 'auto' (one thread or all cores as "
                "the load and other processes require, even where rounding then follows the count). Default: "
                "one lane per core on the CPU, one thread each (--lanes)")


LANES_HELP = ("inference threads over one copy of the weights, each stepping its share of the streams on one CPU "
              "thread. Default: one per core on the CPU unless --threads is given, else 1 (docs/engine-api.md, "
              "Lanes)")


def lanes_argument(text: str) -> int:
    """argparse type of ``--lanes``: a count of at least 1."""
    import argparse

    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a count of at least 1, got {text!r}")
    return count


def prefer_cpu_runtime_env() -> list[str]:
    """Set ``CPU_RUNTIME_ENV`` for this process where nobody chose a value; returns the names set. libgomp reads
    ``GOMP_SPINCOUNT`` when torch loads (once torch is loaded it is too late, and left alone); MKL reads
    ``MKL_CBWR`` at its first call, so it is set after an ``import torch`` too: an application that imports torch
    first would otherwise step a stream alone with other kernels than in a batch (too late only once torch has
    computed on the CPU)."""
    loaded = "torch" in sys.modules
    chosen = [name for name in CPU_RUNTIME_ENV
              if name not in os.environ and not any(other in os.environ for other in CHOSEN_INSTEAD.get(name, ()))
              and not (loaded and name in READ_WHEN_TORCH_LOADS)]
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


class OtherProcessesLoad:
    """The cores other processes kept busy lately: the machine's busy time (``/proc/stat``) less this process's,
    per second, over at least ``every_s``; NaN until first measured, None where ``/proc/stat`` cannot be read."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self._last: tuple[float, float, float] | None = None  # (wall, machine busy s, process s)
        self._value: float | None = float("nan")  # not known yet: nothing is free until measured
        self._read()

    def _read(self) -> None:
        busy = self._machine_busy_s()
        if busy is None:
            self._value = None
            return
        now, mine = time.monotonic(), time.process_time()
        if self._last is not None:
            self._value = max(0.0, (busy - self._last[1]) - (mine - self._last[2])) / (now - self._last[0])
        self._last = (now, busy, mine)

    @staticmethod
    def _machine_busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float | None:
        if self._last is not None and time.monotonic() - self._last[0] >= self.every_s:
            self._read()
        return self._value


class ThreadGovernor:
    """Chooses the torch thread count of the inference thread's steps: ``most`` threads, or one while another
    process competes for the cores (contention) or while one thread carries the load lightly.

    Runs on the inference thread only: ``before_step`` sets the count for the coming step, ``after_step`` records
    what it cost: wall time and the process's CPU time. Contention shows without trying anything: the steps'
    threads get clearly less than their cores (``CONTENDED_SHARE``). At a light load a few steps on one thread (a
    probe) tell what one thread would cost; when that load grows, all cores come back at once. After contention,
    probes of all cores (backing off while it lasts) bring them back when they are cheaper (``SWITCH_TO_MOST``)
    and needed.
    Nothing is probed at a steady heavy load alone: a probe there would cost its streams latency for nothing.
    ``adaptive=False`` keeps ``most``.
    """

    def __init__(self, most: int, *, adaptive: bool = True, clock=time.monotonic,
                 cpu_clock=time.process_time, others=None) -> None:
        self.most = max(1, most)
        self.adaptive = adaptive and self.most > 1
        # an engine starts with no streams: on one thread (all cores come when the load needs them)
        self.threads = 1 if self.adaptive else self.most
        self.reason = "light load"  # why the count is what it is
        self._cores = os.cpu_count() or self.most
        self._others = others if others is not None else (OtherProcessesLoad() if self.adaptive else None)
        self.switches = 0
        self._clock, self._cpu_clock = clock, cpu_clock
        self._cpu_at_start = 0.0
        # (batch, seconds, share of the cores its threads got) of recent steps with the current count
        self._recent: collections.deque[tuple[int, float, float]] = collections.deque(maxlen=WINDOW_STEPS)
        self._busy: collections.deque[tuple[float, float]] = collections.deque()  # (end, seconds) of recent steps
        self._probe: list[tuple[int, float, float]] | None = None  # the probe under way
        self._more_every = PROBE_MORE_EVERY_S[0]
        self._last_probe = clock()
        self._applied: int | None = None

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def _other(self) -> int:
        return 1 if self.threads == self.most else self.most

    def _cores_free(self) -> bool:
        others = self._others()
        return others is None or self._cores - others >= FREE_FOR_PROBE * self.most

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
                if statistics.median(c for _, _, c in list(self._recent)[-MIN_WINDOW_STEPS:]) < CONTENDED_SHARE:
                    self._switch("contention", self._recent, self._recent)
                elif self.busy_share() <= LIGHT_BUSY[0] / 2 and now >= self._last_probe + LIGHT_PROBE_EVERY_S:
                    self._probe = []
            elif self.reason != "contention":
                # taken for a light load that is light no more: all cores at once, no probe (at a large batch a
                # probe may find them only a little cheaper per stream while one thread falls behind)
                if (self.busy_share() > LIGHT_BUSY[1] and now >= self._last_probe + GROWN_AFTER_S
                        and self._cores_free()):
                    self._switch("load grew", self._recent, ())
            elif now >= self._last_probe + self._more_every and self._cores_free():
                self._probe = []
        self._apply(self._other() if self._probe is not None else self.threads)
        self._cpu_at_start = self._cpu_clock()

    def after_step(self, batch: int, seconds: float, cpu_seconds: float | None = None) -> None:
        """A step of ``batch`` streams took ``seconds`` (and ``cpu_seconds`` of the process's CPU time: measured
        from ``before_step`` unless given)."""
        if not self.adaptive or batch < 1:
            return
        cpu = self._cpu_clock() - self._cpu_at_start if cpu_seconds is None else cpu_seconds
        step = (batch, seconds, cpu / max(seconds, 1e-6) / (self._applied or self.threads))
        self._busy.append((self._clock(), seconds))
        if self._probe is None:
            self._recent.append(step)
            return
        self._probe.append(step)
        if (self.threads == 1 and step[2] < CONTENDED_SHARE) or len(self._probe) >= PROBE_STEPS:
            self._judge(self._probe)  # (all cores still contended: one step of them was enough)
            self._probe = None

    def _judge(self, probe: list[tuple[int, float, float]]) -> None:
        self._last_probe = self._clock()
        now_batch = statistics.median(b for b, _, _ in self._recent)
        comparable = 0.5 <= statistics.median(b for b, _, _ in probe) / now_batch <= 2.0
        current = statistics.median(s / b for b, s, _ in self._recent)
        other = statistics.median(s / b for b, s, _ in probe)
        busy = self.busy_share()
        logger.debug("cpu threads probe", extra={
            "threads": self.threads, "probed": self._other(), "batch": now_batch,
            "cost_per_stream_ms": round(current * 1000, 3), "probe_cost_per_stream_ms": round(other * 1000, 3),
            "busy_share": round(busy, 3)})
        if not comparable:
            return
        if self.threads == self.most:
            if busy * other / current <= LIGHT_BUSY[0]:  # what one thread would be busy, at its cost
                self._switch("light load", self._recent, probe)
        elif (other < SWITCH_TO_MOST * current and busy > LIGHT_BUSY[1] / 2
              and statistics.median(c for _, _, c in probe) >= CONTENDED_SHARE):
            self._switch("cores free again", self._recent, probe)
        else:
            self._more_every = min(self._more_every * 2, PROBE_MORE_EVERY_S[1])

    def _switch(self, why: str, was: collections.abc.Iterable, now: collections.abc.Sequence) -> None:
        """Move to the other count; ``was`` and ``now``: steps with the count left and with the new one (a probe's,
        or none)."""
        was_cost = statistics.median(s / b for b, s, _ in was)
        cost = statistics.median(s / b for b, s, _ in now) if now else None
        before, self.threads, self.reason = self.threads, self._other(), why
        self.switches += 1
        self._recent.clear()
        if now is not was:
            self._recent.extend(now)
        self._more_every = PROBE_MORE_EVERY_S[0]
        self._last_probe = self._clock()
        logger.info("cpu threads changed", extra={
            "threads": self.threads, "was": before,
            "cost_per_stream_ms": None if cost is None else round(cost * 1000, 3),
            "was_cost_per_stream_ms": round(was_cost * 1000, 3), "busy_share": round(self.busy_share(), 3),
            "why": why})

    def _apply(self, threads: int) -> None:
        if threads != self._applied:
            import torch

            torch.set_num_threads(threads)
            self._applied = threads
