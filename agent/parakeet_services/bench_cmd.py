"""``parakeet-stream bench``: concurrent real-time streams against the engine and its baselines.

Arguments only here; the measurement lives in the ``benchmark`` package and imports torch/NeMo when it runs.
"""
from __future__ import annotations

import argparse


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    from .benchmark.config import BASELINES

    names = tuple(x.strip().replace("-", "_") for x in text.split(",") if x.strip() and x.strip() != "none")
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}, none")
    return names


def add_parser(subparsers) -> None:
    from .benchmark.config import BASELINES, BenchConfig

    d = BenchConfig()
    p = subparsers.add_parser(
        "bench", help="measure sustainable live streams and latency against baselines",
        description="N concurrent streams at real-time pace (20 ms packets, staggered starts); ramps N until p95 "
                    "per-result latency exceeds the chunk or a backlog grows. Prints a markdown table, writes JSON.")
    p.add_argument("--model", default=d.model,
                   help="tiny|large|xl (random weights at real sizes), espeak-demo-en, a hub name or a .nemo path")
    p.add_argument("--chunk-ms", type=int, default=d.chunk_ms)
    p.add_argument("--dtype", default=d.dtype, choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N | auto")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: leave torch's default)")
    p.add_argument("--seconds", type=float, default=d.seconds, help="audio per stream (espeak-ng speech)")
    p.add_argument("--files", nargs="*", default=(), help="audio files to play instead of espeak-ng speech")
    p.add_argument("--streams", type=_ints, default=None, help="fixed stream counts, e.g. 8 or 4,8 (default: ramp)")
    p.add_argument("--baseline-streams", type=_ints, default=None,
                   help="fixed stream counts of the baselines (default: the engine's levels, or its ramp)")
    p.add_argument("--max-streams", type=int, default=d.max_level, help="highest N the ramp may try")
    p.add_argument("--spread", type=float, default=d.spread_s, help="seconds over which stream starts are spread")
    p.add_argument("--batch-window-ms", type=float, default=d.batch_window_ms,
                   help="the chunk clock's tick: least time between the starts of two steps (default: the engine's)")
    p.add_argument("--max-batch", type=int, default=d.max_batch,
                   help="the engine's streams per model call (default: every ready stream in one; a smaller cap "
                        "cuts a step into batches whose model calls overlap the previous batch's per-stream work)")
    p.add_argument("--max-batch-variants", type=_ints, default=d.max_batch_variants,
                   help="also run the engine with each of these caps, e.g. 256,512 (at its levels above the cap)")
    p.add_argument("--processes", type=_ints, default=d.processes,
                   help="also run the engine in each of these numbers of processes on the device, e.g. 2,4, the "
                        "streams split between them (at its levels from its limit up, or at its limit and twice that)")
    p.add_argument("--baselines", type=_names, default=d.baselines,
                   help=f"comma list of {','.join(BASELINES)} or none")
    p.add_argument("--no-vad", action="store_true", help="no VAD endpointing (no final-latency numbers)")
    p.add_argument("--budget", type=float, default=d.time_budget_s, help="seconds after which ramps stop")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/<model>-<dtype>-<chunk>-<device>-<time>.json)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from . import logs
    from .benchmark.config import BenchConfig
    from .benchmark.run import main

    logs.configure("INFO", quiet_root=True)  # the engine's lines: graph captures, where Silero runs

    cfg = BenchConfig(model=args.model, chunk_ms=args.chunk_ms, dtype=args.dtype, device=args.device,
                      threads=args.threads or None, seconds=args.seconds, files=tuple(args.files),
                      levels=args.streams, baseline_levels=args.baseline_streams, max_level=args.max_streams,
                      spread_s=args.spread, batch_window_ms=args.batch_window_ms, max_batch=args.max_batch,
                      max_batch_variants=args.max_batch_variants, processes=tuple(k for k in args.processes if k > 1),
                      baselines=args.baselines, vad=not args.no_vad, time_budget_s=args.budget, seed=args.seed,
                      out=args.out)
    return main(cfg)


if __name__ == "__main__":  # `python -m parakeet_services.bench_cmd ...` (bench/gpu.sh: no console script there)
    import sys

    parser = argparse.ArgumentParser(prog="parakeet-stream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["bench", *sys.argv[1:]])
    sys.exit(ns.run(ns))
