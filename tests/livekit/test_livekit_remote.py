"""``parakeet.STT(base_url=...)``: the same LiveKit contract as in process, against a real ``parakeet-stream serve``
subprocess on loopback (interims, finals with word times, flush, usage, recognize, live endpointing), and its
failure behaviour: a wrong key, a full server (1013), a server killed and restarted, a lagging session (4010)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from livekit.agents import APIConnectOptions, stt as lkstt
from livekit.plugins import parakeet
import parakeet_stream as ps
from tests.livekit.livekit_testkit import ALARM, CALL, LIGHTS, MODEL, TIMER, collect, frames, run_stream, silence
from tests.livekit.test_livekit_stt import assert_paired, kinds, pcm16
from tests.serve_process import ROOT, ServeProcess

T = lkstt.SpeechEventType
KEY = "remote-test-key-0123456789"
# tests push audio faster than real time: a roomy lag budget keeps the server from ending those sessions (4010)
ROOMY = {"lag_warning_seconds": "60", "lag_hard_seconds": "120"}


def offline_words(engine, audio: np.ndarray, offset: float = 0.0) -> list[tuple[str, float, float]]:
    """The engine's words for ``audio`` as the server sends them (times rounded to the millisecond)."""
    return [(w.text, round(w.start, 3) + offset, round(w.end, 3) + offset) for w in engine.transcribe(audio).words]


def timed(words) -> list[tuple[str, float, float]]:
    return [(str(w), round(w.start_time - w.start_time_offset, 6), round(w.end_time - w.start_time_offset, 6))
            for w in words]


@pytest.fixture(scope="module")
def server():
    with ServeProcess(max_sessions=8, api_key=KEY) as process:
        yield process


@pytest.fixture(scope="module")
def stt(server):
    return parakeet.STT(model=MODEL, base_url=server.url, api_key=KEY, session_params=ROOMY)


async def test_remote_utterance_gives_start_interims_final_end(stt, engine, speech):
    audio = np.concatenate([speech(TIMER), silence(1.5)])
    events = await run_stream(stt, frames(audio))

    k = kinds(events)
    assert k[0] == T.START_OF_SPEECH
    assert k[-2:] == [T.FINAL_TRANSCRIPT, T.END_OF_SPEECH]
    assert set(k[1:-2]) == {T.INTERIM_TRANSCRIPT}
    interims = [e.alternatives[0] for e in events if e.type == T.INTERIM_TRANSCRIPT]
    assert interims[-1].text == TIMER
    assert all(TIMER.startswith(i.text) for i in interims)
    assert [str(w) for w in interims[-1].words] == TIMER.split()
    final = next(e for e in events if e.type == T.FINAL_TRANSCRIPT)
    data = final.alternatives[0]
    assert (data.text, data.language) == (TIMER, "en")
    assert timed(data.words) == offline_words(engine, pcm16(audio))
    assert data.start_time == data.words[0].start_time
    start = next(e for e in events if e.type == T.START_OF_SPEECH)
    assert final.request_id.startswith("PK_") and final.request_id == start.request_id
    assert stt.remote and stt.engine is None


async def test_remote_flush_finalizes_and_keeps_the_stream_running(stt, speech):
    first, second = speech(CALL), np.concatenate([speech(LIGHTS), silence(0.5)])
    first_frames = frames(first)
    events = await run_stream(stt, first_frames + frames(second), flush_after=len(first_frames))

    assert_paired(events)
    finals = [e.alternatives[0] for e in events if e.type == T.FINAL_TRANSCRIPT]
    assert [f.text for f in finals] == [CALL, LIGHTS]
    assert kinds(events).count(T.START_OF_SPEECH) == 2
    first_seconds = len(first) / 16000
    assert finals[1].words[0].start_time >= first_seconds


async def test_remote_usage_reports_every_five_seconds_of_audio(stt, speech):
    audio = np.concatenate([speech(TIMER), silence(7.0 - len(speech(TIMER)) / 16000)])
    metrics = []
    stt.on("metrics_collected", metrics.append)
    try:
        events = await run_stream(stt, frames(audio))
    finally:
        stt.off("metrics_collected", metrics.append)
    assert [e.recognition_usage.audio_duration for e in events if e.type == T.RECOGNITION_USAGE] == [5.0, 2.0]
    assert [(m.audio_duration, m.metadata.model_name, m.metadata.model_provider) for m in metrics] == [
        (5.0, MODEL, "parakeet-stream"), (2.0, MODEL, "parakeet-stream")]


async def test_remote_48k_stereo_frames_are_downmixed_and_resampled_by_the_server(stt, engine, speech):
    left = np.concatenate([speech(LIGHTS, 48000), silence(1.0, 48000)])
    stereo = np.stack([left, 0.5 * left], axis=1)
    events = await run_stream(stt, frames(stereo, rate=48000, channels=2, frame_ms=10))

    data = next(e for e in events if e.type == T.FINAL_TRANSCRIPT).alternatives[0]
    assert data.text == LIGHTS
    pcm = (np.clip(stereo, -1, 1) * 32767).astype(np.int16).astype(np.float32)
    mono = np.round(pcm.mean(axis=1)).astype(np.float32) / 32768.0  # what the client sends: int16 mean, rounded
    assert timed(data.words) == [(w.text, round(w.start, 3), round(w.end, 3))
                                 for w in engine.transcribe(mono, 48000).words]
    assert [e.recognition_usage.audio_duration for e in events if e.type == T.RECOGNITION_USAGE] == [
        len(left) / 48000]


async def test_remote_silence_produces_no_transcript(stt):
    events = await run_stream(stt, frames(silence(3.0)))
    assert [(e.type, e.recognition_usage.audio_duration) for e in events] == [(T.RECOGNITION_USAGE, 3.0)]


async def test_closing_mid_utterance_ends_the_server_session(stt, server, speech):
    import websockets

    async def active_sessions() -> int:
        async with websockets.connect(f"{server.url}/health") as ws:
            return json.loads(await ws.recv())["active_sessions"]

    stream = stt.stream()
    for f in frames(speech(TIMER))[:40]:
        stream.push_frame(f)
    seen = []
    async for ev in stream:
        seen.append(ev.type)
        if ev.type == T.INTERIM_TRANSCRIPT:
            break
    assert seen[0] == T.START_OF_SPEECH and await active_sessions() == 1
    await stream.aclose()
    for _ in range(200):
        if await active_sessions() == 0:
            break
        await asyncio.sleep(0.02)
    assert await active_sessions() == 0


async def test_no_server_is_a_retryable_connection_error_until_the_retries_run_out(speech):
    from tests.dalston.kit import free_port

    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    plugin = parakeet.STT(model=MODEL, base_url=url)
    errors = []
    plugin.on("error", errors.append)
    with pytest.raises(Exception):
        await run_stream(plugin, frames(speech(CALL)), conn_options=APIConnectOptions(max_retry=1, retry_interval=0.1))
    refused = (f"parakeet: cannot connect to {url}/session: ConnectionRefusedError: [Errno 111] Connect call failed "
               f"('127.0.0.1', {url.rsplit(':', 1)[1]})")
    assert [(type(e.error).__name__, str(e.error), e.recoverable) for e in errors] == [
        ("APIConnectionError", refused, True),
        ("APIConnectionError", refused, False),
    ]


async def test_remote_recognize_transcribes_a_buffer(stt, engine, speech):
    audio = speech(ALARM)
    event = await stt.recognize(frames(audio))
    data = event.alternatives[0]
    assert (event.type, data.text, data.language) == (T.FINAL_TRANSCRIPT, ALARM, "en")
    assert timed(data.words) == offline_words(engine, pcm16(audio))


async def test_remote_endpointing_update_retunes_the_open_session(server, speech):
    """The in-process test's case, over the wire (a ``config`` message on the open session)."""
    opts = lambda ms: ps.EndpointingOptions(vad=True, min_silence_ms=ms, trailing_blank_ms=None, eou=False)  # noqa: E731
    first, rest = frames(speech(CALL)), frames(np.concatenate([silence(1.0), speech(LIGHTS), silence(2.5)]))

    async def finals(update: bool) -> list[str]:
        plugin = parakeet.STT(model=MODEL, base_url=server.url, api_key=KEY, session_params=ROOMY,
                              endpointing=opts(500))
        stream = plugin.stream()
        for f in first:
            stream.push_frame(f)
        if update:
            plugin.update_options(endpointing=opts(2000))
        for f in rest:
            stream.push_frame(f)
        stream.end_input()
        events = await collect(stream)
        assert_paired(events)
        return [e.alternatives[0].text for e in events if e.type == T.FINAL_TRANSCRIPT]

    assert await finals(update=False) == [CALL, LIGHTS]
    assert await finals(update=True) == [f"{CALL} {LIGHTS}"]


async def test_a_wrong_key_is_refused_and_not_retried(server, speech):
    plugin = parakeet.STT(model=MODEL, base_url=server.url, api_key="not-the-key")
    errors = []
    plugin.on("error", errors.append)
    with pytest.raises(Exception):
        await run_stream(plugin, frames(speech(CALL)), conn_options=APIConnectOptions(max_retry=3, retry_interval=0.1))
    assert [(type(e.error).__name__, e.error.status_code, e.error.message, e.recoverable) for e in errors] == [
        ("APIStatusError", 1008, f"parakeet: {server.url}/session closed the session with 1008 'unauthorized': the "
                                 "server refused the request (wrong path or API key)", False)]
    assert "not-the-key" not in repr(plugin._remote)


def test_remote_mode_needs_a_ws_url():
    with pytest.raises(ValueError) as e:
        parakeet.STT(base_url="http://127.0.0.1:9000")
    assert str(e.value) == "parakeet-stream server URL must start with ws:// or wss://, got 'http://127.0.0.1:9000'"


def test_remote_mode_loads_neither_torch_nor_nemo(server, speech, tmp_path):
    """An agent process in remote mode transcribes without importing torch or NeMo."""
    wav = tmp_path / "call.npy"
    np.save(wav, np.concatenate([speech(CALL), silence(1.0)]))
    script = f"""
import asyncio, sys
import numpy as np
from livekit.plugins import parakeet
from tests.livekit.livekit_testkit import frames, collect

async def main():
    stt = parakeet.STT(base_url={server.url!r}, api_key={KEY!r})
    stream = stt.stream()
    for f in frames(np.load({str(wav)!r})):
        stream.push_frame(f)
    stream.end_input()
    events = [e for e in await collect(stream) if e.type.value == "final_transcript"]
    print(events[0].alternatives[0].text, "torch" in sys.modules, "nemo" in sys.modules)

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == f"{CALL} False False", out.stderr[-2000:]


# -- failures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def one_slot_server():
    with ServeProcess(max_sessions=1) as process:
        yield process


async def test_a_full_server_is_a_retryable_error_and_the_retry_recovers(one_slot_server, speech):
    import websockets

    blocker = await websockets.connect(f"{one_slot_server.url}/session")
    assert json.loads(await blocker.recv())["type"] == "session.begin"
    # all the audio is queued before the first attempt: replay all of it after the refusal
    plugin = parakeet.STT(model=MODEL, base_url=one_slot_server.url, session_params=ROOMY, max_replay_s=30)
    errors = []

    def free_the_slot(err) -> None:
        errors.append(err)
        asyncio.ensure_future(blocker.close())

    plugin.on("error", free_the_slot)
    events = await run_stream(plugin, frames(np.concatenate([speech(CALL), silence(1.0)])),
                              conn_options=APIConnectOptions(max_retry=5, retry_interval=0.5))
    assert [(type(e.error).__name__, e.error.status_code, e.error.message, e.recoverable) for e in errors] == [
        ("APIStatusError", 1013, f"parakeet: {one_slot_server.url}/session closed the session with 1013 'Server at "
                                 "capacity': the server is full or draining", True)]
    assert [e.alternatives[0].text for e in events if e.type == T.FINAL_TRANSCRIPT] == [CALL]
    assert_paired(events)


async def test_reconnects_after_the_server_is_killed_and_restarted(one_slot_server, engine, speech):
    """The first sentence is transcribed; the server is SIGKILLed; 2 s of silence and a second sentence are pushed
    while it is down; it restarts on the same port. The stream reconnects within ``conn_options``, drops the
    oldest 2 s (beyond ``max_replay_s``) with a count, replays the rest, and the second sentence comes out with its
    words at their place on the stream's clock."""
    first = np.concatenate([speech(CALL), silence(1.0)])
    gap, second = silence(2.0), np.concatenate([speech(LIGHTS), silence(1.0)])
    second_frames = frames(second)
    plugin = parakeet.STT(model=MODEL, base_url=one_slot_server.url, session_params=ROOMY,
                          max_replay_s=sum(f.duration for f in second_frames))
    stream = plugin.stream(conn_options=APIConnectOptions(max_retry=200, retry_interval=0.25, timeout=5))
    errors = []
    restarted = threading.Thread(target=one_slot_server.start)

    def while_down(err) -> None:
        errors.append(err)
        if len(errors) == 1:  # the connection is gone: what is pushed now waits for the reconnect
            for f in frames(gap) + second_frames:
                stream.push_frame(f)
            stream.end_input()
            restarted.start()

    plugin.on("error", while_down)
    for f in frames(first):
        stream.push_frame(f)
    events = []
    async for ev in stream:
        events.append(ev)
        if ev.type == T.END_OF_SPEECH and len(events) > 1 and not errors:
            one_slot_server.kill()
    restarted.join()

    finals = [e.alternatives[0] for e in events if e.type == T.FINAL_TRANSCRIPT]
    assert [f.text for f in finals] == [CALL, LIGHTS]
    assert_paired(events)
    assert errors[0].recoverable and errors[0].error.status_code == 1006
    assert {type(e.error).__name__ for e in errors[1:]} <= {"APIConnectionError"}
    assert stream.dropped_audio_seconds == pytest.approx(2.0)
    # the new session starts at the replayed audio, which lies after the first sentence and the dropped gap
    assert timed(finals[1].words) == offline_words(engine, pcm16(second))
    offsets = {w.start_time_offset for w in finals[1].words}
    assert len(offsets) == 1 and offsets.pop() == pytest.approx(len(first) / 16000 + 2.0, abs=0.01)


async def test_a_session_ended_for_lag_is_not_retried_and_says_why(server, speech):
    # the server sleeps 0.2 s before each 20 ms frame: it falls behind at once
    slow = {"debug_chunk_sleep_initial_seconds": "0.2", "lag_warning_seconds": "0.1", "lag_hard_seconds": "0.2",
            "lag_hard_grace_seconds": "0"}
    plugin = parakeet.STT(model=MODEL, base_url=server.url, api_key=KEY, session_params=slow)
    errors = []
    plugin.on("error", errors.append)
    stream = plugin.stream(conn_options=APIConnectOptions(max_retry=3, retry_interval=0.1))
    for f in frames(np.concatenate([speech(CALL), silence(1.0)])):
        stream.push_frame(f)  # no end_input: after `end` the server finishes instead of measuring lag
    with pytest.raises(Exception):
        await collect(stream)
    [err] = errors
    assert (type(err.error).__name__, err.error.status_code, err.recoverable) == ("APIStatusError", 4010, False)
    assert err.error.message.startswith(
        f"parakeet: {server.url}/session closed the session with 4010 'Lag budget exceeded': the server fell too "
        "far behind this session's audio and ended it; a new session would start as far behind (lag_exceeded: "
        "Processing fell ")
