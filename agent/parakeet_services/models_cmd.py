"""``parakeet-stream models``: the checkpoints the engine knows by name (no NeMo import, instant)."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the known checkpoints and their chunk sizes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from parakeet_stream.models import DEFAULT_MODEL, KNOWN_MODELS

    rows = [("name", "chunk sizes (ms)", "runs well on", "what it is")]
    for m in KNOWN_MODELS.values():
        sizes = ", ".join(str(s) for s in m.chunk_sizes_ms) if m.chunk_sizes_ms else "offline (VAD-segmented)"
        name = m.name + (" (default)" if m.name == DEFAULT_MODEL else "")
        rows.append((name, sizes, m.device, m.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    print("\nAny other NeMo cache-aware checkpoint works by hub id or .nemo path: --model /models/x.nemo")
    return 0
