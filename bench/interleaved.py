"""This checkout's engine against another commit's, run by run: the A/B of the benchmarks under ``bench/``.

On a shared VM timings drift by ±20 % over minutes, so only ratios within one interleaved run mean anything.
Each run is a fresh child process (``SCRIPT --child ...``) with the engine (``plugin/``) of one checkout first on
its path and this checkout's workload and feeder (``agent/``), so both sides get the same audio the same way; the
other commit is a temporary git worktree, removed when the runs end. ``load_engine`` and ``engine_module`` let a
child drive engines from before and after the engine took an ``EngineConfig`` and moved into subpackages.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def child_result(code: Path, script: str, args: list[str]) -> dict:
    """Run ``script args`` with the engine of the checkout at ``code``; returns the JSON of its last stdout line and
    echoes the engine's own log lines (graph captures, where Silero runs)."""
    paths = [str(code / "plugin"), str(ROOT / "agent"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))  # the checkout's engine first
    done = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{code}: {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    for line in done.stderr.splitlines():
        if " parakeet_stream " in line:
            print(f"  {line}", file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_interleaved(baseline: str | None, levels: list[int], repeats: int, run: Callable[[Path, int], dict],
                    what: Callable[[int], str]) -> tuple[dict[str, str], dict[str, dict[int, list[dict]]]]:
    """``run(checkout, level)`` for every level, ``repeats`` times, alternating this checkout ("this") with
    ``baseline`` ("baseline", first) when given. Returns each side's short commit and its runs per level."""
    sides = {"this": ROOT}
    if baseline:
        sides = {"baseline": _worktree(baseline), **sides}
    commits = {side: _short_commit(code) for side, code in sides.items()}
    runs: dict[str, dict[int, list[dict]]] = {side: {n: [] for n in levels} for side in sides}
    try:
        for rep in range(repeats):
            for n in levels:
                for side, code in sides.items():  # interleaved: the machine's drift hits both sides alike
                    print(f"[{rep + 1}/{repeats}] {side} ({commits[side]}): {what(n)} ...", file=sys.stderr,
                          flush=True)
                    runs[side][n].append(run(code, n))
    finally:
        if baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(sides["baseline"])], cwd=ROOT,
                           capture_output=True)
    return commits, runs


def _worktree(ref: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), ref], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def _short_commit(code: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=code).stdout.strip()


def write_result(out: str, bench: str, commits: dict[str, str], runs: dict[str, dict[int, list[dict]]],
                 medians: list[dict], device: str, **settings) -> None:
    """The JSON of an interleaved benchmark: its settings, the medians it printed, every run, the machine."""
    from parakeet_services.benchmark.report import machine_info

    result = {"bench": bench, "commits": commits, "device": device, **settings, "medians": medians,
              "runs": {side: {str(n): v for n, v in by_n.items()} for side, by_n in runs.items()},
              "machine": machine_info(device)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def load_engine(**config):
    """``Engine.load`` with these ``EngineConfig`` fields, on whichever engine is on the path (a field an older
    engine does not have, such as ``lanes``, is left out: that engine had no such choice)."""
    import dataclasses

    import parakeet_stream as ps

    if hasattr(ps, "EngineConfig"):
        known = {f.name for f in dataclasses.fields(ps.EngineConfig)}
        return ps.Engine.load(ps.EngineConfig(**{k: v for k, v in config.items() if k in known}))
    config.pop("lanes", None)
    model = config.pop("model")
    return ps.Engine.load(model, **config)


def engine_module(path: str, before: str):
    """The engine's module ``parakeet_stream.<path>``, or ``parakeet_stream.<before>`` in an engine from before the
    subpackages (``streaming.cache_aware`` was ``scheduler``)."""
    import importlib

    try:
        return importlib.import_module(f"parakeet_stream.{path}")
    except ImportError:
        return importlib.import_module(f"parakeet_stream.{before}")
