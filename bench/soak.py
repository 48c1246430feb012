"""Soak and faults: `parakeet-stream serve` (demo model, real Redis) held under real-time sessions for minutes beside
a torch neighbour process, then churned, cut off from Redis, left by vanishing clients and stopped mid-utterance.

    .venv/bin/python bench/soak.py [--minutes 10] [--streams 8] [--out bench/results/soak-cpu.json]

Every client is a real WebSocket client over loopback sending espeak-ng speech (``speech_workload``) in 20 ms frames
at real time. For each scenario: finals expected (utterances sent whole) and delivered, the worker's lag
(``parakeet_dalston_lag_seconds`` sampled every second) p95 and max, the worker's RSS at start and end, and errors:
error messages received, sessions not ended by ``session.end``, and the worker's WARNING/ERROR log lines. Prints a
markdown table and writes JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FRAME_S = 0.02


@dataclass
class Row:
    scenario: str
    finals_expected: int = 0
    finals_delivered: int = 0
    lag_p95_s: float = 0.0
    lag_max_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    errors: list[str] = field(default_factory=list)


class Worker:
    """``parakeet-stream serve`` as a process, with its own redis-server."""

    def __init__(self, workdir: Path, redis_port: int) -> None:
        self.workdir, self.redis_port = workdir, redis_port
        self.redis: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        self.url = self.http = ""
        self.log: list[str] = []

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()
            self.redis = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "parakeet_services.cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--http-port", "0", "--max-sessions", "64", "--redis-url", f"redis://127.0.0.1:{self.redis_port}",
             "--heartbeat-interval", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.match(r"parakeet-stream serve: (ws://\S+) (http://\S+)", line)
            if m:
                self.url, self.http = m.group(1), m.group(2)
                break
        asyncio.get_event_loop().run_in_executor(None, self._read_log)

    def _read_log(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def lag(self) -> float:
        body = urllib.request.urlopen(f"{self.http}/metrics", timeout=5).read().decode()
        m = re.search(r"^parakeet_dalston_lag_seconds (\S+)$", body, re.M)
        return float(m.group(1)) if m else 0.0

    def problems(self, since: int) -> list[str]:
        return [line.strip()[:160] for line in self.log[since:] if " WARNING " in line or " ERROR " in line]


async def client(url: str, audio: np.ndarray, *, vanish_after_s: float | None = None) -> tuple[int, list[str], bool]:
    """Stream ``audio`` at real time, then ``end``; returns (finals, error messages, ended by session.end)."""
    import websockets

    finals, errors, ended = 0, [], False
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(16000 * FRAME_S) * 2
    async with websockets.connect(url + "?session_id=soak&enable_vad=true", max_size=None) as ws:
        async def read() -> None:
            nonlocal finals, ended
            async for message in ws:
                msg = json.loads(message)
                finals += msg["type"] == "transcript.final"
                ended |= msg["type"] == "session.end"
                if msg["type"] in ("error", "session.terminated"):
                    errors.append(f"{msg.get('code', msg['type'])}: {msg.get('message', msg.get('reason'))}")

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            if vanish_after_s is not None and i / 32000 >= vanish_after_s:
                ws.transport.abort()  # gone without a close frame
                reader.cancel()
                return finals, errors, ended
            await asyncio.sleep(max(0.0, t0 + i / 32000 - time.monotonic()))
            try:
                await ws.send(pcm[i:i + step])
            except websockets.ConnectionClosed:
                break
        try:
            await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(reader, 30)
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            errors.append("no close within 30 s of end")
    return finals, errors, ended


async def sample_lag(worker: Worker, samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            samples.append(await asyncio.to_thread(worker.lag))
        except OSError:
            pass
        await asyncio.sleep(1.0)


async def scenario(worker: Worker, name: str, clients: list, expected: int, during=None) -> Row:
    row = Row(name, finals_expected=expected, rss_start_mb=worker.rss_mb())
    since, lags, stop = len(worker.log), [], asyncio.Event()
    sampler = asyncio.create_task(sample_lag(worker, lags, stop))
    extra = asyncio.create_task(during()) if during else None
    results = await asyncio.gather(*clients)
    if extra:
        await extra
    stop.set()
    await sampler
    row.finals_delivered = sum(f for f, _, _ in results)
    row.errors = [e for _, errs, _ in results for e in errs]
    row.errors += [f"{n} session(s) without session.end" for n in [sum(not e for _, _, e in results)] if n]
    row.errors += worker.problems(since)
    if lags:
        row.lag_p95_s, row.lag_max_s = round(float(np.percentile(lags, 95)), 2), round(max(lags), 2)
    row.rss_end_mb = worker.rss_mb() if worker.proc.poll() is None else 0.0
    return row


def utterances(audio: np.ndarray, ends: list[float], upto_s: float) -> int:
    return sum(e <= upto_s for e in ends)


async def main_async(args: argparse.Namespace) -> list[Row]:
    from parakeet_services.benchmark.workload import speech_workload

    work = speech_workload(20.0, variants=4, seed=1)
    loops = max(1, int(args.minutes * 60 / 20))
    long_audio = [np.concatenate([a] * loops) for a in work.audio]
    long_ends = [[e + k * len(a) / 16000 for k in range(loops) for e in ends]
                 for a, ends in zip(work.audio, work.speech_ends)]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(Path(tmp), redis_port=_free_port())
        worker.start_redis()
        worker.start()
        neighbour = subprocess.Popen([sys.executable, str(Path(__file__).with_name("neighbour.py"))],
                                     stdout=subprocess.DEVNULL)
        try:
            n = args.streams
            print(f"hold: {n} streams for {args.minutes:g} min beside a torch neighbour", file=sys.stderr)
            rows.append(await scenario(
                worker, f"hold {n} streams {args.minutes:g} min + neighbour",
                [client(worker.url, long_audio[i % 4]) for i in range(n)],
                sum(len(long_ends[i % 4]) for i in range(n))))
        finally:
            neighbour.kill()
            neighbour.wait()
        first = work.audio[0][: int(16000 * (work.speech_ends[0][0] + 0.8))]  # the first utterance and a pause
        print("churn: 40 short sessions, 4 at a time", file=sys.stderr)

        async def churn() -> list:
            out = []
            for _ in range(10):
                out += await asyncio.gather(*[client(worker.url, first) for _ in range(4)])
            return out

        async def run_churn():
            res = await churn()
            return sum(f for f, _, _ in res), [e for _, errs, _ in res for e in errs], all(e for _, _, e in res)

        rows.append(await scenario(worker, "churn 40 sessions", [run_churn()], 40))
        print("redis down 30 s under 4 streams", file=sys.stderr)
        forty = [a[: 40 * 16000] for a in work.audio]

        async def redis_outage() -> None:
            await asyncio.sleep(5)
            worker.stop_redis()
            await asyncio.sleep(30)
            worker.start_redis()

        rows.append(await scenario(worker, "redis down 30 s", [client(worker.url, forty[i]) for i in range(4)],
                                   sum(utterances(forty[i], work.speech_ends[i], 40) for i in range(4)),
                                   during=redis_outage))
        print("clients vanishing mid-utterance", file=sys.stderr)
        mid = work.speech_ends[0][0] - 0.5
        rows.append(await scenario(worker, "2 clients vanish mid-utterance, 1 goes on",
                                   [client(worker.url, work.audio[0], vanish_after_s=mid) for _ in range(2)]
                                   + [client(worker.url, first)], 1))
        print("SIGTERM mid-utterance", file=sys.stderr)

        async def sigterm() -> None:
            await asyncio.sleep(mid)
            worker.proc.send_signal(signal.SIGTERM)

        rows.append(await scenario(worker, "SIGTERM mid-utterance (drain)", [client(worker.url, first)], 1,
                                   during=sigterm))
        worker.proc.wait(timeout=60)
        worker.stop_redis()
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long the hold scenario lasts")
    p.add_argument("--streams", type=int, default=8, help="real-time sessions held")
    p.add_argument("--out", default="bench/results/soak-cpu.json")
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    print("| scenario | finals expected | delivered | lag p95 s | lag max s | RSS start MB | RSS end MB | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        errors = "; ".join(r.errors[:3]) + (f" (+{len(r.errors) - 3})" if len(r.errors) > 3 else "") or "none"
        print(f"| {r.scenario} | {r.finals_expected} | {r.finals_delivered} | {r.lag_p95_s} | {r.lag_max_s} | "
              f"{r.rss_start_mb} | {r.rss_end_mb} | {errors} |")
    from parakeet_services.benchmark.report import machine_info

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"bench": "soak", "minutes": args.minutes, "streams": args.streams,
                                          "rows": [asdict(r) for r in rows], "machine": machine_info("cpu")},
                                         indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
