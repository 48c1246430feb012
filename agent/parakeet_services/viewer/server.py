"""The captions page's HTTP server: the static page, the rooms it may open, and subscribe-only tokens for them.

Endpoints (all JSON but the page):
  ``GET /``              the page (``static/index.html``); ``GET /static/...`` its script, styles and licences
  ``GET /api/rooms``     ``{"rooms": [{"name", "participants"}]}``: active rooms the page may open
  ``POST /api/token``    ``{"room"}`` -> ``{"url", "token", "room", "identity"}``; 400/403 ``{"error"}`` otherwise

The token is minted here so the API secret stays on the server; it can only subscribe (``tokens.py``). A page
on another origin cannot read the answer: a JSON POST needs a CORS preflight, and none is ever granted.
"""
from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from livekit import api

from .tokens import ANY_ROOM, RoomNotAllowed, RoomPolicy, subscribe_only_token

logger = logging.getLogger("parakeet_services.viewer")

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 4096  # a token request is one room name
LIST_ROOMS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ViewerConfig:
    url: str  # the LiveKit server as this process reaches it (ws:// or wss://); room listing uses it
    api_key: str
    api_secret: str
    rooms: RoomPolicy = field(default_factory=RoomPolicy.from_regex)
    public_url: str | None = None  # the LiveKit server as browsers reach it; None: ``url``
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port (``ViewerSite.port`` says which)

    @property
    def browser_url(self) -> str:
        return self.public_url or self.url

    @property
    def api_url(self) -> str:
        """The server API's http(s) address; the Twirp API shares the signalling port."""
        parts = urlsplit(self.url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return parts._replace(scheme=scheme).geturl()


CONFIG = web.AppKey("config", ViewerConfig)


@dataclass
class ViewerSite:
    """A running captions page; ``aclose()`` stops it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def aclose(self) -> None:
        await self.runner.cleanup()


def build_app(config: ViewerConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_security_headers(config)])
    app[CONFIG] = config
    app.router.add_get("/", _page)
    app.router.add_get("/api/rooms", _rooms)
    app.router.add_post("/api/token", _token)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    return app


async def start_viewer(config: ViewerConfig) -> ViewerSite:
    """Serve the page on ``config.host:config.port`` from the running event loop."""
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
    except OSError:  # the port is taken, or the host is not an address of this machine
        await runner.cleanup()
        raise
    if config.rooms.pattern.pattern == ANY_ROOM and not _is_loopback(config.host):
        logger.warning("the captions page on %s opens any room for anyone who reaches it: restrict it with "
                       "--rooms / --viewer-rooms", config.host)
    port = runner.addresses[0][1]
    viewer = ViewerSite(runner, config.host, port)
    logger.info("captions page at %s", viewer.address, extra={"rooms": config.rooms.pattern.pattern,
                                                                 "livekit_url": config.browser_url})
    return viewer


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _security_headers(config: ViewerConfig):
    """The page runs only its own script and talks only to this server and the LiveKit server."""
    signalling = urlsplit(config.browser_url)
    secure = signalling.scheme in ("wss", "https")
    origins = " ".join(f"{scheme}://{signalling.netloc}" for scheme in (("wss", "https") if secure else ("ws", "http")))
    policy = (f"default-src 'self'; connect-src 'self' {origins}; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    @web.middleware
    async def add_headers(request: web.Request, handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return add_headers


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _rooms(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        async with api.LiveKitAPI(config.api_url, config.api_key, config.api_secret,
                                  timeout=aiohttp.ClientTimeout(total=LIST_ROOMS_TIMEOUT_S)) as lkapi:
            listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
    except Exception as e:  # the page still works by typing a room name; say why the list is empty
        logger.warning("cannot list rooms: %s", e)
        return _error(502, "cannot list the LiveKit server's rooms")
    rooms = sorted((r for r in listed.rooms if config.rooms.allows(r.name)), key=lambda r: r.name)
    return web.json_response({"rooms": [{"name": r.name, "participants": r.num_participants} for r in rooms]})


async def _token(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
        return _error(400, 'expected a JSON body: {"room": "<name>"}')
    room = body.get("room") if isinstance(body, dict) else None
    if not isinstance(room, str):
        return _error(400, 'expected a JSON body: {"room": "<name>"}')
    try:
        config.rooms.check(room)
    except RoomNotAllowed as e:
        logger.info("token refused: %s", e, extra={"remote": request.remote})
        return _error(403, str(e))
    token, identity = subscribe_only_token(config.api_key, config.api_secret, room)
    logger.info("viewer token issued", extra={"room": room, "identity": identity, "remote": request.remote})
    return web.json_response({"url": config.browser_url, "token": token, "room": room, "identity": identity})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)

