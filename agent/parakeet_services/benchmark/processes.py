"""``bench --processes K``: the engine in K processes on one device, N streams split between them.

One Python process feeds its engine from one GIL; on a GPU the host's per-stream work, not the device, may be what
limits one process (``serve --workers N`` is the serving shape this measures). Each process loads its own copy
of the model, builds its engine and waits; all start feeding their share of the N streams at once, each from its
own feeder thread. A level is sustainable when every process's share is; its latencies are the slowest
process's (an upper bound of the whole's percentiles), its counts the sum.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import time
from typing import Any, Callable

from .config import BenchConfig
from .measures import LevelResult
from .workload import Workload

READY_TIMEOUT_S = 900.0  # a process loads NeMo and the model before it is ready (minutes for the 0.6 B on a CPU)


def shares(n: int, k: int) -> list[int]:
    """``n`` streams over ``k`` processes, as even as they go (the first ones take the remainder)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


class ProcessesRun:
    """One level of the engine in ``k`` processes (the system ``engine_processes_<k>``)."""

    def __init__(self, cfg: BenchConfig, offline: list[str], k: int) -> None:
        self.cfg, self.offline, self.k = cfg, offline, k
        self.system = f"engine_processes_{k}"

    def __call__(self, workload: Workload, n: int, log: Callable[[str], None]) -> LevelResult:
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters: one OpenMP pool and GIL each
        start, results = spawn.Event(), spawn.Queue()
        counts = [s for s in shares(n, self.k) if s]
        firsts = [sum(counts[:i]) for i in range(len(counts))]  # process i plays streams firsts[i]... of the N
        procs = [spawn.Process(target=_one_process, name=f"bench-process-{i}",
                               args=(self.cfg, *rotated(workload, self.offline, first), count, start, results, i))
                 for i, (first, count) in enumerate(zip(firsts, counts))]
        for p in procs:
            p.start()
        try:
            ready = self._gather(results, procs, "ready", READY_TIMEOUT_S)
            log(f"    {self.system} N={n}: {len(ready)} processes ready ({'+'.join(map(str, counts))} streams)")
            start.set()
            done = self._gather(results, procs, "result", READY_TIMEOUT_S)
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
        return merge(self.system, n, [LevelResult(**done[i]) for i in sorted(done)])

    @staticmethod
    def _gather(results, procs, kind: str, timeout_s: float) -> dict[int, Any]:
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < len(procs):
            try:
                what, index, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.name for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"benchmark processes {dead or 'timed out'} before {kind}") from None
                continue
            if what == "error":
                raise RuntimeError(f"benchmark process {index} failed: {value}")
            if what == kind:
                got[index] = value
        return got


def rotated(workload: Workload, offline: list[str], first: int) -> tuple[Workload, list[str]]:
    """The workload and offline texts as seen from stream ``first``: its stream 0 plays what stream ``first`` of
    the whole level plays, so the processes together play exactly the N streams of one process."""
    k = first % len(workload.audio)
    return (Workload(workload.audio[k:] + workload.audio[:k], workload.speech_ends[k:] + workload.speech_ends[:k],
                     workload.source), offline[k:] + offline[:k])


def _one_process(cfg: BenchConfig, workload: Workload, offline: list[str], n: int, start, results, index: int) -> None:
    """A process's share: its own model and engine, fed from its own thread once every process is ready."""
    try:
        import torch

        from .models import build_off_main_thread, load_model
        from .systems import EngineRun, warm_up

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        model = build_off_main_thread(lambda: load_model(cfg))
        warm_up(model, cfg, workload)
        results.put(("ready", index, None))
        start.wait()
        result = EngineRun(model, cfg, offline, None)(workload, n, lambda s: None)
        results.put(("result", index, dataclasses.asdict(result)))
    except BaseException as e:  # the parent says which process failed and why
        results.put(("error", index, f"{type(e).__name__}: {e}"))


def merge(system: str, n: int, parts: list[LevelResult]) -> LevelResult:
    """One level from its processes' shares: counts added, latencies the slowest process's, sustainable when
    every share is."""
    def worst(name: str) -> dict[str, float]:
        keys = set().union(*(getattr(p, name).keys() for p in parts))
        return {k: max(getattr(p, name)[k] for p in parts if k in getattr(p, name)) for k in sorted(keys)}

    def total(name: str):
        return sum(getattr(p, name) for p in parts)
    matches = [p.text_matches_offline for p in parts]
    steps = total("steps")
    return LevelResult(
        system=system, streams=n, partials=total("partials"), latency_ms=worst("latency_ms"), results=total("results"),
        partial_latency_ms=worst("partial_latency_ms"), final_latency_ms=worst("final_latency_ms"),
        speech_ends=total("speech_ends"), finals_matched=total("finals_matched"),
        latency_growth_ms=max(p.latency_growth_ms for p in parts),
        compute_rtf=round(sum(p.compute_rtf * p.audio_seconds for p in parts) / max(total("audio_seconds"), 1e-9), 4),
        cpu_utilisation=round(total("cpu_utilisation"), 2), audio_seconds=round(total("audio_seconds"), 1),
        wall_seconds=max(p.wall_seconds for p in parts), steps=steps,
        mean_batch=round(sum(p.mean_batch * p.steps for p in parts) / max(steps, 1), 2),
        max_batch=max(p.max_batch for p in parts), feeder_lag_ms_p99=max(p.feeder_lag_ms_p99 for p in parts),
        text_matches_offline=None if None in matches else sum(matches), failed_streams=total("failed_streams"),
        peak_rss_mb=round(total("peak_rss_mb"), 1),
        peak_gpu_mb=None if any(p.peak_gpu_mb is None for p in parts) else round(total("peak_gpu_mb"), 1),
        sustainable=all(p.sustainable for p in parts),
        note="; ".join([f"{len(parts)} processes: latencies are the slowest process's",
                        *sorted({p.note for p in parts if p.note})]))
