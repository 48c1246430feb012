"""The worker's HTTP side port (dalston's ``DALSTON_METRICS_PORT``): ``/health``, ``/v1/capabilities``, ``/metrics``.

Served by a second ``websockets`` server whose ``process_request`` answers every plain HTTP GET itself, so the
worker needs no web framework for three read-only endpoints.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .server import DalstonWorker, json_response

log = logging.getLogger("parakeet_services.dalston.http")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = ("/health", "/v1/capabilities", "/metrics")


class SidePort:
    """Binds ``host:port`` and answers the three GET routes from the worker's live state."""

    def __init__(self, worker: DalstonWorker, capabilities: dict[str, Any], host: str, port: int) -> None:
        self.worker = worker
        self.capabilities = capabilities
        self.host = host
        self.requested_port = port
        self._server: Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await serve(self._refuse_websocket, self.host, self.requested_port,
                                   process_request=self._answer)
        log.info("http.listening host=%s port=%d routes=%s", self.host, self.port, ",".join(ROUTES))

    async def _refuse_websocket(self, ws: ServerConnection) -> None:  # never reached: _answer answers all
        await ws.close()

    def _answer(self, connection: ServerConnection, request: Request) -> Response:
        path = urlsplit(request.path).path
        if path == "/health":
            return json_response(HTTPStatus.OK, self.worker.health())
        if path == "/v1/capabilities":
            return json_response(HTTPStatus.OK, self.capabilities)
        if path == "/metrics":
            return json_response(HTTPStatus.OK, self.worker.metrics_text(), PROMETHEUS_CONTENT_TYPE)
        return json_response(HTTPStatus.NOT_FOUND, {"error": f"Unknown path {path}", "routes": list(ROUTES)})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
