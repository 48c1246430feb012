"""The inference thread under a real-time load: how often it wakes, its time outside model steps, the process's
CPU and the result latency. N streams of the bundled demo model are fed in real time (20 ms packets, starts spread
over a second, ``parakeet_services.benchmark.Feeder``) from one thread, as a server's connections would feed
them. Prints a markdown table and writes JSON.

    .venv/bin/python bench/realtime_load.py [--streams 16,64] [--seconds 8] [--vad] [--baseline GIT_REF]
        [--repeats 3] [--threads 2] [--out PATH]

``--baseline`` runs the engine of another commit (a temporary git worktree) interleaved with this checkout's,
each run in a fresh process. A wake-up is one pass of the thread's loop (one ``_before_step``); "between steps" is
the thread's time applying commands and computing features and VAD (``_apply_backlog`` and ``_before_step``),
"steps" its time in ``_step_all``; both per second of the run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stream_overhead import ROOT, Timed, baseline_checkout, short_commit

KEYS = ("wakeups_per_s", "between_steps_s_per_s", "steps_s_per_s", "cpu_cores", "p50_ms", "p95_ms")


def run_level(n: int, seconds: float, vad: bool) -> dict:
    """One run in this process: ``n`` real-time streams, then the engine's own counts."""
    import numpy as np

    import parakeet_stream as ps
    from parakeet_services.benchmark import Feeder, speech_workload

    workload = speech_workload(seconds, seed=0)
    engine = ps.Engine.load("espeak-demo-en", device="cpu", max_streams=n)
    try:
        sched = engine._scheduler
        clock = {"between": 0.0, "steps": 0.0}
        calls = {"wakeups": 0}
        before_step = sched._before_step

        def counted() -> None:
            calls["wakeups"] += 1
            before_step()
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
    return {"streams": n, "wall_s": round(wall, 2), "wakeups_per_s": round(calls["wakeups"] / wall, 1),
            "between_steps_s_per_s": round(clock["between"] / wall, 3), "steps_s_per_s": round(clock["steps"] / wall, 3),
            "cpu_cores": round(cpu / wall, 2), "p50_ms": m.result_latency_percentile(50),
            "p95_ms": m.result_latency_percentile(95), "steps": m.steps,
            "feeder_lag_p99_ms": round(float(np.percentile(feeder.lags, 99)) * 1000, 1)}


def measure(code: Path, n: int, seconds: float, vad: bool, threads: int) -> dict:
    """One run in a child process using the engine of the checkout at ``code``."""
    paths = [str(code / "plugin"), str(code / "agent"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--seconds", str(seconds),
           "--threads", str(threads)] + (["--vad"] if vad else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{code} at {n} streams failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="16,64")
    p.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vad", action="store_true", help="streams with Silero VAD")
    p.add_argument("--baseline", default=None, help="a git ref whose engine runs interleaved with this one")
    p.add_argument("--repeats", type=int, default=3, help="runs of each level and side (medians reported)")
    p.add_argument("--out", default="bench/results/realtime-load-cpu.json")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(run_level(args.child, args.seconds, args.vad)))
        return 0

    sides = {"this": ROOT}
    if args.baseline:
        sides = {"baseline": baseline_checkout(args.baseline), **sides}
    levels = [int(x) for x in args.streams.split(",")]
    runs: dict[str, dict[int, list[dict]]] = {side: {n: [] for n in levels} for side in sides}
    commits = {side: short_commit(code) for side, code in sides.items()}
    try:
        for rep in range(args.repeats):
            for n in levels:
                for side, code in sides.items():  # interleaved: the machine's drift hits both sides alike
                    print(f"[{rep + 1}/{args.repeats}] {side} ({commits[side]}): {n} streams, {args.seconds:g} s "
                          "in real time ...", file=sys.stderr, flush=True)
                    runs[side][n].append(measure(code, n, args.seconds, args.vad, args.threads))
    finally:
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(sides["baseline"])], cwd=ROOT,
                           capture_output=True)

    rows = []
    print("| streams | side | wake-ups / s | between steps s / s | steps s / s | CPU cores | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in levels:
        for side in sides:
            row = {"streams": n, "side": side, "commit": commits[side],
                   **{k: statistics.median(r[k] for r in runs[side][n]) for k in KEYS}}
            rows.append(row)
            print(f"| {n} | {side} ({commits[side]}) | " + " | ".join(f"{row[k]:g}" for k in KEYS) + " |")
    from parakeet_services.benchmark import machine_info

    out = {"bench": "realtime_load", "commits": commits, "vad": args.vad, "threads": args.threads,
           "seconds": args.seconds, "repeats": args.repeats, "medians": rows,
           "runs": {side: {str(n): v for n, v in by_n.items()} for side, by_n in runs.items()},
           "machine": machine_info("cpu")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
