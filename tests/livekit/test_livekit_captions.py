"""The captions worker against a real livekit-server: speakers publish espeak-ng speech as microphone tracks,
a viewer reads ``lk.transcription`` the way LiveKit front ends do. (The CLI worker: test_captions_cli.py.)"""
from __future__ import annotations

import asyncio

import pytest

from tests.livekit.livekit_testkit import (CALL, LIGHTS, MESSAGE, MODEL, TIMER, TRANSPORT_WORD_ERRORS, Speaker, Viewer,
                                           finals_match, until, utterance, word_errors)

# realtime: the captions worker must keep up with WebRTC audio; scripts/test.sh runs these in a process of their own
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.realtime]


@pytest.fixture(scope="module")
async def worker(livekit_server, engine):
    """The captions worker of ``parakeet-stream captions``, in this process (jobs run in threads)."""
    from parakeet_services.captions import CaptionsConfig, build_server

    config = CaptionsConfig(url=livekit_server.url, api_key=livekit_server.api_key,
                            api_secret=livekit_server.api_secret, model=MODEL, chunk_ms=engine.info.chunk_ms,
                            http_host="127.0.0.1", http_port=0)
    assert config.engine() is engine
    server = build_server(config)
    runner = asyncio.create_task(server.run())
    await until(lambda: server.id != "unregistered", what="worker registration")
    yield server
    await server.aclose()
    await runner


async def test_speaker_gets_captions_with_identity_track_and_segments(livekit_server, worker, speech, engine):
    viewer = await Viewer().join(livekit_server, "room-one")
    alice = await Speaker("alice").join(livekit_server, "room-one")
    try:
        await until(lambda: engine.active_streams >= 1, what="the worker subscribing to alice's microphone")
        assert worker.load_fnc(worker) == 1 / 64  # live streams / capacity: what LiveKit dispatches on
        await alice.say(utterance(speech, TIMER))
        await until(lambda: finals_match(viewer.finals("alice"), [TIMER]),
                    what=lambda: f"alice's final caption: {viewer.captions}")
    finally:
        await alice.room.disconnect()
        await viewer.room.disconnect()

    final = next(c for c in viewer.captions if c.final)
    assert (final.sender, final.track_id) == ("alice", alice.track_sid)
    assert word_errors(TIMER, final.text) <= TRANSPORT_WORD_ERRORS, final.text
    assert final.segment_id.startswith("SG_")
    interims = [c for c in viewer.captions if not c.final and c.segment_id == final.segment_id]
    assert interims and all(final.text.startswith(c.text) for c in interims)  # streamed text only grows
    assert {(c.sender, c.track_id) for c in viewer.captions} == {("alice", alice.track_sid)}
    await until(lambda: engine.active_streams == 0, what="alice's engine stream to close")


async def test_two_speakers_in_one_room_and_two_rooms_at_once(livekit_server, worker, speech, engine):
    viewer_a = await Viewer().join(livekit_server, "room-a")
    viewer_b = await Viewer().join(livekit_server, "room-b")
    bob = await Speaker("bob").join(livekit_server, "room-a")
    carol = await Speaker("carol").join(livekit_server, "room-a")
    dave = await Speaker("dave").join(livekit_server, "room-b")
    speakers = (bob, carol, dave)
    try:
        await until(lambda: engine.active_streams == 3, what="three captioned microphones")
        await asyncio.gather(bob.say(utterance(speech, CALL)),  # overlapping speech, first words apart
                             carol.say(utterance(speech, LIGHTS, lead=1.4)),
                             dave.say(utterance(speech, TIMER, lead=1.8)))
        await until(lambda: finals_match(viewer_a.finals("bob"), [CALL])
                    and finals_match(viewer_a.finals("carol"), [LIGHTS])
                    and finals_match(viewer_b.finals("dave"), [TIMER]),
                    what=lambda: f"each speaker's final caption: bob {viewer_a.finals('bob')}, carol "
                                 f"{viewer_a.finals('carol')}, dave {viewer_b.finals('dave')}")
    finally:
        for p in (*speakers, viewer_a, viewer_b):
            await p.room.disconnect()

    assert {(c.sender, c.track_id) for c in viewer_a.captions} == {("bob", bob.track_sid), ("carol", carol.track_sid)}
    assert {(c.sender, c.track_id) for c in viewer_b.captions} == {("dave", dave.track_sid)}
    await until(lambda: engine.active_streams == 0, what="all engine streams to close")


async def test_speaker_leaving_mid_sentence_frees_the_stream_without_error(livekit_server, worker, speech, engine,
                                                                         caplog):
    viewer = await Viewer().join(livekit_server, "room-leave")
    erin = await Speaker("erin").join(livekit_server, "room-leave")
    frank = await Speaker("frank").join(livekit_server, "room-leave")
    try:
        await until(lambda: engine.active_streams == 2, what="two captioned microphones")
        await erin.say(utterance(speech, MESSAGE), stop_after=220)  # the lead and about half of the sentence
        await until(lambda: any(c.sender == "erin" for c in viewer.captions), what="erin's first interim")
        await erin.room.disconnect()
        # what she said before leaving is still decoded and closed by a final caption (no interim left hanging)
        await until(lambda: viewer.finals("erin"), what=lambda: f"erin's final caption after she left: {viewer.captions}")
        await until(lambda: engine.active_streams == 1, what="erin's engine stream to be freed")
        await frank.say(utterance(speech, CALL))
        await until(lambda: finals_match(viewer.finals("frank"), [CALL]),
                    what=lambda: f"frank's caption after erin left: {viewer.captions}")
    finally:
        await frank.room.disconnect()
        await viewer.room.disconnect()

    erin = [c for c in viewer.captions if c.sender == "erin"]
    final = next(c for c in erin if c.final)  # her interims' segment, finalized rather than abandoned
    assert final.text and [c.segment_id for c in erin if not c.final] == [final.segment_id] * (len(erin) - 1)
    assert all(final.text.startswith(c.text) for c in erin if not c.final)
    assert [r.getMessage() for r in caplog.records
            if r.levelname in ("ERROR", "CRITICAL") and r.name.startswith(("livekit", "parakeet"))] == []
    await until(lambda: engine.active_streams == 0, what="all engine streams to close")
