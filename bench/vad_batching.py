"""Silero VAD for N live streams: one detector call per stream and window (how each stream ran it before, and how
per-session servers run it) against one batched call per 20 ms tick for all streams (``endpointing.detect``, what
the engine's inference thread does). Prints a markdown table and writes JSON.

    .venv/bin/python bench/vad_batching.py [--streams 1,8,64,256] [--seconds 4] [--threads 2] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

PACKET = 320  # 20 ms at 16 kHz


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Bursts of noise shaped like syllables with pauses: enough for Silero to switch between speech and not."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    env = np.repeat(rng.random(n // 1600 + 1) > 0.4, 1600)[:n].astype(np.float32)
    t = np.arange(n) / 16000
    voiced = np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (0.3 * env * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)


def cpu_seconds(audios: list[np.ndarray], opts, batched: bool) -> float:
    """Process CPU time to run every stream's VAD over its audio in 20 ms ticks: one ``process`` call per stream
    and tick, or every stream fed and then one ``detect`` over all of them."""
    from parakeet_stream.endpointing import VoiceActivity, detect

    vads = [VoiceActivity(opts) for _ in audios]
    t0 = time.process_time()
    for k in range(0, audios[0].shape[0], PACKET):
        for vad, a in zip(vads, audios):
            (vad.feed if batched else vad.process)(a[k:k + PACKET])
        if batched:
            detect(vads)
    return time.process_time() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="1,8,64,256")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/vad-batching-cpu.json")
    args = p.parse_args()
    import torch

    import parakeet_stream as ps

    torch.set_num_threads(args.threads)
    opts = ps.EndpointingOptions(vad=True)
    warm = [speechlike(1.0, seed=99)] * 2  # TorchScript profiles its first calls: keep them out of both sides
    cpu_seconds(warm, opts, batched=False), cpu_seconds(warm, opts, batched=True)
    rows = []
    for n in (int(x) for x in args.streams.split(",")):
        audios = [speechlike(args.seconds, seed=i) for i in range(n)]
        audio_s = n * args.seconds
        a, b = cpu_seconds(audios, opts, batched=False), cpu_seconds(audios, opts, batched=True)
        rows.append(dict(streams=n, audio_seconds=audio_s, per_stream_cpu_s=round(a, 3), batched_cpu_s=round(b, 3),
                         per_stream_rtf=round(a / audio_s, 5), batched_rtf=round(b / audio_s, 5),
                         speedup=round(a / b, 2)))
        print(f"N={n}: per-stream {a:.2f} s, batched {b:.2f} s CPU for {audio_s:.0f} s of audio", file=sys.stderr)
    print(f"### Silero VAD, CPU seconds per audio second ({platform.processor() or platform.machine()}, "
          f"{args.threads} threads)\n")
    print("| streams | per-stream calls RTF | batched RTF | speedup |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['streams']} | {r['per_stream_rtf']} | {r['batched_rtf']} | {r['speedup']}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(rows=rows, threads=args.threads, cpu_count=os.cpu_count(),
                                              torch=torch.__version__, load_avg=os.getloadavg()), indent=1) + "\n")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
