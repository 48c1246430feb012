"""What the remote path (a ``parakeet-stream serve`` session over a loopback WebSocket) adds to latency over an
in-process engine stream. Prints a markdown table and writes JSON.

    .venv/bin/python bench/remote_overhead.py [--streams 16] [--rounds 4] [--model espeak-demo-en]
        [--device cpu|cuda] [--chunk-ms 160] [--out PATH]

Each round runs ``--streams`` concurrent streams of spoken sentences pushed in 20 ms frames at real time, once
in process (an engine in this process) and once remote (sessions on a ``serve`` subprocess with its own engine of
the same model), alternating which goes first, so the machine's drift hits both alike; only one side runs at a
time. An event's latency is its arrival at the consumer minus the wall time at which the frame holding sample
``audio_end`` (the last audio the result depends on) was pushed: the engine's own step latency plus, remotely, the
WebSocket hops, JSON, and the server's event loop. The figure of interest is the difference of the two sides.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FRAME_S = 0.02
SENTENCES = ("set a timer for ten minutes", "call me at seven thirty tomorrow morning", "turn on the radio",
             "please open the window", "can you call john for me", "turn on the lights")


@dataclass
class Latencies:
    """Seconds from the push of an event's ``audio_end`` to its arrival, per event kind."""

    partial: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)

    def extend(self, other: "Latencies") -> None:
        self.partial += other.partial
        self.final += other.final


def spoken(text: str) -> np.ndarray:
    from parakeet_services.speech import espeak

    return espeak(text)


def stream_audio(index: int) -> np.ndarray:
    """Stream ``index``: two sentences with pauses, offset so streams do not speak in lockstep."""
    lead = np.zeros(int(16000 * 0.05 * (index % 8)), np.float32)
    pause = np.zeros(int(16000 * 1.2), np.float32)
    a, b = SENTENCES[index % len(SENTENCES)], SENTENCES[(index + 2) % len(SENTENCES)]
    return np.concatenate([lead, spoken(a), pause, spoken(b), pause])


class PushClock:
    """Wall time at which each frame was pushed, to look up when sample ``t`` reached the engine or the socket."""

    def __init__(self) -> None:
        self.pushed_at: list[float] = []

    def at(self, audio_s: float) -> float:
        index = min(len(self.pushed_at) - 1, max(0, int(np.ceil(round(audio_s / FRAME_S, 6))) - 1))
        return self.pushed_at[index]


async def paced_frames(audio: np.ndarray, clock: PushClock):
    """Yield 20 ms int16 frames at real time (on the loop's clock, without drift)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    step = int(16000 * FRAME_S)
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), step)):
        delay = start + n * FRAME_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        clock.pushed_at.append(time.monotonic())
        yield pcm[i:i + step].tobytes()


def record(event, clock: PushClock, out: Latencies) -> None:
    import parakeet_stream as ps

    now = time.monotonic()
    if isinstance(event, ps.Partial):
        out.partial.append(now - clock.at(event.audio_end))
    elif isinstance(event, ps.Final) and event.text:
        out.final.append(now - clock.at(event.audio_end))


async def run_local(engine, audio: np.ndarray) -> Latencies:
    out, clock = Latencies(), PushClock()
    stream = engine.open_stream()

    async def feed() -> None:
        async for frame in paced_frames(audio, clock):
            stream.push(frame)
        stream.finish()

    feeder = asyncio.create_task(feed())
    async for event in stream:
        record(event, clock, out)
    await feeder
    return out


async def run_remote(url: str, audio: np.ndarray) -> Latencies:
    from parakeet_stream_client import RemoteSession, SessionParams

    import parakeet_stream as ps

    out, clock = Latencies(), PushClock()
    session = await RemoteSession.open(url, SessionParams(endpointing=ps.EndpointingOptions()))

    async def feed() -> None:
        async for frame in paced_frames(audio, clock):
            await session.send_audio(frame)
        await session.finish()

    feeder = asyncio.create_task(feed())
    async for event in session:
        record(event, clock, out)
    await feeder
    await session.close()
    return out


async def one_round(side: str, engine, url: str, audios: list[np.ndarray]) -> Latencies:
    runs = [run_local(engine, a) if side == "local" else run_remote(url, a) for a in audios]
    total = Latencies()
    for result in await asyncio.gather(*runs):
        total.extend(result)
    return total


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "parakeet_services.cli", "serve", "--model", args.model, "--device", args.device,
           "--host", "127.0.0.1", "--port", str(port), "--http-port", "off", "--max-sessions", str(args.streams),
           "--log-level", "WARNING"]
    if args.chunk_ms:
        cmd += ["--chunk-ms", str(args.chunk_ms)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 300
    while not any(line.startswith("parakeet-stream serve: ") for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("serve did not start:\n" + "".join(lines[-30:]))
        time.sleep(0.05)
    return proc


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def summary(lat: Latencies) -> dict[str, float]:
    return {"partial_p50_ms": percentile(lat.partial, 50), "partial_p95_ms": percentile(lat.partial, 95),
            "final_p50_ms": percentile(lat.final, 50), "final_p95_ms": percentile(lat.final, 95),
            "partials": len(lat.partial), "finals": len(lat.final)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--rounds", type=int, default=4, help="rounds per side, interleaved")
    p.add_argument("--model", default="espeak-demo-en")
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk-ms", type=int, default=160)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/remote-overhead-DEVICE.json)")
    args = p.parse_args()

    import socket

    import parakeet_stream as ps

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(args, port)
    try:
        engine = ps.shared_engine(ps.EngineConfig(model=args.model, device=args.device, chunk_ms=args.chunk_ms,
                                                  max_streams=args.streams))
        audios = [stream_audio(i) for i in range(args.streams)]
        sides = {"local": Latencies(), "remote": Latencies()}
        url = f"ws://127.0.0.1:{port}"
        for r in range(args.rounds):
            order = ("local", "remote") if r % 2 == 0 else ("remote", "local")
            for side in order:
                print(f"[{r + 1}/{args.rounds}] {side}: {args.streams} streams ...", file=sys.stderr, flush=True)
                sides[side].extend(asyncio.run(one_round(side, engine, url, audios)))
    finally:
        server.terminate()
        server.wait(30)
    result = {
        "what": "remote (serve over loopback WebSocket) vs in-process latency, same run, interleaved rounds",
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.processor() or platform.machine()}"
        f" {os.cpu_count()} CPUs", "model": args.model, "device": args.device, "chunk_ms": args.chunk_ms,
        "streams": args.streams, "rounds": args.rounds,
        "local": summary(sides["local"]), "remote": summary(sides["remote"]),
    }
    result["added_ms"] = {k: result["remote"][k] - result["local"][k] for k in result["local"] if k.endswith("_ms")}
    rows = [("in process", result["local"]), ("remote", result["remote"]), ("added by remote", result["added_ms"])]
    print(f"\n{args.streams} streams, {args.rounds} rounds per side, {args.model} on {args.device}, "
          f"chunk {args.chunk_ms} ms\n")
    print("| path | partial p50 ms | partial p95 ms | final p50 ms | final p95 ms |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['partial_p50_ms']:.1f} | {r['partial_p95_ms']:.1f} | {r['final_p50_ms']:.1f} | "
              f"{r['final_p95_ms']:.1f} |")
    out = Path(args.out or ROOT / "bench" / "results" / f"remote-overhead-{args.device}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
