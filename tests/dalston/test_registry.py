"""Registration in a real redis-server, read back the way dalston's router reads it."""
from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import websockets

from tests.dalston.kit import RedisServer, collect, frames, pcm16, run_session, session_url
from parakeet_services.dalston import registry as reg

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMER = "set a timer for twenty minutes"
BEAT_S = 0.2


async def eventually(check: Callable[[], Any], what: str, limit_s: float = 30.0) -> Any:
    """Poll until ``check()`` is truthy (a wait, not a timing assertion: the limit only stops a hung test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def capabilities() -> dict[str, Any]:
    return reg.load_capabilities(None, engine_id="parakeet-stream", max_concurrency=2, model_variants=["x"])


async def register(worker, url: str, *, legacy: bool = False) -> reg.Registration:
    identity = reg.Identity(engine_id="parakeet-stream", instance=worker.options.instance,
                            capabilities=capabilities())
    layout = reg.LegacyLayout(identity, worker, ["en"]) if legacy else reg.CurrentLayout(identity, worker)
    registration = reg.Registration(url, layout, interval_s=BEAT_S)
    registration.start()
    return registration


# --- dalston's router rules, transcribed from dalston's EngineRecord and SessionAllocator -------

def parse_record(mapping: dict[str, str]) -> dict[str, Any] | None:
    if "engine_id" not in mapping:
        return None  # _mapping_to_record drops it
    return {
        "instance": mapping["instance"], "engine_id": mapping["engine_id"], "status": mapping["status"],
        "interfaces": json.loads(mapping["interfaces"]) if "interfaces" in mapping else ["batch"],
        "capacity": int(mapping["capacity"]), "active_batch": int(mapping.get("active_batch", 0)),
        "active_realtime": int(mapping.get("active_realtime", 0)),
        "models_loaded": json.loads(mapping.get("models_loaded") or "null"),
        "last_heartbeat": datetime.fromisoformat(mapping["last_heartbeat"]) if "last_heartbeat" in mapping else None,
        "endpoint": mapping["endpoint"], "capabilities": json.loads(mapping.get("capabilities") or "null"),
    }


def is_available(rec: dict[str, Any]) -> bool:
    fresh = rec["last_heartbeat"] is None or \
        (datetime.now(timezone.utc) - rec["last_heartbeat"]).total_seconds() < 60
    return rec["status"] not in ("offline", "draining") and fresh and \
        rec["capacity"] - rec["active_batch"] - rec["active_realtime"] > 0


def acquire_worker(r: Any, *, engine_id: str | None, model: str | None) -> dict[str, Any] | None:
    """``SessionAllocator.acquire_worker``: candidates, model filter, sort, HINCRBY reservation with rollback."""
    ids = r.smembers(f"dalston:engine:engine_id:{engine_id}") if engine_id else r.smembers("dalston:engine:instances")
    candidates = []
    for instance in ids:
        rec = parse_record(r.hgetall(f"dalston:engine:instance:{instance}"))
        if rec is None or "realtime" not in rec["interfaces"] or not is_available(rec):
            continue
        loaded = model is not None and model in (rec["models_loaded"] or [])
        if model is not None and not (loaded or rec["engine_id"] == engine_id
                                      or model in (rec["capabilities"] or {}).get("model_variants", [])):
            continue
        candidates.append((loaded, rec["capacity"] - rec["active_realtime"], rec))
    candidates.sort(key=lambda c: (not c[0], -c[1]))
    for _, _, rec in candidates:
        counter = f"dalston:realtime:instance:{rec['instance']}"
        if r.hincrby(counter, "active_sessions", 1) > rec["capacity"]:
            r.hincrby(counter, "active_sessions", -1)
            continue
        return rec
    return None


# --- tests -----------------------------------------------------------------------------------------------

async def test_current_record_has_every_field_dalston_reads(worker, redis_server, redis_db) -> None:
    registration = await register(worker, redis_server.url)
    key = f"dalston:engine:instance:{worker.options.instance}"
    try:
        record = await eventually(lambda: redis_db.hgetall(key), "record written")
        ttl = redis_db.ttl(key)
    finally:
        await registration.stop()
    host = socket.gethostname()
    caps = dict(capabilities(), max_concurrency=4, model_variants=["espeak-demo-en"])
    assert set(record) == {
        "instance", "engine_id", "stage", "status", "interfaces", "capacity", "active_batch", "active_realtime",
        "models_loaded", "endpoint", "gpu_memory_used", "gpu_memory_total", "last_heartbeat", "registered_at",
        "supports_word_timestamps", "includes_diarization", "execution_profile", "hostname", "node_id",
        "deploy_env", "capabilities", "vocabulary_support"}
    assert {k: v for k, v in record.items() if k not in ("last_heartbeat", "registered_at", "capabilities")} == {
        "instance": "test-worker", "engine_id": "parakeet-stream", "stage": "transcribe", "status": "ready",
        "interfaces": '["realtime"]', "capacity": "4", "active_batch": "0", "active_realtime": "0",
        "models_loaded": '["espeak-demo-en"]', "endpoint": f"ws://{host}:{worker.port}",
        "gpu_memory_used": "0GB", "gpu_memory_total": "0GB", "supports_word_timestamps": "true",
        "includes_diarization": "false", "execution_profile": "container", "hostname": host, "node_id": host,
        "deploy_env": "local", "vocabulary_support": '{"method": "boosting", "batch": false, "realtime": true}'}
    assert json.loads(record["capabilities"]) == caps
    for stamp in (record["last_heartbeat"], record["registered_at"]):
        assert datetime.fromisoformat(stamp).utcoffset() is not None
    assert 0 < ttl <= 60
    assert redis_db.smembers("dalston:engine:instances") == set()  # deregistered by stop()
    assert redis_db.exists(key) == 0


async def test_sets_heartbeat_recreation_and_deregistration(worker, redis_server, redis_db) -> None:
    registration = await register(worker, redis_server.url)
    key = f"dalston:engine:instance:{worker.options.instance}"
    await eventually(lambda: redis_db.exists(key), "record written")
    for index in ("dalston:engine:instances", "dalston:engine:engine_id:parakeet-stream",
                  "dalston:engine:stage:transcribe"):
        assert redis_db.smembers(index) == {"test-worker"}
    first_beat = redis_db.hget(key, "last_heartbeat")
    await eventually(lambda: redis_db.hget(key, "last_heartbeat") != first_beat, "heartbeat advanced")
    redis_db.delete(key)  # as if the 60 s TTL had lapsed
    await eventually(lambda: redis_db.hget(key, "interfaces") == '["realtime"]', "record re-created")
    assert redis_db.hget(key, "endpoint") == worker.endpoint and redis_db.hget(key, "capacity") == "4"
    assert 0 < redis_db.ttl(key) <= 60
    await registration.stop()
    assert redis_db.exists(key) == 0
    for index in ("dalston:engine:instances", "dalston:engine:engine_id:parakeet-stream",
                  "dalston:engine:stage:transcribe"):
        assert redis_db.smembers(index) == set()


async def test_router_rules_find_it_then_not_when_full_or_draining(worker_factory, redis_server, redis_db) -> None:
    worker = await worker_factory(max_sessions=1)
    registration = await register(worker, redis_server.url)
    key = f"dalston:engine:instance:{worker.options.instance}"
    try:
        await eventually(lambda: redis_db.exists(key), "record written")
        # routed by engine_id (a registry row pointing at us) and by exact model name
        chosen = acquire_worker(redis_db, engine_id="parakeet-stream", model="nvidia/parakeet-rnnt-0.6b")
        assert chosen is not None and chosen["endpoint"] == worker.endpoint
        # the router's own counter now holds the one slot until it is released
        assert acquire_worker(redis_db, engine_id="parakeet-stream", model=None) is None
        redis_db.hincrby("dalston:realtime:instance:test-worker", "active_sessions", -1)
        assert acquire_worker(redis_db, engine_id=None, model="espeak-demo-en")["instance"] == "test-worker"
        redis_db.hincrby("dalston:realtime:instance:test-worker", "active_sessions", -1)
        assert acquire_worker(redis_db, engine_id=None, model="some-other-model") is None
        assert acquire_worker(redis_db, engine_id="nemo", model=None) is None
        async with websockets.connect(session_url(worker, enable_vad=False)) as ws:
            assert json.loads(await ws.recv())["type"] == "session.begin"
            await eventually(lambda: redis_db.hget(key, "status") == "busy", "busy written")
            assert redis_db.hget(key, "active_realtime") == "1"
            assert not is_available(parse_record(redis_db.hgetall(key)))
            assert acquire_worker(redis_db, engine_id="parakeet-stream", model=None) is None
            await ws.send(json.dumps({"type": "end"}))
            await collect(ws)
        await eventually(lambda: redis_db.hget(key, "status") == "ready", "ready again")
        assert is_available(parse_record(redis_db.hgetall(key)))
        await worker.drain(grace_s=5)
        await eventually(lambda: redis_db.hget(key, "status") == "draining", "draining written")
        assert not is_available(parse_record(redis_db.hgetall(key)))
        assert acquire_worker(redis_db, engine_id="parakeet-stream", model=None) is None
    finally:
        await registration.stop()


async def test_legacy_layout(worker, redis_server, redis_db) -> None:
    pubsub = redis_db.pubsub()
    pubsub.subscribe(reg.LEGACY_EVENTS_CHANNEL)
    registration = await register(worker, redis_server.url, legacy=True)
    key = "dalston:realtime:worker:test-worker"
    record = await eventually(lambda: redis_db.hgetall(key), "legacy record written")
    host = socket.gethostname()
    assert {k: v for k, v in record.items() if k not in ("last_heartbeat", "started_at", "capabilities")} == {
        "endpoint": f"ws://{host}:{worker.port}", "status": "ready", "capacity": "4", "active_sessions": "0",
        "gpu_memory_used": "0GB", "gpu_memory_total": "0GB", "models_loaded": '["espeak-demo-en"]',
        "languages_supported": '["en"]', "engine": "parakeet-stream", "engine_id": "parakeet-stream",
        "runtime": "parakeet-stream", "supports_vocabulary": "true"}
    assert redis_db.ttl(key) == -1  # the legacy hash has no TTL
    assert redis_db.smembers("dalston:realtime:workers") == {"test-worker"}
    url = session_url(worker, session_id="sess_legacy", enable_vad=False)
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.begin"
        await eventually(lambda: redis_db.smembers(f"{key}:sessions") == {"sess_legacy"}, "session added")
        await eventually(lambda: redis_db.hget(key, "active_sessions") == "1", "count written")
        await ws.send(json.dumps({"type": "end"}))
        await collect(ws)
    await eventually(lambda: redis_db.smembers(f"{key}:sessions") == set(), "session removed")
    await registration.stop()
    assert redis_db.exists(key, f"{key}:sessions") == 0
    assert redis_db.smembers("dalston:realtime:workers") == set()
    events = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            events.append(json.loads(message["data"]))
    pubsub.close()
    assert [e["type"] for e in events] == ["worker.registered", "session.ended", "worker.unregistered"]
    assert {k: v for k, v in events[0].items() if k != "timestamp"} == {
        "type": "worker.registered", "worker_id": "test-worker", "endpoint": worker.endpoint, "capacity": 4}
    assert {k: v for k, v in events[1].items() if k not in ("timestamp", "duration")} == {
        "type": "session.ended", "worker_id": "test-worker", "session_id": "sess_legacy", "status": "completed"}
    assert events[1]["duration"] > 0


async def test_redis_restart_mid_session(worker, speech, tmp_path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    client = redis.client()
    registration = await register(worker, redis.url)
    key = f"dalston:engine:instance:{worker.options.instance}"
    try:
        await eventually(lambda: client.exists(key), "registered")
        chunks = frames(pcm16(speech(TIMER)), 3200)
        async with websockets.connect(session_url(worker, enable_vad=False)) as ws:
            reader = asyncio.create_task(collect(ws))
            for chunk in chunks[: len(chunks) // 2]:
                await ws.send(chunk)
            redis.stop()
            await eventually(lambda: registration.connected is False, "outage noticed")
            for chunk in chunks[len(chunks) // 2:]:
                await ws.send(chunk)
            redis.start()  # same port, empty: the record must come back by itself
            await eventually(lambda: client.hget(key, "active_realtime") == "1" and registration.connected,
                             "re-registered")
            assert client.smembers("dalston:engine:instances") == {"test-worker"}
            await ws.send(json.dumps({"type": "end"}))
            t = await reader
        assert t.final_text == TIMER and t.types[-1] == "session.end"
        # a standalone session during the outage also works
        t = await run_session(session_url(worker, enable_vad=False), chunks)
        assert t.final_text == TIMER
    finally:
        await registration.stop()
        client.close()
        redis.stop()


async def test_redis_down_at_start_then_up(worker, speech, tmp_path) -> None:
    redis = RedisServer(tmp_path)  # port chosen, server not started yet
    registration = await register(worker, redis.url)
    try:
        await eventually(lambda: registration.connected is False, "outage noticed")
        t = await run_session(session_url(worker, enable_vad=False), frames(pcm16(speech(TIMER)), 3200))
        assert t.final_text == TIMER  # standalone serving meanwhile
        redis.start()
        client = redis.client()
        key = f"dalston:engine:instance:{worker.options.instance}"
        await eventually(lambda: client.hget(key, "status") == "ready" and registration.connected,
                         "registered once Redis is up")
        client.close()
    finally:
        await registration.stop()
        redis.stop()
