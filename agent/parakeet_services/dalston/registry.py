"""Registration in dalston's Redis so its session router finds this worker.

Two layouts (dalston's ``dalston/common/registry.py`` and the M22 realtime registry): the current ``dalston:engine:*`` unified registry (default) and the
legacy M22 ``dalston:realtime:worker:*`` registry (``legacy=True``). Every heartbeat rewrites the whole record,
so a key that expired, or a Redis that restarted empty, is whole again at the next beat. Redis being down
never stops the worker: the loop logs once per state change and retries with a backoff capped well under the
heartbeat interval.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .server import DalstonWorker, gpu_memory
from .session import Outcome

log = logging.getLogger("parakeet_services.dalston.registry")
# a stopping worker gives Redis this long to drop its record (a SIGTERM'd worker exits within ~2 s; dalston's
# router also expires a record whose heartbeat stops)
DEREGISTER_TIMEOUT_S = 1.0

HEARTBEAT_INTERVAL_S = 10.0
RECORD_TTL_S = 60
STAGE = "transcribe"
MAX_BACKOFF_S = 5.0

# current layout
INSTANCES_KEY = "dalston:engine:instances"
INSTANCE_KEY = "dalston:engine:instance:{instance}"
ENGINE_ID_KEY = "dalston:engine:engine_id:{engine_id}"
STAGE_KEY = "dalston:engine:stage:{stage}"
# legacy (M22) layout
LEGACY_WORKERS_KEY = "dalston:realtime:workers"
LEGACY_WORKER_KEY = "dalston:realtime:worker:{worker_id}"
LEGACY_SESSIONS_KEY = "dalston:realtime:worker:{worker_id}:sessions"
LEGACY_EVENTS_CHANNEL = "dalston:realtime:events"

DEFAULT_ENGINE_YAML = Path(__file__).with_name("engine.yaml")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def generate_instance_id(engine_id: str, suffix: str | None = None) -> str:
    """dalston's ``generate_instance_id(engine_id, infix="rt")``: ``{engine_id}-rt-{suffix[:12]}``."""
    suffix = suffix or os.environ.get("DALSTON_WORKER_ID") or os.environ.get("DALSTON_INSTANCE") or uuid.uuid4().hex
    return f"{engine_id}-rt-{suffix[:12]}"


def load_capabilities(path: Path | str | None, *, engine_id: str, max_concurrency: int,
                      model_variants: list[str]) -> dict[str, Any]:
    """dalston's ``parse_engine_capabilities(load_engine_yaml())`` for our card, with run-time overrides."""
    import yaml

    card = yaml.safe_load(Path(path or DEFAULT_ENGINE_YAML).read_text())
    caps = card.get("capabilities") or {}
    hardware = card.get("hardware") or {}
    performance = card.get("performance") or {}
    min_vram = hardware.get("min_vram_gb")
    return {
        "engine_id": engine_id,
        "version": str(card.get("version", "")),
        "stages": [card.get("stage", STAGE)],
        "supports_word_timestamps": bool(caps.get("word_timestamps", False)),
        "supports_native_streaming": bool(caps.get("native_streaming", False)),
        "model_variants": model_variants,
        "gpu_required": (card.get("container") or {}).get("gpu") == "required",
        "gpu_vram_mb": int(min_vram * 1024) if min_vram is not None else None,
        "supports_cpu": bool(hardware.get("supports_cpu", False)),
        "min_ram_gb": hardware.get("min_ram_gb"),
        "rtf_gpu": performance.get("rtf_gpu"),
        "rtf_cpu": performance.get("rtf_cpu"),
        "max_concurrency": max_concurrency,
        "includes_diarization": bool(caps.get("includes_diarization", False)),
        "vocabulary_support": caps.get("vocabulary_support"),
        "supports_language_forcing": bool(caps.get("supports_language_forcing", False)),
    }


@dataclass
class Identity:
    """Who the worker says it is in Redis."""

    engine_id: str
    instance: str
    capabilities: dict[str, Any]
    hostname: str = socket.gethostname()
    node_id: str = os.environ.get("DALSTON_NODE_ID") or socket.gethostname()
    deploy_env: str = os.environ.get("DALSTON_DEPLOY_ENV", "local")


class CurrentLayout:
    """``dalston:engine:instance:{instance}`` (HEAD, M64/M69 + M101): hash with TTL plus three index sets."""

    name = "current"

    def __init__(self, identity: Identity, worker: DalstonWorker) -> None:
        self.identity = identity
        self.worker = worker
        self.registered_at = now_iso()

    @property
    def key(self) -> str:
        return INSTANCE_KEY.format(instance=self.identity.instance)

    def record(self) -> dict[str, str]:
        """Every field dalston's ``_mapping_to_record`` reads, as the strings/JSON it parses."""
        ident, worker = self.identity, self.worker
        used, total = gpu_memory(worker.engine.info.device)
        caps = dict(ident.capabilities, max_concurrency=worker.capacity, model_variants=worker.models)
        return {
            "instance": ident.instance, "engine_id": ident.engine_id, "stage": STAGE, "status": worker.status,
            "interfaces": json.dumps(["realtime"]), "capacity": str(worker.capacity), "active_batch": "0",
            "active_realtime": str(worker.active_sessions), "models_loaded": json.dumps(worker.models),
            "endpoint": worker.endpoint, "gpu_memory_used": used, "gpu_memory_total": total,
            "last_heartbeat": now_iso(), "registered_at": self.registered_at,
            "supports_word_timestamps": "true", "includes_diarization": "false",
            "execution_profile": "container", "hostname": ident.hostname, "node_id": ident.node_id,
            "deploy_env": ident.deploy_env, "capabilities": json.dumps(caps),
            "vocabulary_support": json.dumps(caps.get("vocabulary_support")
                                             or {"method": "none", "batch": False, "realtime": False}),
        }

    async def write(self, r: aioredis.Redis, *, first: bool) -> None:
        ident = self.identity
        async with r.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, mapping=self.record())
            pipe.expire(self.key, RECORD_TTL_S)
            pipe.sadd(INSTANCES_KEY, ident.instance)
            pipe.sadd(ENGINE_ID_KEY.format(engine_id=ident.engine_id), ident.instance)
            pipe.sadd(STAGE_KEY.format(stage=STAGE), ident.instance)
            await pipe.execute()

    async def session_event(self, r: aioredis.Redis, event: str, session: Any) -> None:
        return None  # HEAD workers write no per-session keys

    async def remove(self, r: aioredis.Redis) -> None:
        ident = self.identity
        async with r.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.srem(INSTANCES_KEY, ident.instance)
            pipe.srem(ENGINE_ID_KEY.format(engine_id=ident.engine_id), ident.instance)
            pipe.srem(STAGE_KEY.format(stage=STAGE), ident.instance)
            await pipe.execute()


class LegacyLayout:
    """``dalston:realtime:worker:{id}`` (M06–M22): hash without TTL, ``:sessions`` set, pub/sub events."""

    name = "legacy"

    def __init__(self, identity: Identity, worker: DalstonWorker, languages: list[str]) -> None:
        self.identity = identity
        self.worker = worker
        self.languages = languages
        self.started_at = now_iso()

    @property
    def worker_id(self) -> str:
        return self.identity.instance

    @property
    def key(self) -> str:
        return LEGACY_WORKER_KEY.format(worker_id=self.worker_id)

    def record(self) -> dict[str, str]:
        worker = self.worker
        used, total = gpu_memory(worker.engine.info.device)
        caps = dict(self.identity.capabilities, max_concurrency=worker.capacity, model_variants=worker.models)
        # the M22 router routes only ready/busy, so "draining" (which its WorkerState also names) excludes us
        return {
            "endpoint": worker.endpoint, "status": worker.status, "capacity": str(worker.capacity),
            "active_sessions": str(worker.active_sessions), "gpu_memory_used": used, "gpu_memory_total": total,
            "models_loaded": json.dumps(worker.models), "languages_supported": json.dumps(self.languages),
            "last_heartbeat": now_iso(), "started_at": self.started_at, "engine": self.identity.engine_id,
            "engine_id": self.identity.engine_id, "runtime": "parakeet-stream", "supports_vocabulary": "true",
            "capabilities": json.dumps(caps),
        }

    async def write(self, r: aioredis.Redis, *, first: bool) -> None:
        await r.hset(self.key, mapping=self.record())
        await r.sadd(LEGACY_WORKERS_KEY, self.worker_id)
        if first:
            await r.publish(LEGACY_EVENTS_CHANNEL, json.dumps({
                "type": "worker.registered", "worker_id": self.worker_id, "endpoint": self.worker.endpoint,
                "capacity": self.worker.capacity, "timestamp": now_iso()}))

    async def session_event(self, r: aioredis.Redis, event: str, session: Any) -> None:
        sessions_key = LEGACY_SESSIONS_KEY.format(worker_id=self.worker_id)
        session_id = session.config.session_id
        if event == "session_started":
            await r.sadd(sessions_key, session_id)
        elif event == "session_ended":
            await r.srem(sessions_key, session_id)
            await r.publish(LEGACY_EVENTS_CHANNEL, json.dumps({
                "type": "session.ended", "worker_id": self.worker_id, "session_id": session_id,
                "duration": round(session.wall_seconds, 3),
                "status": "completed" if session.outcome is Outcome.COMPLETED else "error", "timestamp": now_iso()}))

    async def remove(self, r: aioredis.Redis) -> None:
        await r.srem(LEGACY_WORKERS_KEY, self.worker_id)
        await r.delete(self.key, LEGACY_SESSIONS_KEY.format(worker_id=self.worker_id))
        await r.publish(LEGACY_EVENTS_CHANNEL, json.dumps({
            "type": "worker.unregistered", "worker_id": self.worker_id, "timestamp": now_iso()}))


class Registration:
    """Keeps the worker registered: heartbeat loop, prompt updates on capacity changes, deregistration."""

    def __init__(self, url: str, layout: CurrentLayout | LegacyLayout, *,
                 interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self.url = url
        self.layout = layout
        self.interval_s = interval_s
        self.connected: bool | None = None  # None until the first attempt
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._registered = False
        self._stopping = False
        self._session_events: deque[tuple[str, Any]] = deque()
        layout.worker.add_listener(self._on_worker_event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def _on_worker_event(self, event: str, session: Any) -> None:
        if event in ("session_started", "session_ended"):
            self._session_events.append((event, session))
        self._wake.set()  # status/active count changed: write now rather than at the next beat

    def _set_connected(self, ok: bool, error: Exception | None = None) -> None:
        if ok == self.connected:
            return
        self.connected = ok
        if ok:
            log.info("registry.connected layout=%s key=%s url=%s", self.layout.name, self.layout.key, self.url)
        else:
            log.warning("registry.unreachable layout=%s url=%s error=%s (serving on; retrying)",
                        self.layout.name, self.url, error)

    async def _flush_session_events(self) -> None:
        while self._session_events:  # in order; an event that fails stays queued for the next try
            event, session = self._session_events[0]
            await self.layout.session_event(self.redis, event, session)
            self._session_events.popleft()

    async def _beat(self) -> None:
        await self._flush_session_events()
        await self.layout.write(self.redis, first=not self._registered)
        self._registered = True

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            self._wake.clear()
            try:
                await self._beat()
            except Exception as exc:  # RedisError/OSError when Redis is away; anything else must not stop beats
                if not isinstance(exc, (RedisError, OSError)):
                    log.exception("registry.beat_failed layout=%s", self.layout.name)
                self._set_connected(False, exc)
                self._registered = False
                delay = min(backoff, MAX_BACKOFF_S, self.interval_s)
                backoff *= 2
            else:
                self._set_connected(True)
                backoff = 0.5
                delay = self.interval_s
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that races with the wake-up
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=delay)
            finally:
                waiter.cancel()

    async def _deregister(self) -> None:
        await self._flush_session_events()
        await self.layout.remove(self.redis)

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop beating and remove the record (best effort: Redis may be gone)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if deregister:
            try:
                # session events the cancelled beat had not finished writing (they are idempotent) go first
                await asyncio.wait_for(self._deregister(), DEREGISTER_TIMEOUT_S)
                log.info("registry.deregistered layout=%s key=%s", self.layout.name, self.layout.key)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                log.warning("registry.deregister_failed layout=%s error=%s", self.layout.name, exc)
        await self.redis.aclose()
