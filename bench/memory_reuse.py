"""What a CPU engine's memory does when it keeps freed memory for reuse (``EngineConfig.keep_freed_memory``, the
default) against glibc's defaults: the process's resident memory through changing load, and the model's time.

With freed memory kept, the heap stays at its peak once a large step has run. The question is whether it stays
there or creeps up as loads come and go (fragmentation), and what the model saves by not mapping and
page-faulting its step tensors anew. One engine per side (demo model, one lane, a fresh process each, sides
interleaved) serves cycles of load: N streams for ``--rounds`` rounds of 160 ms each, all closed, then the next
level. After each level: the process's resident memory (``VmRSS``) and the model's seconds for that level.
Prints a markdown table and writes JSON.

    .venv/bin/python bench/memory_reuse.py [--levels 1024,128,1024,512,1024,64,1024] [--rounds 6] [--repeats 2]
        [--threads 2] [--out bench/results/memory-reuse-cpu.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stream_overhead import ROUND_S, Timed, speech_audio

SIDES = {"kept": True, "glibc": False}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS in /proc/self/status")


def serve_level(engine, n: int, rounds: int, audio) -> float:
    """``n`` streams fed ``rounds`` rounds, each round one batch, then closed; the model's seconds."""
    sched = engine._scheduler
    clock = {"model": 0.0}
    enc, step = sched.model.encoder, sched.steady_step
    eager = enc.cache_aware_stream_step

    def timed(on: bool) -> None:  # on the inference thread, between wake-ups
        enc.cache_aware_stream_step = Timed(eager, clock, "model") if on else eager
        sched.steady_step = Timed(step, clock, "model") if on and step is not None else step

    sched.call(lambda: timed(True))
    streams = [engine.open_stream() for _ in range(n)]
    per_round = int(ROUND_S * 16000)
    for r in range(rounds):
        block = audio[(r * per_round) % (audio.shape[0] - per_round):][:per_round]
        target = engine.metrics().streams_stepped + n

        def push_round() -> None:
            for s in streams:
                for k in range(0, per_round, 320):
                    s.push(block[k:k + 320])

        sched.call(push_round)
        while engine.metrics().streams_stepped < target:
            time.sleep(0.005)
        for s in streams:
            while s.next_event(timeout=0) is not None:
                pass
    for s in streams:
        s.close()
    sched.call(lambda: timed(False))
    return round(clock["model"], 3)


def child(keep: bool, levels: list[int], rounds: int, threads: int) -> dict:
    import torch

    import parakeet_stream as ps

    torch.set_num_threads(threads)
    audio = speech_audio(ROUND_S * rounds + 1.0)
    start = rss_mb()
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=max(levels), lanes=1,
                                            num_threads=threads, keep_freed_memory=keep))
    try:
        loaded = rss_mb()
        rows = []
        for n in levels:
            model_s = serve_level(engine, n, rounds, audio)
            time.sleep(0.3)  # the closes applied
            rows.append({"streams": n, "rss_mb": rss_mb(), "model_s": model_s,
                         "model_ms_per_step": round(model_s / rounds * 1e3, 1)})
    finally:
        engine.close()
    return {"rss_start_mb": start, "rss_loaded_mb": loaded, "levels": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="1024,128,1024,512,1024,64,1024")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/memory-reuse-cpu.json")
    p.add_argument("--child", choices=list(SIDES), default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.child:
        print(json.dumps(child(SIDES[args.child], levels, args.rounds, args.threads)))
        return 0
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for rep in range(args.repeats):
        for side in SIDES:  # interleaved: the VM's noise falls on both sides alike
            print(f"[{rep + 1}/{args.repeats}] {side} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", side, "--levels", args.levels,
                                  "--rounds", str(args.rounds), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def med(side: str, i: int, key: str) -> float:
        return round(statistics.median(run["levels"][i][key] for run in runs[side]), 1)

    print("| level | streams | " + " | ".join(f"{s}: RSS MB | {s}: model ms / step" for s in SIDES)
          + " | model glibc / kept |")
    print("|---|---" + "|---|---" * len(SIDES) + "|---|")
    rows = []
    for i, n in enumerate(levels):
        row = {"level": i + 1, "streams": n, **{f"{s}_{k}": med(s, i, k) for s in SIDES
                                                for k in ("rss_mb", "model_ms_per_step")}}
        row["ratio_model"] = round(row["glibc_model_ms_per_step"] / row["kept_model_ms_per_step"], 2)
        rows.append(row)
        print(f"| {i + 1} | {n} | " + " | ".join(f"{row[f'{s}_rss_mb']:.0f} | {row[f'{s}_model_ms_per_step']:.1f}"
                                                 for s in SIDES) + f" | {row['ratio_model']:.2f}x |")
    result = {"bench": "memory_reuse", "levels": levels, "rounds": args.rounds, "repeats": args.repeats,
              "threads": args.threads, "medians": rows, "runs": runs,
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
