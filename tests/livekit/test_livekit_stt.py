"""Contract of ``livekit.plugins.parakeet.STT`` as LiveKit Agents 1.8 consumes it (no server needed)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from livekit.agents import APIConnectOptions, stt as lkstt
from livekit.plugins import parakeet
import parakeet_stream as ps
from tests.livekit.livekit_testkit import ALARM, CALL, CHUNK_MS, LIGHTS, MODEL, TIMER, collect, frames, run_stream, silence, until

T = lkstt.SpeechEventType


def offline_words(engine, audio: np.ndarray, rate: int = 16000, offset: float = 0.0):
    return [(w.text, w.start + offset, w.end + offset) for w in engine.transcribe(audio, rate).words]


def timed(words) -> list[tuple[str, float, float]]:
    """Words on the stream's own clock (the offset each word carries taken off again)."""
    return [(str(w), w.start_time - w.start_time_offset, w.end_time - w.start_time_offset) for w in words]


def kinds(events) -> list[T]:
    return [e.type for e in events if e.type != T.RECOGNITION_USAGE]


def assert_paired(events) -> None:
    """START and END strictly alternate, starting with START, and every FINAL lies inside a pair."""
    speaking = False
    for k in kinds(events):
        if k == T.START_OF_SPEECH:
            assert not speaking, "two START_OF_SPEECH without END_OF_SPEECH between them"
            speaking = True
        elif k == T.END_OF_SPEECH:
            assert speaking, "END_OF_SPEECH without START_OF_SPEECH"
            speaking = False
        else:
            assert speaking, f"{k} outside START/END"
    assert not speaking


def pcm16(audio: np.ndarray) -> np.ndarray:
    """What the engine receives from int16 frames (the test's own float audio quantised the same way)."""
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def stt(engine):
    return parakeet.STT(model=MODEL, chunk_ms=CHUNK_MS)


async def test_utterance_gives_start_interims_final_end(stt, engine, speech):
    audio = np.concatenate([speech(TIMER), silence(1.5)])
    events = await run_stream(stt, frames(audio))

    k = kinds(events)
    assert k[0] == T.START_OF_SPEECH
    assert k[-2:] == [T.FINAL_TRANSCRIPT, T.END_OF_SPEECH]
    assert set(k[1:-2]) == {T.INTERIM_TRANSCRIPT}
    interims = [e.alternatives[0].text for e in events if e.type == T.INTERIM_TRANSCRIPT]
    assert interims[-1] == TIMER
    assert all(TIMER.startswith(t) for t in interims)
    assert [len(t) for t in interims] == sorted(len(t) for t in interims)
    final = next(e for e in events if e.type == T.FINAL_TRANSCRIPT)
    data = final.alternatives[0]
    assert (data.text, data.language) == (TIMER, "en")
    assert timed(data.words) == offline_words(engine, pcm16(audio))
    assert data.start_time == data.words[0].start_time
    start = next(e for e in events if e.type == T.START_OF_SPEECH)
    assert final.request_id.startswith("PK_") and final.request_id == start.request_id


async def test_times_are_seconds_shifted_by_start_time_offset(stt, engine, speech):
    audio = np.concatenate([speech(CALL), silence(1.0)])
    events = await run_stream(stt, frames(audio), offset=12.5)

    data = next(e for e in events if e.type == T.FINAL_TRANSCRIPT).alternatives[0]
    assert data.text == CALL
    # the base class adds the wall time between stream() and its first attempt (microseconds) to the offset
    offset = data.words[0].start_time_offset
    assert offset == pytest.approx(12.5, abs=0.05)
    assert [w.start_time_offset for w in data.words] == [offset] * len(CALL.split())
    assert [(w.start_time, w.end_time) for w in data.words] == [
        (s + offset, e + offset) for _, s, e in offline_words(engine, pcm16(audio))]
    assert 12.5 < data.start_time < data.end_time <= offset + len(audio) / 16000


async def test_flush_finalizes_and_keeps_the_stream_running(stt, engine, speech):
    first, second = speech(CALL), np.concatenate([speech(LIGHTS), silence(0.5)])
    first_frames = frames(first)
    events = await run_stream(stt, first_frames + frames(second), flush_after=len(first_frames))

    assert_paired(events)
    finals = [e.alternatives[0] for e in events if e.type == T.FINAL_TRANSCRIPT]
    assert [f.text for f in finals] == [CALL, LIGHTS]
    assert kinds(events).count(T.START_OF_SPEECH) == 2
    # one clock across the flush: the second utterance's words come after the first's audio
    first_seconds = sum(f.samples_per_channel for f in first_frames) / 16000
    assert finals[1].words[0].start_time >= first_seconds
    assert [str(w) for w in finals[1].words] == LIGHTS.split()


async def test_usage_reports_every_five_seconds_of_audio(stt, speech):
    audio = np.concatenate([speech(TIMER), silence(7.0 - len(speech(TIMER)) / 16000)])
    assert len(audio) == 7 * 16000
    metrics = []
    stt.on("metrics_collected", metrics.append)
    try:
        events = await run_stream(stt, frames(audio))
    finally:
        stt.off("metrics_collected", metrics.append)

    usage = [e.recognition_usage.audio_duration for e in events if e.type == T.RECOGNITION_USAGE]
    assert usage == [5.0, 2.0]
    assert [(m.streamed, m.audio_duration, m.metadata.model_name, m.metadata.model_provider) for m in metrics] == [
        (True, 5.0, MODEL, "parakeet-stream"), (True, 2.0, MODEL, "parakeet-stream")]


async def test_48k_stereo_frames_are_downmixed_and_resampled(stt, engine, speech):
    left = np.concatenate([speech(LIGHTS, 48000), silence(1.0, 48000)])
    stereo = np.stack([left, 0.5 * left], axis=1)
    events = await run_stream(stt, frames(stereo, rate=48000, channels=2, frame_ms=10))

    data = next(e for e in events if e.type == T.FINAL_TRANSCRIPT).alternatives[0]
    assert data.text == LIGHTS
    pcm = (np.clip(stereo, -1, 1) * 32767).astype(np.int16).astype(np.float32)
    mono = (pcm.mean(axis=1) / 32768.0).astype(np.float32)
    assert timed(data.words) == offline_words(engine, mono, rate=48000)
    assert [e.recognition_usage.audio_duration for e in events if e.type == T.RECOGNITION_USAGE] == [
        len(left) / 48000]


async def test_silence_produces_no_transcript(stt):
    events = await run_stream(stt, frames(silence(3.0)))
    assert [(e.type, e.recognition_usage.audio_duration) for e in events] == [(T.RECOGNITION_USAGE, 3.0)]


async def test_recognize_transcribes_a_buffer(stt, engine, speech):
    audio = speech(ALARM)
    event = await stt.recognize(frames(audio))

    assert event.type == T.FINAL_TRANSCRIPT
    data = event.alternatives[0]
    assert (data.text, data.language) == (ALARM, "en")
    assert timed(data.words) == offline_words(engine, pcm16(audio))


async def test_engine_full_is_a_retryable_error_and_the_retry_recovers(speech):
    import parakeet_stream as ps

    own = ps.Engine.load(ps.EngineConfig(model=MODEL, max_streams=1))
    try:
        blocker = own.open_stream()
        stt = parakeet.STT(engine=own)
        errors = []

        def free_the_slot(err) -> None:
            errors.append(err)
            blocker.close()
            while own.active_streams:  # the slot is released on the inference thread
                time.sleep(0.01)

        stt.on("error", free_the_slot)
        stream = stt.stream(conn_options=APIConnectOptions(max_retry=1, retry_interval=0.1))
        for f in frames(np.concatenate([speech(CALL), silence(1.0)])):
            stream.push_frame(f)
        stream.end_input()
        events = await collect(stream)

        assert [(type(e.error).__name__, str(e.error), e.recoverable) for e in errors] == [
            ("APIConnectionError",
             "parakeet: no free stream on the engine (caused by CapacityError: engine is full: 1 streams are "
             "open (max_streams=1))", True)]
        assert [e.alternatives[0].text for e in events if e.type == T.FINAL_TRANSCRIPT] == [CALL]
        assert_paired(events)
        while own.active_streams:
            await asyncio.sleep(0.01)
        assert own.active_streams == 0
    finally:
        own.close()


async def test_closing_mid_utterance_frees_the_engine_slot(stt, engine, speech):
    stream = stt.stream()
    for f in frames(speech(TIMER))[:40]:
        stream.push_frame(f)
    seen = []
    async for ev in stream:
        seen.append(ev.type)
        if ev.type == T.INTERIM_TRANSCRIPT:
            break
    assert seen[0] == T.START_OF_SPEECH and engine.active_streams == 1
    await stream.aclose()
    for _ in range(200):
        if engine.active_streams == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.active_streams == 0


def test_unsupported_language_is_refused_with_what_is_accepted():
    with pytest.raises(ValueError) as e:
        parakeet.STT(model=MODEL, language="de-DE")
    assert str(e.value) == (
        "language 'de-DE' is not supported by Parakeet streaming models; accepted: en "
        "(or a regional variant such as 'en-US')")


def test_capabilities_and_identity():
    s = parakeet.STT(model=MODEL)
    caps = s.capabilities
    assert (caps.streaming, caps.interim_results, caps.aligned_transcript, caps.manual_flush,
            caps.offline_recognize, caps.diarization) == (True, True, "word", True, True, False)
    assert (s.model, s.provider, s.label) == (MODEL, "parakeet-stream", "livekit.plugins.parakeet.stt.STT")


class QueueInput:
    """A ``voice.io.AudioInput`` fed by the test (a microphone that is quiet until frames are queued)."""

    def __new__(cls):
        from livekit.agents.voice import io

        class _Input(io.AudioInput):
            def __init__(self) -> None:
                super().__init__(label="test-frames")
                self.frames: asyncio.Queue = asyncio.Queue()

            async def __anext__(self):
                return await self.frames.get()

        return _Input()


async def test_agent_session_with_stt_turn_detection_ends_turns_on_the_models_eou(speech):
    """The demo model ends each utterance with ``<EOU>``: a 0.4 s pause, half what the trailing-blank rule needs,
    ends the turn."""
    from livekit.agents import Agent, AgentSession, StopResponse

    class Transcriber(Agent):
        async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
            turns.append(new_message.text_content)
            raise StopResponse()  # captions only: no LLM reply

    turns: list[str] = []
    transcripts: list[tuple[str, bool]] = []
    mic = QueueInput()
    session = AgentSession(stt=parakeet.STT(model=MODEL), vad=None, turn_handling={"turn_detection": "stt"})
    session.on("user_input_transcribed", lambda ev: transcripts.append((ev.transcript, ev.is_final)))
    session.input.audio = mic
    await session.start(agent=Transcriber(instructions="transcribe"))
    try:
        # the second utterance is spoken only after the first turn was committed (frames arrive faster than
        # real time here, so without this both would fall into one turn)
        for n, sentence in enumerate((TIMER, CALL), start=1):
            for f in frames(np.concatenate([speech(sentence), silence(0.4)])):
                mic.frames.put_nowait(f)
            await until(lambda: len(turns) == n, what=f"user turn {n}")
    finally:
        await session.aclose()

    assert [t for t, final in transcripts if final] == [TIMER, CALL]
    assert turns == [TIMER, CALL]
    interims = [t for t, final in transcripts if not final]
    assert interims[-1] == CALL and TIMER in interims


async def test_endpointing_update_retunes_the_open_stream(engine, speech):
    """``update_options(endpointing=...)`` with VAD kept on retunes the live engine stream: a 1 s pause that the
    starting 500 ms minimum silence would cut stays inside one utterance once it is 2000 ms (same request id, one
    START/END pair); before the change the same audio gives two utterances."""
    opts = lambda ms: ps.EndpointingOptions(vad=True, min_silence_ms=ms, trailing_blank_ms=None, eou=False)  # noqa: E731
    first, rest = frames(speech(CALL)), frames(np.concatenate([silence(1.0), speech(LIGHTS), silence(2.5)]))

    async def finals(update: bool) -> list[str]:
        plugin = parakeet.STT(model=MODEL, chunk_ms=CHUNK_MS, endpointing=opts(500))
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


async def test_a_first_stream_without_prewarm_keeps_the_audio_that_came_while_the_model_loaded(speech):
    """No ``prewarm()``: the first stream loads the model itself while the speaker talks in real time; the audio
    that arrives during the load is queued and decoded, not lost (one lane, which no other test asks for: a fresh
    engine, not the shared one the other tests use)."""
    stt = parakeet.STT(model=MODEL, chunk_ms=CHUNK_MS, max_streams=3, lanes=1)
    assert stt.engine is None
    audio = np.concatenate([speech(ALARM), silence(1.5)])
    stream = stt.stream()
    collecting = asyncio.ensure_future(collect(stream))
    for f in frames(audio):
        stream.push_frame(f)
        await asyncio.sleep(0.02)  # a live speaker
    stream.end_input()
    events = await collecting
    try:
        finals = [e.alternatives[0] for e in events if e.type == T.FINAL_TRANSCRIPT]
        assert [f.text for f in finals] == [ALARM]
        assert timed(finals[0].words) == offline_words(stt.engine, pcm16(audio))
    finally:
        stt.engine.close()
