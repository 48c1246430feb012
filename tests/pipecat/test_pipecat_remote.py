"""``ParakeetSTTService(base_url=...)``: a real Pipecat pipeline transcribing through a real ``parakeet-stream serve``
subprocess on loopback, and its failure behaviour (a wrong key; the server killed mid-call and restarted)."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.processors.audio.vad_processor import VADProcessor

import parakeet_stream as ps
from parakeet_pipecat import ParakeetSTTService
from tests.pipecat.pipeline_kit import Recorded, audio_frames, run_pipeline
from tests.pipecat.test_pipecat_stt import VAD_ONLY, by_segment, utterances
from tests.serve_process import ServeProcess
from tests.support import silence, speech

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "pipecat-remote-key-0123456789"
TRANSCRIPTS = (InterimTranscriptionFrame, TranscriptionFrame)
ROOMY = {"lag_warning_seconds": "60", "lag_hard_seconds": "120"}  # frames are queued faster than real time


@pytest.fixture(scope="module")
def server():
    with ServeProcess(max_sessions=4, api_key=KEY) as process:
        yield process


async def test_remote_vad_stop_finalizes_each_utterance_with_interims_first(server):
    stt = ParakeetSTTService(base_url=server.url, api_key=KEY, endpointing=VAD_ONLY, session_params=ROOMY)
    sentences = ("call me at seven thirty", "set a timer for ten minutes")
    rec = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt],
                             stt, audio_frames(utterances(*sentences), user_id="caller-7"))

    segments = by_segment(rec.of(*TRANSCRIPTS))
    assert [final.text for _, final in segments] == list(sentences)
    for (interims, final), sentence in zip(segments, sentences):
        assert interims[-1] == sentence
        assert all(b.startswith(a) for a, b in zip(interims, interims[1:]))
        assert (final.finalized, final.result.reason, final.user_id) == (True, "flush", "caller-7")
    assert stt.remote and stt.engine is None and rec.errors == []


async def test_remote_end_frame_drains_the_tail(server):
    stt = ParakeetSTTService(base_url=server.url, api_key=KEY, endpointing=VAD_ONLY, session_params=ROOMY)
    rec = await run_pipeline([stt], stt, audio_frames(speech("please open the window")))
    [(_, final)] = by_segment(rec.of(*TRANSCRIPTS))
    assert (final.text, final.result.reason) == ("please open the window", "finish")


async def test_a_wrong_key_is_a_permanent_error(server):
    stt = ParakeetSTTService(base_url=server.url, api_key="not-the-key", endpointing=VAD_ONLY)
    rec = await run_pipeline([stt], stt, audio_frames(speech("please open the window")))
    assert rec.of(*TRANSCRIPTS) == []
    assert rec.errors[0].error == (
        f"{stt}: could not open a session on the parakeet-stream server: {server.url}/session closed the session "
        "with 1008 'unauthorized': the server refused the request (wrong path or API key)")


async def test_the_session_is_reopened_after_the_server_is_killed_and_restarted():
    """The server dies after the first sentence's final; Pipecat buffers the audio that arrives meanwhile; the
    service reopens a session once the server is back and the second sentence is transcribed."""
    own = ServeProcess(max_sessions=1)
    own.start()
    try:
        stt = ParakeetSTTService(base_url=own.url, endpointing=ps.EndpointingOptions(eou=False, trailing_blank_ms=800),
                                 session_params=ROOMY, max_replay_s=30)
        first = audio_frames(np.concatenate([silence(0.3), speech("call me at seven thirty"), silence(1.5)]))
        second = audio_frames(np.concatenate([speech("set a timer for ten minutes"), silence(1.5)]))
        restarted = threading.Thread(target=own.start)
        rec = Recorded()

        def finals() -> int:
            return len(rec.of(TranscriptionFrame))

        async def kill_then_feed(worker) -> bool:
            while finals() < 1:
                await asyncio.sleep(0.05)
            own.kill()
            while not stt._reconnecting:  # the service noticed and is reopening: audio is buffered from now on
                await asyncio.sleep(0.02)
            await worker.queue_frames(second)
            restarted.start()
            while finals() < 2:
                await asyncio.sleep(0.1)
            return False

        await asyncio.wait_for(run_pipeline([stt], stt, first, before_end=kill_then_feed, recorded=rec), 240)
        restarted.join()
        assert [f.text for f in rec.of(TranscriptionFrame)] == ["call me at seven thirty", "set a timer for ten minutes"]
        assert stt.dropped_audio_seconds == 0.0
        assert any("remote session ended" in e.error and "1006" in e.error for e in rec.errors)
    finally:
        own.stop()


async def test_audio_buffered_while_reconnecting_is_replayed_up_to_max_replay_s():
    """Of what Pipecat buffered during a reconnect, the newest ``max_replay_s`` stays (the base class replays it);
    the older frames are dropped and counted."""
    from pipecat.frames.frames import InputAudioRawFrame
    from pipecat.processors.frame_processor import FrameDirection

    stt = ParakeetSTTService(base_url="ws://127.0.0.1:9", max_replay_s=0.5)  # never connected here
    frames = [InputAudioRawFrame(audio=bytes(640), sample_rate=16000, num_channels=1) for _ in range(40)]  # 0.8 s
    stt._reconnect_audio_buffer = [(f, FrameDirection.DOWNSTREAM) for f in frames]
    stt._trim_reconnect_buffer()
    assert [f for f, _ in stt._reconnect_audio_buffer] == frames[15:]
    assert stt.dropped_audio_seconds == pytest.approx(0.3)
