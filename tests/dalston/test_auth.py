"""``serve --api-key``: a connection without the key is closed 1008 "unauthorized" before any session exists."""
from __future__ import annotations

import json
import logging

import pytest
import websockets

from parakeet_services.dalston.server import is_loopback
from tests.dalston.kit import collect, frames, pcm16, run_session, session_url

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "k3y-for-tests-0123456789"
TIMER = "set a timer for twenty minutes"


async def refused(url: str, headers: dict[str, str] | None = None):
    async with websockets.connect(url, additional_headers=headers) as ws:
        return await collect(ws)


@pytest.mark.parametrize("headers, params", [
    (None, {}),
    ({"Authorization": "Bearer wrong-key"}, {}),
    ({"X-API-Key": "wrong-key"}, {}),
    (None, {"api_key": "wrong-key"}),
    ({"Authorization": f"Basic {KEY}"}, {}),
])
async def test_a_missing_or_wrong_key_closes_1008_unauthorized_before_any_session(worker_factory, headers, params,
                                                                                  caplog) -> None:
    worker = await worker_factory(max_sessions=2, api_key=KEY)
    with caplog.at_level(logging.DEBUG):
        t = await refused(session_url(worker, **params), headers)
    assert (t.messages, t.close_code, t.close_reason) == ([], 1008, "unauthorized")
    assert worker.stats.connections_rejected == {"unauthorized": 1}
    assert (worker.stats.sessions_started, worker.active_sessions, worker.engine.active_streams) == (0, 0, 0)
    assert "worker.rejected reason=unauthorized remote=127.0.0.1:" in caplog.text


@pytest.mark.parametrize("headers, params", [
    ({"Authorization": f"Bearer {KEY}"}, {}),
    ({"authorization": f"bearer {KEY}"}, {}),
    ({"X-API-Key": KEY}, {}),
    (None, {"api_key": KEY}),
])
async def test_the_key_in_a_header_or_the_query_opens_a_session_and_is_never_logged(worker_factory, speech, headers,
                                                                                    params, caplog) -> None:
    worker = await worker_factory(max_sessions=2, api_key=KEY)
    with caplog.at_level(logging.DEBUG):
        async with websockets.connect(session_url(worker, enable_vad=False, **params),
                                      additional_headers=headers) as ws:
            for chunk in frames(pcm16(speech(TIMER)), 3200):
                await ws.send(chunk)
            await ws.send(json.dumps({"type": "end"}))
            t = await collect(ws)
    assert t.final_text == TIMER and (t.close_code, worker.stats.sessions_started) == (1000, 1)
    assert "api_key" not in json.dumps(t.messages)
    # the worker's records (the test's own websockets client logs its headers under websockets.client)
    worker_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("parakeet_services"))
    assert KEY not in worker_log
    assert any(text in worker_log for text in ("Authorization: [redacted]", "authorization: [redacted]",
                                               "X-API-Key: [redacted]", "api_key=[redacted]"))


async def test_without_a_key_the_worker_is_open(worker, speech) -> None:
    t = await run_session(session_url(worker, enable_vad=False), frames(pcm16(speech(TIMER)), 3200))
    assert t.final_text == TIMER


async def test_health_needs_no_key(worker_factory) -> None:
    worker = await worker_factory(api_key=KEY)
    async with websockets.connect(f"ws://127.0.0.1:{worker.port}/health") as ws:
        assert json.loads(await ws.recv())["status"] == "healthy"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False), ("gpu-host", False),
])
def test_which_bind_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_a_loopback_worker_without_a_key_does_not_warn(worker_factory, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="parakeet_services.dalston.server"):
        await worker_factory()
    assert "worker.unauthenticated" not in caplog.text
