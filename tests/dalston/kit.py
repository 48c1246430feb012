"""Helpers of the dalston worker tests: a real redis-server process, PCM framing, protocol sessions."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import websockets

if TYPE_CHECKING:
    from parakeet_services.dalston.server import DalstonWorker

ROOT = Path(__file__).resolve().parents[2]
MODEL = "espeak-demo-en"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real ``redis-server`` on a free loopback port, stoppable and restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (apt-get install redis-server)"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                time.sleep(0.025)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, decode_responses=True)


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def frames(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@dataclass
class Transcript:
    """Everything a client saw on one session."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    @property
    def final_text(self) -> str:
        return " ".join(m["text"] for m in self.of("transcript.final"))


async def collect(ws: Any, transcript: Transcript | None = None) -> Transcript:
    """Read until the worker closes the connection."""
    transcript = transcript or Transcript()
    try:
        async for message in ws:
            transcript.messages.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    transcript.close_code = ws.close_code
    transcript.close_reason = ws.close_reason or ""
    return transcript


async def run_session(url: str, chunks: list[bytes | str], *, end: bool = True) -> Transcript:
    """Connect, send every chunk (bytes = audio, str = a text frame), send ``end``, read until closed."""
    async with websockets.connect(url) as ws:
        reader = asyncio.create_task(collect(ws))
        for chunk in chunks:
            await ws.send(chunk)
        if end:
            await ws.send(json.dumps({"type": "end"}))
        return await reader


def session_url(worker: DalstonWorker, **params: Any) -> str:
    from urllib.parse import urlencode

    query = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
    return f"ws://127.0.0.1:{worker.port}/session" + (f"?{query}" if query else "")


async def until(check: Any, what: Any, limit_s: float = 60.0) -> None:
    """Wait for ``check()`` (run off the loop); ``what`` (or ``what()``, e.g. with the log so far) says what never
    happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what() if callable(what) else what}")
