"""The captions page in a real browser: ``parakeet-stream captions --viewer-port`` (worker and page in one process)
against a real livekit-server, speakers publishing espeak-ng speech, and headless Chromium (Debian's, driven by
Playwright) reading the page's DOM as a person would read the screen.

Chromium is held to loopback: every host name but 127.0.0.1 fails to resolve, WebRTC host candidates are not
announced over mDNS (multicast on the LAN), and every HTTP or WebSocket request the page makes is checked to go to
127.0.0.1. Screenshots are written to ``tests/artifacts/`` (or ``$PARAKEET_TEST_ARTIFACTS``)."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from livekit import rtc
from tests.livekit.livekit_testkit import (CALL, LIGHTS, MODEL, TIMER, TRANSPORT_WORD_ERRORS, Speaker, dispatch,
                                           finals_match, until, utterance, word_errors)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.realtime]

AGENT_NAME = "page-captions"
ROOMS = "page-.*"  # the page may open these rooms only
ARTIFACTS = Path(os.environ.get("PARAKEET_TEST_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))
CAPTION_WAIT_MS = 120_000  # a safety net against hangs on a busy 2-core machine, not a latency assertion
CHROMIUM_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces it may not get
    "--disable-dev-shm-usage",
]

# Every change of the caption region, recorded by the page's own DOM (a MutationObserver), so a test can see the
# interim texts that were on screen before the final one replaced them.
RECORD_CAPTIONS = """() => {
  window.__captions = [];
  const region = document.getElementById('captions');
  const record = () => {
    for (const el of region.querySelectorAll('.caption')) {
      window.__captions.push({segment: el.dataset.segmentId, identity: el.dataset.identity,
                              final: el.dataset.final === 'true', text: el.querySelector('.text').textContent});
    }
  };
  new MutationObserver(record).observe(region, {subtree: true, childList: true, characterData: true, attributes: true});
}"""

# Every RTCPeerConnection the page opens, so a test can read its ICE servers and the candidate pair in use.
TRACK_PEER_CONNECTIONS = """
window.__peerConnections = [];
window.RTCPeerConnection = class extends window.RTCPeerConnection {
  constructor(...args) { super(...args); window.__peerConnections.push(this); }
};
"""

PEER_CONNECTIONS = """async () => {
  const out = [];
  for (const pc of window.__peerConnections) {
    const stats = [...(await pc.getStats()).values()];
    const byId = new Map(stats.map((s) => [s.id, s]));
    const used = stats.filter((s) => s.type === 'candidate-pair' && s.state === 'succeeded')
                      .map((p) => byId.get(p.remoteCandidateId)).map((c) => `${c.address}:${c.port}`);
    out.push({state: pc.connectionState, iceServers: pc.getConfiguration().iceServers.flatMap((s) => s.urls),
              remotes: used});
  }
  return out;
}"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run scripts/install-test-deps.sh (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
async def captions_page(livekit_server, tmp_path_factory):
    """``parakeet-stream captions --viewer-port 0`` (explicit dispatch as ``AGENT_NAME``): yields the page's address."""
    log_path = tmp_path_factory.mktemp("captions-page") / "captions.log"
    env = {**os.environ, "LIVEKIT_URL": livekit_server.url, "LIVEKIT_API_KEY": livekit_server.api_key,
           "LIVEKIT_API_SECRET": livekit_server.api_secret}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "parakeet_services.cli", "captions", "--model", MODEL,
                                 "--agent-name", AGENT_NAME, "--http-host", "127.0.0.1", "--http-port", "0",
                                 "--max-streams", "4", "--viewer-port", "0", "--viewer-rooms", ROOMS],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await until(lambda: b"registered worker" in log_path.read_bytes() or proc.poll() is not None, timeout=180,
                    what="the captions command to register")
        out = log_path.read_text()
        assert proc.poll() is None, out
        address = re.search(r"captions page at (http://127\.0\.0\.1:\d+/) rooms=page-\.\* livekit_url=(\S+)", out)
        assert address and address[2] == livekit_server.url, out
        yield address[1], log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser, captions_page):
    """A fresh browser tab; every request it makes is recorded, and any off loopback is refused."""
    context = await browser.new_context(viewport={"width": 1100, "height": 720}, accept_downloads=True)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=captions_page[0].rstrip("/"))
    await context.add_init_script(TRACK_PEER_CONNECTIONS)
    tab = await context.new_page()
    tab.requests = []  # type: ignore[attr-defined]
    tab.console = []  # type: ignore[attr-defined]

    async def loopback_only(route) -> None:
        tab.requests.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            await route.abort()

    await context.route("**/*", loopback_only)
    tab.on("websocket", lambda ws: tab.requests.append(ws.url))
    tab.on("console", lambda msg: tab.console.append(f"{msg.type}: {msg.text}"))
    yield tab
    await context.close()
    assert [u for u in tab.requests if urlsplit(u).hostname != "127.0.0.1"] == []


async def speakers_heard(*speakers: Speaker) -> None:
    """The captions agent subscribed to every microphone: nothing they say is lost."""
    await asyncio.wait_for(asyncio.gather(*(s.heard.wait() for s in speakers)), 120)


async def poll(tab, function: str, arg=None, timeout_ms: int = 60_000, what: str = "the page"):
    """``function(arg)`` evaluated in the page until truthy (Playwright's ``wait_for_function`` compiles its predicate
    with ``eval``, which the page's Content-Security-Policy forbids, rightly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    while not (result := await tab.evaluate(function, arg)):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; status: {await tab.text_content('#status')!r}; "
                                 f"console: {tab.console[-20:]}")
        await asyncio.sleep(0.2)
    return result


async def connected(tab, room: str) -> None:
    await poll(tab, "(room) => document.getElementById('status').textContent.startsWith(`Connected to ${room}`)",
               room, what=f"the page to join {room}")


async def wait_for_final(tab, identity: str, words: str) -> str:
    """The final captions under ``identity``'s name (joined by " | " when several) once they are ``words`` within the
    transport's word errors, or as they are when the wait ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CAPTION_WAIT_MS / 1000
    while True:
        finals = await tab.eval_on_selector_all(f"#captions .caption[data-identity='{identity}'][data-final='true'] .text",
                                                "els => els.map(e => e.textContent)")
        if finals_match(finals, [words]) or loop.time() > deadline:
            return " | ".join(finals)
        await asyncio.sleep(0.2)


async def segment_counts(tab) -> dict[str, int]:
    return await tab.evaluate("""() => {
      const counts = {};
      for (const el of document.querySelectorAll('#captions .caption')) {
        counts[el.dataset.segmentId] = (counts[el.dataset.segmentId] || 0) + 1;
      }
      return counts;
    }""")


async def screenshot(tab, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    await tab.screenshot(path=str(path))
    return path


async def test_final_caption_under_the_speakers_name_replaces_its_interims(livekit_server, captions_page, page,
                                                                           speech):
    address, log_path = captions_page
    await dispatch(livekit_server, AGENT_NAME, "page-one")
    alice = await Speaker("alice").join(livekit_server, "page-one")
    try:
        await speakers_heard(alice)
        await page.goto(address + "?room=page-one")
        await connected(page, "page-one")
        await page.evaluate(RECORD_CAPTIONS)
        await alice.say(utterance(speech, TIMER))
        final = await wait_for_final(page, "alice", TIMER)
        assert word_errors(TIMER, final) <= TRANSPORT_WORD_ERRORS, (final, page.console, log_path.read_text()[-3000:])
        # the viewer joined hidden: the people in the room do not see it
        assert [p.identity for p in alice.room.remote_participants.values()
                if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT] == []
        await screenshot(page, "captions-page-one-speaker.png")
        # WebRTC on loopback only: the STUN server the LiveKit server names is its own, and so is every candidate pair
        peers = await page.evaluate(PEER_CONNECTIONS)
        assert [p for p in peers if p["state"] == "connected"], peers
        assert all(all(re.fullmatch(r"stun:127\.0\.0\.1:\d+", url) for url in p["iceServers"])
                   and all(r.startswith("127.0.0.1:") for r in p["remotes"]) for p in peers), peers
    finally:
        await alice.room.disconnect()

    entry = page.locator("#captions .caption[data-identity='alice'][data-final='true']")
    assert await entry.count() == 1
    segment = await entry.get_attribute("data-segment-id")
    assert segment.startswith("SG_")
    assert await segment_counts(page) == {segment: 1}  # one entry per segment: interims replaced, not appended
    assert await entry.locator(".speaker").text_content() == "alice"
    assert re.fullmatch(r"\d\d:\d\d:\d\d( [AP]M)?", await entry.locator("time").text_content())
    assert await entry.locator(".text").get_attribute("aria-hidden") is None  # finals are announced
    seen = await page.evaluate("window.__captions")
    interims = {s["text"] for s in seen if s["segment"] == segment and not s["final"] and s["text"]}
    assert interims, seen  # the words were on screen, greyed, before the final
    assert all(final.startswith(text) for text in interims), (final, interims)
    assert {s["segment"] for s in seen} == {segment}
    grey = await page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--interim').trim()")
    assert grey == "#b8b8b8"
    assert await page.get_attribute("#captions", "aria-live") == "polite"

    # the transcript: finals only, one line each, downloaded and copied
    async with page.expect_download() as download_info:
        await page.click("#download")
    download = await download_info.value
    downloaded = Path(await download.path()).read_text()
    stamp = await entry.locator("time").text_content()
    assert downloaded == f"[{stamp}] alice: {final}\n"
    assert re.fullmatch(r"captions-page-one-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.txt", download.suggested_filename)
    await page.click("#copy")
    assert await page.evaluate("navigator.clipboard.readText()") == downloaded


async def test_two_speakers_show_as_two_names_and_the_page_is_keyboard_usable(livekit_server, captions_page, page,
                                                                             speech):
    address, _ = captions_page
    await dispatch(livekit_server, AGENT_NAME, "page-two")
    bob = await Speaker("bob").join(livekit_server, "page-two")
    carol = await Speaker("carol").join(livekit_server, "page-two")
    try:
        await speakers_heard(bob, carol)
        await page.goto(address)
        # the room picker lists the active rooms the page may open; the room field has the focus: type and Enter
        await page.wait_for_selector("#room-list option[value='page-two']", state="attached", timeout=30_000)
        assert await page.evaluate("document.activeElement.id") == "room"
        await page.keyboard.type("page-two")
        await page.keyboard.press("Enter")
        await connected(page, "page-two")
        assert page.url == address + "?room=page-two"  # a link to this room
        await asyncio.gather(bob.say(utterance(speech, CALL)), carol.say(utterance(speech, LIGHTS, lead=1.4)))
        bob_final = await wait_for_final(page, "bob", CALL)
        carol_final = await wait_for_final(page, "carol", LIGHTS)
        await screenshot(page, "captions-page-two-speakers.png")
    finally:
        await bob.room.disconnect()
        await carol.room.disconnect()

    assert word_errors(CALL, bob_final) <= TRANSPORT_WORD_ERRORS, bob_final
    assert word_errors(LIGHTS, carol_final) <= TRANSPORT_WORD_ERRORS, carol_final
    names = await page.eval_on_selector_all("#captions .caption .speaker", "els => els.map(e => e.textContent)")
    assert set(names) == {"bob", "carol"}
    assert all(n == 1 for n in (await segment_counts(page)).values())
    # the controls are reachable with Tab, in reading order
    order = []
    await page.focus("#room")
    for _ in range(8):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id"))
    assert order == ["join", "leave", "refresh-rooms", "copy", "download", "autoscroll", "text-size", "captions"]


async def test_a_room_the_page_may_not_open_is_refused_and_not_listed(livekit_server, captions_page, page):
    address, _ = captions_page
    outsider = await Speaker("outsider").join(livekit_server, "board-meeting")  # an active room, not allowed
    try:
        await page.goto(address + "?room=board-meeting")
        await poll(page, "() => document.getElementById('status').classList.contains('error')",
                   what="the refusal")
        assert await page.text_content("#status") == \
               "Cannot open room board-meeting: room 'board-meeting' is not allowed on this captions page"
        await page.click("#refresh-rooms")
        rooms = await page.evaluate("fetch('/api/rooms').then(r => r.json())")
    finally:
        await outsider.room.disconnect()
    assert "board-meeting" not in [r["name"] for r in rooms["rooms"]]
    assert await page.eval_on_selector_all("#room-list option", "els => els.map(e => e.value)") == \
           [r["name"] for r in rooms["rooms"]]
    assert await page.locator("#captions .caption").count() == 0
