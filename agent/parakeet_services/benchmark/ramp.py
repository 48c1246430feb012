"""``ramp``: the largest number of streams a system sustains, found by doubling and then bisection."""
from __future__ import annotations

import time
from typing import Callable

from .measures import LevelResult


def ramp(run_level: Callable[[int], LevelResult], levels: tuple[int, ...] | None, deadline: float,
         max_level: int = 4096, refine: int = 3) -> tuple[list[LevelResult], int]:
    """Find the largest sustainable N: fixed ``levels`` run as given; otherwise N doubles from 1 until a level
    fails (or time runs out), then up to ``refine`` bisection steps narrow it to within ~1/8. Returns the
    results in run order and the largest sustainable N (0 if none)."""
    results: list[LevelResult] = []
    best, failed_at = 0, None

    def attempt(n: int) -> bool:
        nonlocal best, failed_at
        r = run_level(n)
        results.append(r)
        if r.sustainable:
            best = max(best, n)
        else:
            failed_at = n if failed_at is None else min(failed_at, n)
        return r.sustainable

    if levels:
        for n in levels:
            if results and time.monotonic() > deadline:
                break
            attempt(n)
        return results, best
    n = 1
    while n <= max_level and (not results or time.monotonic() < deadline):
        if not attempt(n):
            break
        n *= 2
    for _ in range(refine):
        if failed_at is None or failed_at - best <= max(1, best // 8) or time.monotonic() > deadline:
            break
        attempt((best + failed_at) // 2 if best else max(1, failed_at // 2))
    return results, best
