"""``parakeet-stream serve`` as a real subprocess on a loopback port, killable and restartable on the same port."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.dalston.kit import free_port

ROOT = Path(__file__).resolve().parents[1]
LISTENING = "parakeet-stream serve: "


class ServeProcess:
    """``serve --model espeak-demo-en --device cpu`` on 127.0.0.1; ``url`` is what a remote STT's ``base_url`` takes."""

    def __init__(self, *, max_sessions: int = 8, api_key: str | None = None, chunk_ms: int = 160,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.max_sessions = max_sessions
        self.api_key = api_key
        self.chunk_ms = chunk_ms
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        env = dict(os.environ)
        env.pop("PARAKEET_API_KEY", None)
        args = [sys.executable, "-m", "parakeet_services.cli", "serve", "--model", "espeak-demo-en", "--device", "cpu",
                "--chunk-ms", str(self.chunk_ms), "--host", "127.0.0.1", "--port", str(self.port), "--http-port", "off",
                "--max-sessions", str(self.max_sessions), "--drain-grace", "5", *self.extra_args]
        if self.api_key:
            args += ["--api-key", self.api_key]
        self.lines = []
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        proc = self.proc
        threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not any(line.startswith(LISTENING) for line in self.lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("serve did not start:\n" + "".join(self.lines[-40:]))
            time.sleep(0.05)

    def __enter__(self) -> "ServeProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing its connections (a crash, an OOM kill)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    @property
    def log(self) -> str:
        return "".join(self.lines)
