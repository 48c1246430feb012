"""Fixtures for the LiveKit plugin and captions tests: the shared demo engine, espeak-ng speech, and a real
``livekit-server --dev`` on free loopback ports (built with ``go install`` when it is not installed)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.livekit.livekit_testkit import CHUNK_MS, MODEL

LIVEKIT_SERVER_MODULE = "github.com/livekit/livekit-server/cmd/server@v1.13.5"
API_KEY = "devkey"
API_SECRET = "parakeet-stream-test-secret-0123456789"  # >= 32 chars, or the server logs an error


@pytest.fixture(scope="session")
def engine():
    """The process-wide demo engine, with the same key ``parakeet.STT(model=MODEL)`` uses."""
    import parakeet_stream as ps

    return ps.shared_engine(ps.EngineConfig(model=MODEL, device="auto", dtype="auto", chunk_ms=CHUNK_MS))


@pytest.fixture(scope="session")
def speech():
    """``speech(sentence, rate=16000)`` -> float32 mono samples of espeak-ng (en-us, its default speed) saying it,
    at ``rate`` samples a second."""
    from tests.support import speech as spoken

    def make(sentence: str, rate: int = 16000) -> np.ndarray:
        return spoken(sentence, rate=None, sample_rate=rate)

    return make


# -- livekit-server ---------------------------------------------------------------------------------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_binary(build_dir: Path) -> str:
    """livekit-server from PATH, the project's build location, or a fresh ``go install``."""
    for candidate in (shutil.which("livekit-server"), "/usr/local/bin/server",
                      str(Path.home() / "go" / "bin" / "server"), str(build_dir / "server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None:
        pytest.fail(f"livekit-server is not installed and Go (>= 1.26) is missing to build it; install Go and "
                    f"run: go install {LIVEKIT_SERVER_MODULE}")
    build_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "install", LIVEKIT_SERVER_MODULE], check=True, env={**os.environ, "GOBIN": str(build_dir)})
    return str(build_dir / "server")


@dataclass(frozen=True)
class LiveKitServer:
    url: str
    api_key: str
    api_secret: str

    def token(self, identity: str, room: str, *, agent: bool = False) -> str:
        from livekit import api

        grants = api.VideoGrants(room_join=True, room=room, agent=agent)
        tok = api.AccessToken(self.api_key, self.api_secret).with_identity(identity).with_grants(grants)
        if agent:
            tok = tok.with_kind("agent")
        return tok.to_jwt()


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory):
    """``livekit-server --dev`` bound to 127.0.0.1, ICE restricted to ``lo``, on free ports; stopped at the end."""
    work = tmp_path_factory.mktemp("livekit")
    binary = _server_binary(Path(os.environ.get("PARAKEET_GOBIN", Path.home() / ".cache" / "parakeet-stream" / "bin")))
    http, tcp, udp = _free_port(), _free_port(), _free_port(socket.SOCK_DGRAM)
    config = work / "livekit.yaml"
    config.write_text(
        f"port: {http}\n"
        "bind_addresses: ['127.0.0.1']\n"
        "rtc:\n"
        f"  tcp_port: {tcp}\n"
        f"  udp_port: {udp}\n"
        "  use_external_ip: false\n"
        "  enable_loopback_candidate: true\n"  # without it the UDP mux skips 127.0.0.1 and ICE never connects
        "  node_ip: 127.0.0.1\n"
        # clients are handed these STUN servers (with none configured, the server hands out Google's and Twilio's):
        # its own ICE port keeps every client's candidate gathering on loopback
        f"  stun_servers: ['127.0.0.1:{udp}']\n"
        "  interfaces:\n"
        "    includes: [lo]\n"
        f"keys:\n  {API_KEY}: {API_SECRET}\n"
        "logging:\n  level: info\n"
    )
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([binary, "--dev", "--bind", "127.0.0.1", "--node-ip", "127.0.0.1", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/", timeout=1) as r:
                if r.read().strip() == b"OK":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"livekit-server did not become healthy; log:\n{(work / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield LiveKitServer(f"ws://127.0.0.1:{http}", API_KEY, API_SECRET)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
