"""``parakeet-stream viewer`` as an operator runs it, against a real livekit-server: the page's room list holds the
active rooms it may open and no others, a refused room is answered, SIGTERM stops it. (The page in a browser:
test_captions_page.py.)"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from livekit import api
from tests.livekit.livekit_testkit import until


def viewer(livekit_server, *args: str) -> list[str]:
    return [sys.executable, "-m", "parakeet_services.cli", "viewer", "--url", livekit_server.url,
            "--api-key", livekit_server.api_key, "--api-secret", livekit_server.api_secret, *args]


@dataclass(frozen=True)
class NoServer:  # arguments for a command that must stop before it contacts any server
    url: str = "ws://127.0.0.1:9"
    api_key: str = "devkey"
    api_secret: str = "parakeet-stream-test-secret-0123456789"


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.mark.asyncio(loop_scope="session")
async def test_viewer_command_lists_only_allowed_rooms_and_stops_on_sigterm(livekit_server, tmp_path):
    async with api.LiveKitAPI(livekit_server.url.replace("ws://", "http://"), livekit_server.api_key,
                              livekit_server.api_secret) as lkapi:
        for name in ("class-2", "class-1", "staff-room", "class-1b"):
            await lkapi.room.create_room(api.CreateRoomRequest(name=name, empty_timeout=120))
    log_path = tmp_path / "viewer.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(viewer(livekit_server, "--port", "0", "--rooms", "class-[0-9]+"),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        await until(lambda: b"captions page at" in log_path.read_bytes() or proc.poll() is not None, timeout=60,
                    what="the viewer to serve")
        found = re.search(r"captions page at (http://127\.0\.0\.1:\d+/) ", log_path.read_text())
        assert found, log_path.read_text()
        address = found[1]
        with urllib.request.urlopen(address + "api/rooms", timeout=10) as r:
            rooms = json.load(r)
        assert rooms == {"rooms": [{"name": "class-1", "participants": 0}, {"name": "class-2", "participants": 0}]}
        assert post_json(address + "api/token", {"room": "staff-room"}) == \
               (403, {"error": "room 'staff-room' is not allowed on this captions page"})
        status, grant = post_json(address + "api/token", {"room": "class-2"})
        assert (status, grant["url"], grant["room"]) == (200, livekit_server.url, "class-2")
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert rc == 0, out
    assert "token refused: room 'staff-room' is not allowed on this captions page" in out
    assert out.rstrip().endswith("INFO parakeet_services.viewer stopped"), out


def test_viewer_command_refuses_a_bad_room_pattern():
    done = subprocess.run(viewer(NoServer(), "--rooms", "class-[0-9"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.rstrip().endswith("ERROR parakeet_services.viewer --rooms 'class-[0-9' is not a regular "
                                         "expression: unterminated character set at position 6"), done.stderr


def test_viewer_command_needs_the_livekit_server():
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    done = subprocess.run([sys.executable, "-m", "parakeet_services.cli", "viewer"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr.rstrip().endswith("ERROR parakeet_services.viewer missing --url, --api-key, --api-secret "
                                         "(or LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET)"), done.stderr


def test_viewer_command_reports_a_port_in_use():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(viewer(NoServer(), "--port", str(port)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    last = done.stderr.rstrip().splitlines()[-1]
    assert f"ERROR parakeet_services.viewer cannot serve the captions page on 127.0.0.1:{port}: " in last, done.stderr
    assert "address already in use" in last.lower(), done.stderr
