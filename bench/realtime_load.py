"""The inference thread under a real-time load: how often it wakes, its time outside model steps, the process's
CPU and the result latency. N streams of the bundled demo model are fed in real time (20 ms packets, starts spread
over a second, ``parakeet_services.benchmark.feeder.Feeder``) from one thread, as a server's connections would feed
them. Prints a markdown table and writes JSON.

    .venv/bin/python bench/realtime_load.py [--streams 16,64] [--seconds 8] [--vad] [--baseline GIT_REF]
        [--repeats 3] [--threads N] [--lanes N] [--neighbour] [--out PATH]

``--baseline`` runs the engine of another commit (a temporary git worktree) interleaved with this checkout's,
each run in a fresh process. A wake-up is one pass of the thread's loop (``EngineMetrics.wakeups``; one
``_before_step`` on engines without it); "between steps" is
the thread's time applying commands and computing features and VAD (``_apply_backlog`` and ``_before_step``),
"steps" its time in ``_step_all``; both per second of the run (with ``--lanes``: the first lane's thread; the
wake-ups, CPU and latencies are the whole engine's).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from interleaved import ROOT, child_result, load_engine, run_interleaved, write_result
from stream_overhead import Timed

KEYS = ("wakeups_per_s", "between_steps_s_per_s", "steps_s_per_s", "cpu_cores", "p50_ms", "p95_ms")


def run_level(n: int, seconds: float, vad: bool, lanes: int | None = None) -> dict:
    """One run in this process: ``n`` real-time streams, then the engine's own counts."""
    import numpy as np

    import parakeet_stream as ps
    from parakeet_services.benchmark.feeder import Feeder
    from parakeet_services.benchmark.workload import speech_workload

    workload = speech_workload(seconds, seed=0)
    more = {"lanes": lanes} if lanes else {}  # None: the engine's own choice
    engine = load_engine(model="espeak-demo-en", device="cpu", max_streams=n, **more)
    try:
        sched = engine._scheduler
        clock = {"between": 0.0, "steps": 0.0}
        calls = {"wakeups": 0}
        before_step = sched._before_step

        def counted(*args) -> None:
            calls["wakeups"] += 1
            before_step(*args)
        sched._before_step = counted
        sched._before_step = Timed(sched._before_step, clock, "between")
        sched._apply_backlog = Timed(sched._apply_backlog, clock, "between")
        sched._step_all = Timed(sched._step_all, clock, "steps")
        opts = ps.EndpointingOptions(vad=vad, eou=False, trailing_blank_ms=None)
        streams = [engine.open_stream(endpointing=opts) for _ in range(n)]
        feeder = Feeder([workload.audio[i % len(workload.audio)] for i in range(n)], 1.0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        feeder.run(lambda i, pcm: streams[i].push(pcm), lambda i: streams[i].finish())
        for s in streams:
            while s.next_event(timeout=30) is not None:
                pass
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        m = engine.metrics()
    finally:
        engine.close()
    wakeups = getattr(m, "wakeups", calls["wakeups"])  # engines before EngineMetrics.wakeups: one pass each
    return {"streams": n, "wall_s": round(wall, 2), "wakeups_per_s": round(wakeups / wall, 1),
            "between_steps_s_per_s": round(clock["between"] / wall, 3), "steps_s_per_s": round(clock["steps"] / wall, 3),
            "cpu_cores": round(cpu / wall, 2), "p50_ms": m.result_latency_percentile(50),
            "p95_ms": m.result_latency_percentile(95), "steps": m.steps,
            "feeder_lag_p99_ms": round(float(np.percentile(feeder.lags, 99)) * 1000, 1),
            "cpu_threads_at_end": getattr(m, "cpu_threads", None), "thread_switches": getattr(m, "thread_switches", None)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="16,64")
    p.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = the engine's own policy)")
    p.add_argument("--lanes", type=int, default=None,
                   help="EngineConfig.lanes of this checkout's engine (default: its own choice; a baseline keeps "
                        "its own)")
    p.add_argument("--vad", action="store_true", help="streams with Silero VAD")
    p.add_argument("--neighbour", action="store_true", help="run bench/neighbour.py beside every run")
    p.add_argument("--baseline", default=None, help="a git ref whose engine runs interleaved with this one")
    p.add_argument("--repeats", type=int, default=3, help="runs of each level and side (medians reported)")
    p.add_argument("--out", default="bench/results/realtime-load-cpu.json")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        import parakeet_stream  # noqa: F401  (first: it chooses OpenMP's wait policy before torch loads)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_level(args.child, args.seconds, args.vad, args.lanes)))
        return 0

    levels = [int(x) for x in args.streams.split(",")]
    neighbour = None
    if args.neighbour:  # another process doing torch work with torch's defaults, for the whole run
        neighbour = subprocess.Popen([sys.executable, str(Path(__file__).with_name("neighbour.py"))],
                                     stdout=subprocess.DEVNULL)
    try:
        return _compare(args, levels)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()


def _compare(args: argparse.Namespace, levels: list[int]) -> int:
    child = ["--seconds", str(args.seconds), "--threads", str(args.threads)] + (["--vad"] if args.vad else [])
    script = str(Path(__file__).resolve())

    def lanes_of(code: Path) -> list[str]:  # this checkout's engine only: a baseline runs with its own default
        return ["--lanes", str(args.lanes)] if args.lanes and code == ROOT else []
    commits, runs = run_interleaved(
        args.baseline, levels, args.repeats,
        lambda code, n: child_result(code, script, ["--child", str(n), *child, *lanes_of(code)]),
        lambda n: f"{n} streams, {args.seconds:g} s in real time")

    rows = []
    print("| streams | side | wake-ups / s | between steps s / s | steps s / s | CPU cores | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in levels:
        for side in commits:
            row = {"streams": n, "side": side, "commit": commits[side],
                   **{k: statistics.median(r[k] for r in runs[side][n]) for k in KEYS}}
            rows.append(row)
            print(f"| {n} | {side} ({commits[side]}) | " + " | ".join(f"{row[k]:g}" for k in KEYS) + " |")
    write_result(args.out, "realtime_load", commits, runs, rows, "cpu", vad=args.vad, threads=args.threads,
                 seconds=args.seconds, repeats=args.repeats, neighbour=args.neighbour, lanes=args.lanes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
