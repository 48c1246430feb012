"""The captions page's HTTP server on a real loopback socket: the page and its script, and the token endpoint's
answers (its room listing needs a LiveKit server: tests/livekit/test_captions_page.py)."""
from __future__ import annotations

import aiohttp
import jwt
import pytest

from parakeet_services.viewer import RoomPolicy, ViewerConfig, start_viewer

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "devkey"
SECRET = "parakeet-stream-test-secret-0123456789"
LIVEKIT = "ws://127.0.0.1:7880"  # only written into tokens and the page's policy: nothing here connects to it


@pytest.fixture
async def page():
    """``(base address, session)`` of a page that opens rooms 'standup' and 'class-<n>'."""
    site = await start_viewer(ViewerConfig(url=LIVEKIT, api_key=KEY, api_secret=SECRET, port=0,
                                           rooms=RoomPolicy.from_regex("standup|class-[0-9]+"),
                                           public_url="wss://live.example.org"))
    async with aiohttp.ClientSession() as session:
        yield site.address, session
    await site.aclose()


async def test_serves_on_loopback_by_default(page):
    base, _ = page
    assert base.startswith("http://127.0.0.1:")


async def test_token_for_an_allowed_room_is_subscribe_only(page):
    base, http = page
    async with http.post(base + "api/token", json={"room": "class-12"}) as r:
        assert (r.status, r.headers["Cache-Control"]) == (200, "no-store")
        body = await r.json()
    assert set(body) == {"url", "token", "room", "identity"}
    assert (body["url"], body["room"]) == ("wss://live.example.org", "class-12")  # the browsers' address
    video = jwt.decode(body["token"], SECRET, algorithms=["HS256"], options={"verify_nbf": False})["video"]
    assert (video["room"], video["canPublish"], video["canPublishData"], video["canSubscribe"]) == \
           ("class-12", False, False, True)


async def test_room_not_allowed_is_refused(page):
    base, http = page
    async with http.post(base + "api/token", json={"room": "board-meeting"}) as r:
        assert (r.status, await r.json()) == \
               (403, {"error": "room 'board-meeting' is not allowed on this captions page"})


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"room": ""}, 403, "no room given"),
    ({"room": 7}, 400, 'expected a JSON body: {"room": "<name>"}'),
    (["standup"], 400, 'expected a JSON body: {"room": "<name>"}'),
    ("standup", 400, 'expected a JSON body: {"room": "<name>"}'),
])
async def test_malformed_token_requests_are_answered(page, body, status, error):
    base, http = page
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    async with http.post(base + "api/token", **kwargs) as r:
        assert (r.status, await r.json()) == (status, {"error": error})


async def test_token_is_post_only(page):
    base, http = page
    async with http.get(base + "api/token?room=standup") as r:
        assert r.status == 405


async def test_page_and_its_bundled_client_are_served(page):
    base, http = page
    async with http.get(base) as r:
        html = await r.text()
        assert r.status == 200
        csp = r.headers["Content-Security-Policy"]
    assert '<section id="captions" class="captions" aria-live="polite"' in html
    assert '<script type="module" src="/static/captions.js"></script>' in html
    assert "connect-src 'self' wss://live.example.org https://live.example.org;" in csp
    assert "script-src" not in csp and "default-src 'self';" in csp  # scripts: this server's only
    async with http.get(base + "static/captions.js") as r:
        script = await r.text()
        assert (r.status, r.content_type) == (200, "application/javascript")
    assert "lk.transcription" in script and "registerTextStreamHandler" in script
    async with http.get(base + "static/livekit-client.LICENSE.txt") as r:
        assert r.status == 200 and "Apache License" in await r.text()


async def test_room_list_when_the_livekit_server_is_unreachable():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    site = await start_viewer(ViewerConfig(url=f"ws://127.0.0.1:{closed}", api_key=KEY, api_secret=SECRET, port=0))
    try:
        async with aiohttp.ClientSession() as http, http.get(site.address + "api/rooms") as r:
            assert (r.status, await r.json()) == (502, {"error": "cannot list the LiveKit server's rooms"})
    finally:
        await site.aclose()
