"""``parakeet-stream serve`` as a process: registers, serves, and on SIGTERM drains open sessions, deregisters, exits 0."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest
import websockets

from tests.dalston.kit import ROOT, collect, frames, free_port, pcm16, until

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMER = "set a timer for twenty minutes"
INSTANCE = "parakeet-stream-rt-testinstance"


def metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return float(next(line.split()[1] for line in body.splitlines() if line.startswith(name + " ")))


async def test_serve_registers_and_drains_on_sigterm(redis_server, redis_db, speech) -> None:
    ws_port, http_port = free_port(), free_port()
    env = dict(os.environ, DALSTON_INSTANCE="testinstance",
               PYTHONPATH=os.pathsep.join([str(ROOT / "agent"), str(ROOT / "plugin"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "parakeet_services.cli", "serve", "--model", "espeak-demo-en", "--device", "cpu",
         "--host", "127.0.0.1", "--port", str(ws_port), "--http-port", str(http_port), "--max-sessions", "2",
         "--redis-url", redis_server.url, "--heartbeat-interval", "0.5", "--drain-grace", "30"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    key = f"dalston:engine:instance:{INSTANCE}"
    try:
        await until(lambda: any(line.startswith("parakeet-stream serve: ") for line in lines) or proc.poll() is not None,
                    "worker listening", 120)
        assert proc.poll() is None, "".join(lines)
        await until(lambda: redis_db.exists(key), "registered")
        assert redis_db.hget(key, "endpoint") == f"ws://{__import__('socket').gethostname()}:{ws_port}"
        assert redis_db.hget(key, "capacity") == "2"
        caps = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/capabilities").read())
        assert (caps["engine_id"], caps["max_concurrency"], caps["model_variants"]) == \
            ("parakeet-stream", 2, ["espeak-demo-en"])

        audio = speech(TIMER)
        async with websockets.connect(f"ws://127.0.0.1:{ws_port}/session?enable_vad=false") as ws:
            messages = asyncio.create_task(collect(ws))
            for chunk in frames(pcm16(audio), 3200):
                await ws.send(chunk)
            expected = round(len(audio) / 16000, 6)
            await until(lambda: round(metric(http_port, "parakeet_dalston_audio_received_seconds_total"), 6)
                        == expected, "audio received")
            proc.send_signal(signal.SIGTERM)  # mid-session: no `end` from the client
            t = await messages
        assert t.final_text == TIMER
        assert t.types[-1] == "session.end" and t.close_code == 1000
        assert await asyncio.to_thread(proc.wait, 60) == 0
        assert redis_db.exists(key) == 0
        assert redis_db.smembers("dalston:engine:instances") == set()
        log = "".join(lines)
        assert "worker.draining sessions=1" in log and "registry.deregistered" in log and "worker.stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
