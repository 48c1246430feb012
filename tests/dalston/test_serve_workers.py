"""``parakeet-stream serve --workers N``: N whole dalston workers on one device, each registered on its own."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from parakeet_services.serve_workers import check_workers, worker_args
from tests.dalston.kit import ROOT, frames, pcm16, run_session, until

TIMER = "set a timer for twenty minutes"
CALL = "call me at seven thirty tomorrow morning"


def options(**given) -> argparse.Namespace:
    defaults = dict(workers=2, port=9000, http_port="9100", endpoint=None, instance=None)
    return argparse.Namespace(**{**defaults, **given})


def test_each_worker_gets_its_own_ports_instance_and_endpoint():
    ones = [worker_args(options(endpoint="ws://gpu-7:{port}"), i, "parakeet-stream-rt-abc") for i in range(3)]
    assert [(o.port, o.http_port, o.instance, o.workers) for o in ones] == [
        (9000, "9100", "parakeet-stream-rt-abc-0", 1), (9001, "9101", "parakeet-stream-rt-abc-1", 1),
        (9002, "9102", "parakeet-stream-rt-abc-2", 1)]
    assert all(o.endpoint == "ws://gpu-7:{port}" for o in ones)  # each worker puts in its own port
    any_port = worker_args(options(port=0, http_port="0"), 1, "x")
    assert (any_port.port, any_port.http_port) == (0, "0")
    assert worker_args(options(http_port="off"), 1, "x").http_port == "off"


def test_an_endpoint_without_a_port_placeholder_is_refused_for_several_workers():
    assert check_workers(options(endpoint="ws://gpu-7:9000")) == (
        "--endpoint 'ws://gpu-7:9000' names one port, but --workers 2 listen on 2 ports: write {port} where the "
        "port goes (ws://my-host:{port})")
    assert check_workers(options(workers=0)) == "--workers must be at least 1, got 0"
    assert check_workers(options(endpoint="ws://gpu-7:{port}")) is None
    assert check_workers(options(workers=1, endpoint="ws://gpu-7:9000")) is None


async def transcribe(port: int, audio) -> str:
    t = await run_session(f"ws://127.0.0.1:{port}/session?enable_vad=false", frames(pcm16(audio), 3200))
    assert t.types[-1] == "session.end", t.messages
    return t.final_text


@pytest.mark.asyncio(loop_scope="session")
async def test_two_workers_register_and_serve_and_one_killed_leaves_the_other_serving(redis_server, redis_db,
                                                                                    speech) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "agent"), str(ROOT / "plugin"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "parakeet_services.cli", "serve", "--workers", "2", "--model", "espeak-demo-en",
         "--device", "cpu", "--host", "127.0.0.1", "--port", "0", "--http-port", "off", "--max-sessions", "2",
         "--redis-url", redis_server.url, "--instance", "pw", "--endpoint", "ws://127.0.0.1:{port}",
         "--heartbeat-interval", "0.5", "--drain-grace", "10"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    keys = [f"dalston:engine:instance:pw-{i}" for i in range(2)]
    try:
        await until(lambda: sum(line.startswith("parakeet-stream serve: ") for line in lines) == 2
                    or proc.poll() is not None, "two workers listening", 180)
        assert proc.poll() is None, "".join(lines)
        await until(lambda: all(redis_db.exists(k) for k in keys), "both registered")
        assert redis_db.smembers("dalston:engine:instances") == {"pw-0", "pw-1"}
        ports = [int(redis_db.hget(k, "endpoint").rsplit(":", 1)[1]) for k in keys]
        assert len(set(ports)) == 2 and [redis_db.hget(k, "capacity") for k in keys] == ["2", "2"]
        listening = {int(m) for m in re.findall(r"^parakeet-stream serve: ws://127\.0\.0\.1:(\d+)/session",
                                                "".join(lines), re.M)}
        assert listening == set(ports)

        texts = await asyncio.gather(transcribe(ports[0], speech(TIMER)), transcribe(ports[1], speech(CALL)))
        assert texts == [TIMER, CALL]

        pids = json.loads(re.search(r'workers\.started workers=2 pids="(\[.*?\])"', "".join(lines)).group(1))
        os.kill(pids[1], signal.SIGKILL)  # a crash, an OOM kill
        await until(lambda: "worker.exited worker=1 exit_code=-9 serving=1 workers=2" in "".join(lines),
                    lambda: "the supervisor saw worker 1 die:\n" + "".join(lines))
        assert await transcribe(ports[0], speech(CALL)) == CALL  # the other serves on
        beats = [redis_db.hget(k, "last_heartbeat") for k in keys]
        await asyncio.sleep(1.5)  # three heartbeat intervals
        assert redis_db.hget(keys[0], "last_heartbeat") != beats[0]
        assert redis_db.hget(keys[1], "last_heartbeat") == beats[1]  # nobody beats for the dead one:
        assert 0 < redis_db.ttl(keys[1]) < redis_db.ttl(keys[0]) <= 60  # its record expires

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        log = "".join(lines)
        assert code == 1, log  # one worker did not stop cleanly
        assert "workers.stopped workers=2 failed=1" in log and "worker.stopped" in log, log
        assert redis_db.exists(keys[0]) == 0  # the drained worker deregistered
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
