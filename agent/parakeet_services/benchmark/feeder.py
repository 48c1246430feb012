"""``Feeder``: every stream's 20 ms packets pushed at their real-time due times, as a server's connections would
deliver them, and when each packet arrived (the reference for latency)."""
from __future__ import annotations

import heapq
import math
import time
from typing import Callable

import numpy as np

from .config import PACKET, PACKET_MS


class Feeder:
    """Pushes every stream's 20 ms packets at their real-time due times from one thread; records arrivals."""

    def __init__(self, audios: list[np.ndarray], spread_s: float) -> None:
        n = len(audios)
        self.audios = audios
        self.starts = [i * spread_s / n for i in range(n)]
        self.counts = [math.ceil(a.shape[0] / PACKET) for a in audios]
        self.arrivals = [np.zeros(c) for c in self.counts]
        self.lags: list[float] = []

    def run(self, push: Callable[[int, np.ndarray], None], finish: Callable[[int], None],
            progress: Callable[[float], None] | None = None) -> float:
        """Feed everything; returns the monotonic time of stream 0's first packet."""
        t0 = time.monotonic() + 0.05
        heap = [(t0 + s, i, 0) for i, s in enumerate(self.starts)]
        heapq.heapify(heap)
        next_report = t0 + 5.0
        while heap:
            due, i, k = heapq.heappop(heap)
            wait = due - time.monotonic()
            if wait > 0.001:
                time.sleep(wait)
            now = time.monotonic()
            self.lags.append(max(0.0, now - due))
            self.arrivals[i][k] = now
            push(i, self.audios[i][k * PACKET:(k + 1) * PACKET])
            if k + 1 < self.counts[i]:
                heapq.heappush(heap, (due + PACKET_MS / 1000, i, k + 1))
            else:
                finish(i)
            if progress and now >= next_report:
                progress(now - t0)
                next_report = now + 5.0
        return t0

    def arrival_of_sample(self, i: int, samples: int) -> float:
        """When the packet holding sample number ``samples`` (1-based count) was pushed."""
        k = min(max(math.ceil(samples / PACKET) - 1, 0), self.counts[i] - 1)
        return float(self.arrivals[i][k])
