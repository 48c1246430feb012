"""The captions worker against a real livekit-server: speakers publish espeak-ng speech as microphone tracks,
a viewer reads ``lk.transcription`` the way LiveKit front ends do."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from livekit import rtc
from tests.livekit.livekit_testkit import CALL, LIGHTS, MESSAGE, MODEL, TIMER, frames, silence, until

# realtime: the captions worker must keep up with WebRTC audio; scripts/test.sh runs these in a process of their own
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.realtime]


@dataclass(frozen=True)
class Caption:
    sender: str
    text: str
    final: bool
    segment_id: str
    track_id: str


def agents_in(room: rtc.Room) -> list[str]:
    return [p.identity for p in room.remote_participants.values()
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT]


class Viewer:
    """A participant that records every ``lk.transcription`` text stream, as ``useTranscriptions()`` does."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.captions: list[Caption] = []
        self._reads: set[asyncio.Task] = set()

    async def join(self, server, room: str) -> Viewer:
        self.room.register_text_stream_handler("lk.transcription", self._on_stream)
        # no audio subscription: only the captions agent subscribes to the speakers' microphones
        await self.room.connect(server.url, server.token("viewer", room), rtc.RoomOptions(auto_subscribe=False))
        return self

    def _on_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            a = reader.info.attributes
            self.captions.append(Caption(sender, text, a["lk.transcription_final"] == "true", a["lk.segment_id"],
                                         a["lk.transcribed_track_id"]))
        task = asyncio.create_task(read())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    def finals(self, sender: str) -> list[str]:
        return [c.text for c in self.captions if c.final and c.sender == sender]


class Speaker:
    """A participant publishing a microphone track fed with synthesized speech in real time."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.room = rtc.Room()
        self.source = rtc.AudioSource(48000, 1)
        self.track_sid = ""
        self.heard = asyncio.Event()  # someone (the captions agent) subscribed to the microphone
        self.room.on("local_track_subscribed", lambda track: self.heard.set())

    async def join(self, server, room: str) -> Speaker:
        await self.room.connect(server.url, server.token(self.identity, room))
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        pub = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        self.track_sid = pub.sid
        return self

    async def say(self, audio: np.ndarray, *, stop_after: int | None = None) -> None:
        # capture_frame waits while the source's 1 s queue is full: that paces the audio in real time
        for i, f in enumerate(frames(audio, rate=48000, frame_ms=10)):
            if stop_after is not None and i == stop_after:
                return
            await self.source.capture_frame(f)


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


def utterance(speech, sentence: str) -> np.ndarray:
    return np.concatenate([silence(0.3, 48000), speech(sentence, 48000), silence(1.5, 48000)])


async def test_speaker_gets_captions_with_identity_track_and_segments(livekit_server, worker, speech, engine):
    viewer = await Viewer().join(livekit_server, "room-one")
    alice = await Speaker("alice").join(livekit_server, "room-one")
    try:
        await until(lambda: engine.active_streams >= 1, what="the worker subscribing to alice's microphone")
        assert worker.load_fnc(worker) == 1 / 64  # live streams / capacity: what LiveKit dispatches on
        await alice.say(utterance(speech, TIMER))
        await until(lambda: viewer.finals("alice") == [TIMER], what="alice's final caption")
    finally:
        await alice.room.disconnect()
        await viewer.room.disconnect()

    final = next(c for c in viewer.captions if c.final)
    assert (final.sender, final.text, final.track_id) == ("alice", TIMER, alice.track_sid)
    assert final.segment_id.startswith("SG_")
    interims = [c for c in viewer.captions if not c.final and c.segment_id == final.segment_id]
    assert interims and all(TIMER.startswith(c.text) for c in interims)
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
        await asyncio.gather(bob.say(utterance(speech, CALL)), carol.say(utterance(speech, LIGHTS)),
                             dave.say(utterance(speech, TIMER)))
        await until(lambda: (viewer_a.finals("bob"), viewer_a.finals("carol"), viewer_b.finals("dave"))
                    == ([CALL], [LIGHTS], [TIMER]),
                    what=lambda: f"each speaker's final caption: {viewer_a.captions} {viewer_b.captions}")
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
        await erin.say(utterance(speech, MESSAGE), stop_after=150)  # about half of the sentence
        await until(lambda: any(c.sender == "erin" for c in viewer.captions), what="erin's first interim")
        await erin.room.disconnect()
        await until(lambda: engine.active_streams == 1, what="erin's engine stream to be freed")
        await frank.say(utterance(speech, CALL))
        await until(lambda: viewer.finals("frank") == [CALL], what="frank's caption after erin left")
    finally:
        await frank.room.disconnect()
        await viewer.room.disconnect()

    assert [r.getMessage() for r in caplog.records
            if r.levelname in ("ERROR", "CRITICAL") and r.name.startswith(("livekit", "parakeet"))] == []
    await until(lambda: engine.active_streams == 0, what="all engine streams to close")


async def test_captions_command_joins_by_agent_name_and_drains_on_sigterm(livekit_server, speech, tmp_path):
    """``parakeet-stream captions`` as an operator runs it: explicit dispatch, then a graceful stop."""
    import os
    import signal
    import subprocess
    import sys

    from livekit import api

    log_path = tmp_path / "captions.log"
    env = {**os.environ, "LIVEKIT_URL": livekit_server.url, "LIVEKIT_API_KEY": livekit_server.api_key,
           "LIVEKIT_API_SECRET": livekit_server.api_secret}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "parakeet_services.cli", "captions", "--model", MODEL,
                                 "--agent-name", "cli-captions", "--http-port", "0", "--max-streams", "4"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await until(lambda: b"registered worker" in log_path.read_bytes() or proc.poll() is not None,
                    what="the captions command to register")
        assert proc.poll() is None, log_path.read_text()
        viewer = await Viewer().join(livekit_server, "room-cli")
        gina = await Speaker("gina").join(livekit_server, "room-cli")
        async with api.LiveKitAPI(livekit_server.url.replace("ws://", "http://"), livekit_server.api_key,
                                  livekit_server.api_secret) as lkapi:
            await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="cli-captions", room="room-cli"))
        await until(lambda: any(p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                                for p in viewer.room.remote_participants.values()), what="the dispatched agent")
        await asyncio.wait_for(gina.heard.wait(), 60)  # the agent subscribed: nothing she says is lost
        await gina.say(utterance(speech, MESSAGE))
        await until(lambda: viewer.finals("gina") == [MESSAGE],
                    what=lambda: "gina's caption from the CLI worker (finals so far, with segment and track ids: "
                                 f"{[(c.text, c.segment_id, c.track_id) for c in viewer.captions if c.final]}; agents "
                                 f"in the room: {agents_in(viewer.room)}; worker log: {log_path.read_text()[-3000:]})")
        await gina.room.disconnect()
        await viewer.room.disconnect()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert rc == 0, out
    assert "draining: no new rooms; waiting for running ones" in out
