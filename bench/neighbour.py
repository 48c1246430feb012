"""A neighbour process doing torch work, as real deployments put next to the engine (LiveKit's Silero and
turn-detector job processes, another model server): small CPU ops in a tight loop, with torch's default thread
count and OpenMP wait policy unless told otherwise. Runs until killed or for ``--seconds``.

    .venv/bin/python bench/neighbour.py [--threads N] [--seconds S] [--size 256]

``--threads 0`` (default) keeps torch's default (one per core); ``--duty`` < 1 sleeps between bursts.
"""
from __future__ import annotations

import argparse
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0 = until killed)")
    p.add_argument("--size", type=int, default=256, help="square matrix side of each op")
    p.add_argument("--duty", type=float, default=1.0, help="share of each 100 ms spent working (1 = always)")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    a = torch.randn(args.size, args.size)
    b = torch.randn(args.size, args.size)
    end = time.monotonic() + args.seconds if args.seconds else float("inf")
    print(f"neighbour: torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    while time.monotonic() < end:
        burst_end = time.monotonic() + 0.1 * args.duty
        while time.monotonic() < burst_end:
            c = torch.relu(a @ b)  # many short parallel regions, as small models' inference makes
            a = c * 1e-3 + a * 0.5
        if args.duty < 1:
            time.sleep(0.1 * (1 - args.duty))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
