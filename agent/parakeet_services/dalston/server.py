"""The dalston worker's WebSocket server: ``/session`` sessions, ``/health``, capacity and graceful drain."""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from parakeet_stream_client.credentials import redacting_logger

from . import protocol as proto
from .metrics import WorkerStats, render_metrics
from .session import Outcome, Session

log = logging.getLogger("parakeet_services.dalston.server")

WS_PING_INTERVAL_S = 20  # dalston HEAD (common/timeouts.py)
WS_PING_TIMEOUT_S = 20


@dataclass
class WorkerOptions:
    """How the worker presents itself; the defaults match dalston HEAD's environment defaults."""

    host: str = "0.0.0.0"
    port: int = 9000
    max_sessions: int = 16
    instance: str = "parakeet-stream"
    endpoint: str | None = None                      # what dalston dials; default ws://{hostname}:{port}
    models: list[str] = field(default_factory=list)  # advertised in models_loaded; default the engine's model
    languages: list[str] = field(default_factory=lambda: ["en"])
    timeline: str = "audio"
    drain_grace_s: float = 30.0
    api_key: str | None = None  # sessions need it (a header or ?api_key=); None = open to anyone who can connect


def json_response(status: HTTPStatus, body: Any, content_type: str = "application/json") -> Response:
    data = (json.dumps(body) if content_type == "application/json" else body).encode()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))),
                       ("Connection", "close")])
    return Response(status.value, status.phrase, headers, data)


def gpu_memory(device: str) -> tuple[str, str]:
    """dalston's ``"4.2GB"`` strings (used, total); ``"0GB"`` without CUDA as its SDK reports."""
    if not str(device).startswith("cuda"):
        return "0GB", "0GB"
    import torch

    index = torch.device(device).index or 0
    used = torch.cuda.memory_allocated(index) / 1e9
    total = torch.cuda.get_device_properties(index).total_memory / 1e9
    return f"{used:.1f}GB", f"{total:.1f}GB"


class DalstonWorker:
    """Serves dalston's worker protocol over one shared engine; ``start()`` binds, ``drain()`` ends gracefully."""

    def __init__(self, engine: Any, options: WorkerOptions, stats: WorkerStats | None = None) -> None:
        self.engine = engine
        self.options = options
        self.stats = stats or WorkerStats()
        self.sessions: dict[int, Session] = {}
        self.draining = False
        self.started_at = time.time()
        self._server: Server | None = None
        self._port: int | None = None  # kept: the listening socket is gone while draining
        self._listeners: list[Callable[[str, Session | None], None]] = []

    # --- state the registry and metrics read ------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.options.max_sessions

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    @property
    def status(self) -> str:
        if self.draining:
            return "draining"
        return "busy" if self.active_sessions >= self.capacity else "ready"

    @property
    def models(self) -> list[str]:
        return list(self.options.models) or [self.engine.info.name]

    @property
    def port(self) -> int:
        assert self._port is not None, "start() first"
        return self._port

    @property
    def endpoint(self) -> str:
        """What dalston dials: the given endpoint (``{port}`` replaced by this worker's port, for ``--workers``)
        or ``ws://{hostname}:{port}``."""
        endpoint = self.options.endpoint or "ws://{hostname}:{port}"
        return endpoint.replace("{hostname}", socket.gethostname()).replace("{port}", str(self.port))

    def max_lag(self) -> float:
        return max((s.lag_s for s in self.sessions.values()), default=0.0)

    def add_listener(self, listener: Callable[[str, Session | None], None]) -> None:
        """``listener(event, session)`` for "session_started", "session_ended" and "draining"."""
        self._listeners.append(listener)

    def _notify(self, event: str, session: Session | None) -> None:
        for listener in self._listeners:
            try:
                listener(event, session)
            except Exception:  # a listener must never break a session
                log.exception("worker.listener_failed event=%s", event)

    def health(self) -> dict[str, Any]:
        info = self.engine.info
        used, total = gpu_memory(info.device)
        return {"status": "draining" if self.draining else "healthy", "instance": self.options.instance,
                "worker_id": self.options.instance, "active_sessions": self.active_sessions,
                "capacity": self.capacity, "gpu_memory": used, "gpu_memory_total": total,
                "cuda_available": str(info.device).startswith("cuda"), "models_loaded": self.models,
                "model_count": 1, "device": str(info.device), "model_name": info.name,
                "chunk_size_ms": info.chunk_ms}

    def metrics_text(self) -> str:
        return render_metrics(self.stats, active_sessions=self.active_sessions, capacity=self.capacity,
                              draining=self.draining, max_lag_seconds=self.max_lag(),
                              engine_metrics=self.engine.metrics())

    # --- serving -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(self._handle, self.options.host, self.options.port,
                                   process_request=self._process_request, ping_interval=WS_PING_INTERVAL_S,
                                   ping_timeout=WS_PING_TIMEOUT_S,
                                   logger=redacting_logger("parakeet_services.dalston.websockets"))
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("worker.listening host=%s port=%d capacity=%d model=%s auth=%s", self.options.host, self.port,
                 self.capacity, self.engine.info.name, "api_key" if self.options.api_key else "none")
        if not self.options.api_key and not is_loopback(self.options.host):
            log.warning("worker.unauthenticated host=%s: anyone who can reach this address can open sessions on "
                        "this GPU; set --api-key (or PARAKEET_API_KEY) or bind to 127.0.0.1", self.options.host)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # A plain HTTP GET /health (a container probe) gets JSON; WebSocket upgrades go to _handle.
        if urlsplit(request.path).path == "/health" and "upgrade" not in request.headers.get("Connection", "").lower():
            return json_response(HTTPStatus.OK, self.health())
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "/")
        if url.path == "/health":
            await ws.send(json.dumps(self.health()))
            return
        if self.options.api_key and not key_matches(self.options.api_key, request_key(ws.request, url.query)):
            # before parsing anything or touching the engine; the offered key is never logged
            self.stats.connections_rejected["unauthorized"] += 1
            log.warning("worker.rejected reason=unauthorized remote=%s", _peer(ws))
            await ws.close(proto.CLOSE_POLICY_VIOLATION, proto.REASON_UNAUTHORIZED)
            return
        if not url.path.startswith("/session"):
            self.stats.connections_rejected["invalid_path"] += 1
            await ws.close(proto.CLOSE_INVALID_PATH, "Invalid path")
            return
        try:
            config = proto.parse_session_params(dict(parse_qsl(url.query, keep_blank_values=True)),
                                                default_timeline=self.options.timeline)
        except proto.ParameterError as exc:
            self.stats.connections_rejected["invalid_parameter"] += 1
            await ws.close(proto.CLOSE_INVALID_PARAMETER, _reason(str(exc)))
            return
        language = config.language.split("-")[0].lower()
        if language != "auto" and language not in self.options.languages:
            self.stats.connections_rejected["invalid_parameter"] += 1
            accepted = ", ".join(["auto", *self.options.languages])
            await ws.close(proto.CLOSE_INVALID_PARAMETER,
                           _reason(f"Invalid parameter: language={config.language!r} (accepted: {accepted})"))
            return
        try:
            config.keyterms = self.engine.check_keyterms(config.vocabulary, config.keyterm_weight)
        except ValueError as exc:
            self.stats.connections_rejected["invalid_parameter"] += 1
            await ws.close(proto.CLOSE_INVALID_PARAMETER, _reason(f"Invalid parameter: vocabulary: {exc}"))
            return
        if self.draining or self.active_sessions >= self.capacity:
            self.stats.connections_rejected["capacity"] += 1
            log.info("worker.rejected reason=%s active=%d capacity=%d",
                     "draining" if self.draining else "capacity", self.active_sessions, self.capacity)
            await ws.close(proto.CLOSE_AT_CAPACITY, "Server draining" if self.draining else "Server at capacity")
            return
        session = Session(ws, config, self.engine, self.stats, on_end=self._on_session_end)
        try:
            session.open_stream()
        except Exception as exc:  # the engine's CapacityError when it is shared beyond this worker
            self.stats.connections_rejected["engine"] += 1
            log.warning("worker.open_stream_failed error=%s", exc)
            await ws.close(proto.CLOSE_AT_CAPACITY, "Server at capacity")
            return
        self.sessions[id(session)] = session
        self.stats.sessions_started += 1
        self._notify("session_started", session)
        await session.run()

    def _on_session_end(self, session: Session, outcome: Outcome) -> None:
        self.sessions.pop(id(session), None)
        self._notify("session_ended", session)

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop accepting, let every open session deliver its finals and ``session.end``, then stop."""
        grace = self.options.drain_grace_s if grace_s is None else grace_s
        self.draining = True
        self._notify("draining", None)
        log.info("worker.draining sessions=%d grace_s=%g", self.active_sessions, grace)
        if self._server is not None:
            self._server.close(close_connections=False)  # stop listening; open sessions go on
        for session in list(self.sessions.values()):
            session.drain()
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions.values()):
            log.warning("worker.drain_timeout session_id=%s", session.config.session_id)
            session.abort()
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def request_key(request: Request | None, query: str) -> str | None:
    """The API key a client offered: ``Authorization: Bearer``, ``X-API-Key``, or dalston's ``?api_key=``."""
    if request is not None:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            return authorization[7:].strip()
        if request.headers.get("X-API-Key"):
            return request.headers["X-API-Key"].strip()
    return dict(parse_qsl(query, keep_blank_values=True)).get("api_key")


def key_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison, so the time a refusal takes tells nothing about the key."""
    return offered is not None and hmac.compare_digest(expected.encode(), offered.encode())


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


def _reason(text: str) -> str:
    """Close reasons are limited to 123 UTF-8 bytes by RFC 6455."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."
