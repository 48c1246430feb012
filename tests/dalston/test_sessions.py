"""``/session`` end to end: real WebSocket clients over loopback against the worker and the demo-model engine."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest
import soxr
import websockets

from tests.dalston.kit import Transcript, collect, frames, pcm16, run_session, session_url

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMER = "set a timer for twenty minutes"
CALL = "call me at five thirty tomorrow"
# Sentences the bundled demo model transcribes word for word in espeak-ng's en-us voice at 175 words per minute
# (the ``speech`` fixture; re-check them when the model changes: bench/sentences_of_tests.py). Not here, for instance:
# "please check the report today" ("their report": the two sound alike in espeak-ng voices).
SENTENCES = [
    "set a timer for twenty minutes", "call me at five thirty tomorrow", "my phone number is one two three four",
    "turn on the lights in the kitchen", "the code is seven eight nine", "meet me at the station at nine",
    "send a message to john and say i will be late", "the meeting is on monday at ten",
    "please read the report today", "turn off the radio in the office", "set an alarm for seven tomorrow morning",
    "i need three tickets next week", "call mary at eleven", "it costs fifty dollars and ten cents",
    "room twelve on floor three", "the temperature is twenty degrees today",
]
END = json.dumps({"type": "end"})
FLUSH = json.dumps({"type": "flush"})


def g711_encode(audio: np.ndarray, table: np.ndarray) -> bytes:
    """Nearest-code G.711 encoder built on the decoder table (the optimal quantiser for that table)."""
    order = np.argsort(table)
    values = table[order].astype(np.int32)
    x = np.clip(audio * 32768, -32768, 32767).astype(np.int32)
    idx = np.clip(np.searchsorted(values, x), 1, 255)
    nearer_left = (x - values[idx - 1]) <= (values[idx] - x)
    return order[np.where(nearer_left, idx - 1, idx)].astype(np.uint8).tobytes()


def encode(audio16k: np.ndarray, encoding: str, rate: int, channels: int) -> bytes:
    from parakeet_services.dalston.audio import ALAW_TO_INT16, ULAW_TO_INT16

    audio = soxr.resample(audio16k, 16000, rate).astype(np.float32) if rate != 16000 else audio16k
    if channels == 2:  # right channel half as loud: the down-mix is their mean
        audio = np.stack([audio, audio * 0.5], axis=1).reshape(-1)
    if encoding == "pcm_s16le":
        return pcm16(audio)
    if encoding == "pcm_f32le":
        return audio.astype("<f4").tobytes()
    return g711_encode(audio, ULAW_TO_INT16 if encoding == "mulaw" else ALAW_TO_INT16)


def assert_well_formed(t: Transcript) -> None:
    assert t.types[0] == "session.begin"
    assert t.types[-1] == "session.end"
    assert (t.close_code, t.close_reason) == (1000, "")
    for partial, following in zip(t.messages, t.messages[1:]):
        if partial["type"] == following["type"] == "transcript.partial":
            assert following["text"].startswith(partial["text"])  # cumulative, append-only


@pytest.mark.parametrize("encoding, rate, channels", [
    ("pcm_s16le", 16000, 1), ("pcm_f32le", 16000, 1), ("mulaw", 16000, 1), ("alaw", 16000, 1),
    ("pcm_s16le", 44100, 1), ("pcm_s16le", 16000, 2), ("pcm_f32le", 24000, 2), ("mulaw", 22050, 2),
])
async def test_each_encoding_rate_and_layout_transcribes(worker, speech, encoding: str, rate: int,
                                                         channels: int) -> None:
    data = encode(speech(TIMER), encoding, rate, channels)
    url = session_url(worker, session_id="sess_enc", encoding=encoding, sample_rate=rate, channels=channels,
                      enable_vad=False)
    t = await run_session(url, frames(data, 1000 * channels))  # 1000-byte frames: not aligned to 100 ms
    assert_well_formed(t)
    assert t.messages[0] == {"type": "session.begin", "session_id": "sess_enc", "config": {
        "sample_rate": rate, "encoding": encoding, "channels": channels, "language": "auto", "model": None}}
    assert t.final_text == TIMER
    width = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}[encoding] * channels
    assert t.messages[-1]["total_audio_seconds"] == round(len(data) / width / rate, 3)


async def test_sequence_words_and_partials(worker, speech, engine) -> None:
    audio = speech(TIMER)
    url = session_url(worker, session_id="sess_w", enable_vad=False, word_timestamps=True)
    t = await run_session(url, frames(pcm16(audio), 3200))
    assert_well_formed(t)
    assert set(t.types) == {"session.begin", "transcript.partial", "transcript.final", "session.end"}
    partials = t.of("transcript.partial")
    assert partials[-1]["text"] == TIMER
    assert all(TIMER.startswith(p["text"]) for p in partials)
    [final] = t.of("transcript.final")
    assert [w["word"] for w in final["words"]] == TIMER.split()
    # the words are the engine's own, on the audio clock
    offline = engine.transcribe(audio)
    assert [(w["word"], w["start"], w["end"]) for w in final["words"]] == \
        [(w.text, round(w.start, 3), round(w.end, 3)) for w in offline.words]
    assert (final["start"], final["end"]) == (final["words"][0]["start"], final["words"][-1]["end"])
    assert final["confidence"] == round(float(np.mean([w["confidence"] for w in final["words"]])), 4)
    assert partials[0]["start"] == final["start"]
    end = t.messages[-1]
    assert end["segments"] == [{"start": final["start"], "end": final["end"], "text": TIMER}]
    assert (end["transcript"], end["total_audio_seconds"]) == (TIMER, round(len(audio) / 16000, 3))
    assert end["total_speech_duration"] == round(final["end"] - final["start"], 3)
    assert end["total_duration"] > 0


async def test_words_and_partials_off(worker, speech) -> None:
    url = session_url(worker, enable_vad=False, interim_results=False, word_timestamps=False)
    t = await run_session(url, frames(pcm16(speech(TIMER)), 3200))
    assert_well_formed(t)
    assert t.types == ["session.begin", "transcript.final", "session.end"]
    assert t.of("transcript.final")[0]["text"] == TIMER
    assert "words" not in t.of("transcript.final")[0]


@pytest.mark.parametrize("control", ["flush", "commit"])
async def test_flush_and_commit_finalize_and_continue(worker, speech, control: str) -> None:
    chunks = [*frames(pcm16(speech(TIMER)), 3200), json.dumps({"type": control}), *frames(pcm16(speech(CALL)), 3200)]
    t = await run_session(session_url(worker, enable_vad=False, word_timestamps=True), chunks)
    assert_well_formed(t)
    first, second = t.of("transcript.final")
    assert (first["text"], second["text"]) == (TIMER, CALL)
    # one clock for the whole session: the second utterance starts after the first one's audio
    assert second["start"] >= round(len(speech(TIMER)) / 16000, 3)
    assert t.messages[-1]["transcript"] == f"{TIMER} {CALL}"


async def test_vad_events_bracket_each_utterance(worker, speech) -> None:
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([speech(TIMER), gap, speech(CALL), gap])
    t = await run_session(session_url(worker, enable_vad=True), frames(pcm16(audio), 3200))
    assert_well_formed(t)
    kinds = [k for k in t.types if k != "transcript.partial"]
    assert kinds == ["session.begin", "vad.speech_start", "vad.speech_end", "transcript.final",
                     "vad.speech_start", "vad.speech_end", "transcript.final", "session.end"]
    assert [f["text"] for f in t.of("transcript.final")] == [TIMER, CALL]
    starts, ends = t.of("vad.speech_start"), t.of("vad.speech_end")
    assert starts[0]["timestamp"] < ends[0]["timestamp"] < starts[1]["timestamp"] < ends[1]["timestamp"]


async def test_config_retunes_the_vad_of_the_live_session(worker, speech) -> None:
    """``config`` changes the VAD from the audio after it on. Between the two sentences Silero hears ~1.7 s of
    silence (the end of espeak-ng's audio, the fixture's 0.5 s tails and lead, 0.5 s more): the session's starting
    1000 ms splits them; 2000 ms, sent while the first sentence is still being spoken, keeps them in one utterance."""
    audio = pcm16(np.concatenate([speech(TIMER), np.zeros(8000, np.float32), speech(CALL),
                                  np.zeros(40000, np.float32)]))
    cut = 2 * (len(speech(TIMER)) - 8000 - 6000)  # bytes: ~0.4 s before the end of the spoken sentence
    first, rest = frames(audio[:cut], 3200), frames(audio[cut:], 3200)
    url = session_url(worker, enable_vad=True, min_silence_duration_ms=1000)
    split = await run_session(url, first + rest)
    joined = await run_session(url, first + [json.dumps({"type": "config", "min_silence_duration_ms": 2000})] + rest)
    assert [f["text"] for f in split.of("transcript.final")] == [TIMER, CALL]
    assert [f["text"] for f in joined.of("transcript.final")] == [f"{TIMER} {CALL}"]
    assert [k for k in joined.types if k.startswith("vad.")] == ["vad.speech_start", "vad.speech_end"]


async def test_vad_off_sends_no_vad_events(worker, speech) -> None:
    t = await run_session(session_url(worker, enable_vad=False), frames(pcm16(speech(TIMER)), 3200))
    assert_well_formed(t)
    assert not t.of("vad.speech_start") and not t.of("vad.speech_end")


async def test_clear_discards_audio_and_keeps_the_clock(worker, speech) -> None:
    first = speech(TIMER)
    chunks = [*frames(pcm16(first), 3200), json.dumps({"type": "clear"}), *frames(pcm16(speech(CALL)), 3200)]
    t = await run_session(session_url(worker, enable_vad=False), chunks)
    assert_well_formed(t)
    [final] = t.of("transcript.final")
    assert final["text"] == CALL
    assert final["start"] >= round(len(first) / 16000, 3)
    assert t.messages[-1]["total_audio_seconds"] == round((len(first) + len(speech(CALL))) / 16000, 3)


async def test_speech_timeline_compresses_silence(worker, speech) -> None:
    gap = np.zeros(32000, np.float32)
    chunks = [*frames(pcm16(np.concatenate([gap, speech(TIMER)])), 3200), FLUSH,
              *frames(pcm16(np.concatenate([gap, speech(CALL)])), 3200)]
    t = await run_session(session_url(worker, enable_vad=False, timeline="speech", word_timestamps=True), chunks)
    assert_well_formed(t)
    first, second = t.of("transcript.final")
    assert first["start"] == 0.0
    assert second["start"] == first["end"]
    assert first["words"][0]["start"] == 0.0
    assert t.messages[-1]["total_speech_duration"] == second["end"]


async def test_bad_frames_get_errors_and_lose_nothing(worker, speech) -> None:
    good = frames(pcm16(speech(TIMER)), 3200)
    chunks = [*good[:3], b"\x00\x01\x02", "{oops", "[1]", json.dumps({"type": "pause"}), json.dumps({"no": 1}),
              json.dumps({"type": "config", "vad_threshold": 7}),
              json.dumps({"type": "config", "language": "en", "vad_threshold": 0.6}), *good[3:]]
    t = await run_session(session_url(worker, enable_vad=False), chunks)
    assert_well_formed(t)
    assert t.of("error") == [
        {"type": "error", "code": "invalid_audio", "recoverable": True,
         "message": "Audio frame of 3 bytes is not a whole number of mono pcm_s16le samples (2 bytes each); "
                    "send frames whose length is a multiple of 2"},
        {"type": "error", "code": "invalid_message", "recoverable": True,
         "message": "Invalid JSON: Expecting property name enclosed in double quotes "
                    "(expected an object such as {\"type\": \"flush\"})"},
        {"type": "error", "code": "invalid_message", "recoverable": True,
         "message": "Message must be a JSON object, got list"},
        {"type": "error", "code": "invalid_message", "recoverable": True,
         "message": "Unknown message type: pause (accepted: config, flush, commit, clear, end)"},
        {"type": "error", "code": "invalid_message", "recoverable": True,
         "message": "Missing message type (accepted: config, flush, commit, clear, end)"},
        {"type": "error", "code": "invalid_message", "recoverable": True,
         "message": "Invalid config: vad_threshold=7 (accepted: 0..1)"},
    ]
    assert t.final_text == TIMER
    assert worker.stats.frames_rejected == 1 and worker.stats.messages_rejected == 5


async def test_nan_float_frame_is_rejected(worker, speech) -> None:
    good = encode(speech(TIMER), "pcm_f32le", 16000, 1)
    bad = np.array([0.0, np.inf], "<f4").tobytes()
    t = await run_session(session_url(worker, encoding="pcm_f32le", enable_vad=False),
                          [good[:6400], bad, good[6400:]])
    assert_well_formed(t)
    assert [e["message"] for e in t.of("error")] == [
        "Audio frame holds NaN or infinite pcm_f32le samples; send finite floats in -1..1"]
    assert t.final_text == TIMER


async def connect_and_collect(url: str) -> Transcript:
    async with websockets.connect(url) as ws:
        return await collect(ws)


@pytest.mark.parametrize("path, params, code, reason", [
    ("/v1/listen", {}, 1008, "Invalid path"),
    ("/session", {"sample_rate": "96000"},
     1002, "Invalid parameter: sample_rate=96000 is out of range (accepted: 8000..48000)"),
    ("/session", {"encoding": "opus"}, 1002,
     "Invalid parameter: encoding='opus' (accepted: pcm_s16le, pcm_f32le, mulaw, alaw)"),
    ("/session", {"language": "es"}, 1002, "Invalid parameter: language='es' (accepted: auto, en)"),
])
async def test_rejected_connections_close_with_dalston_codes(worker, path: str, params: dict, code: int,
                                                            reason: str) -> None:
    from urllib.parse import urlencode

    t = await connect_and_collect(f"ws://127.0.0.1:{worker.port}{path}?{urlencode(params)}")
    assert (t.messages, t.close_code, t.close_reason) == ([], code, reason)


async def test_language_with_region_is_accepted(worker, speech) -> None:
    t = await run_session(session_url(worker, language="en-US", enable_vad=False), frames(pcm16(speech(TIMER)), 3200))
    assert t.final_text == TIMER


async def test_capacity_closes_1013_and_disconnect_frees_the_slot(worker_factory, speech) -> None:
    worker = await worker_factory(max_sessions=1)
    audio = pcm16(speech(TIMER))
    async with websockets.connect(session_url(worker, enable_vad=False)) as first:
        assert json.loads(await first.recv())["type"] == "session.begin"
        assert worker.active_sessions == 1 and worker.status == "busy"
        refused = await connect_and_collect(session_url(worker))
        assert (refused.close_code, refused.close_reason) == (1013, "Server at capacity")
        await first.send(audio[: len(audio) // 2])  # then vanish mid-utterance
    while worker.active_sessions:  # the handler notices the disconnect and frees the engine stream
        await asyncio.sleep(0.02)
    assert worker.engine.active_streams == 0 and worker.status == "ready"
    assert worker.stats.sessions_ended["disconnected"] == 1
    t = await run_session(session_url(worker, enable_vad=False), frames(audio, 3200))
    assert t.final_text == TIMER


async def test_sixteen_concurrent_sessions_get_their_own_transcripts(worker_factory, speech) -> None:
    worker = await worker_factory(max_sessions=16)

    async def one(i: int) -> Transcript:
        url = session_url(worker, session_id=f"sess_{i:02d}", enable_vad=False)
        return await run_session(url, frames(pcm16(speech(SENTENCES[i])), 3200))

    async with websockets.connect(session_url(worker, enable_vad=False)) as ws:  # hold one slot, fill the rest
        assert json.loads(await ws.recv())["type"] == "session.begin"
        results = await asyncio.gather(*(one(i) for i in range(15)))
        await ws.send(END)
    assert [t.final_text for t in results] == SENTENCES[:15]
    assert [t.messages[0]["session_id"] for t in results] == [f"sess_{i:02d}" for i in range(15)]
    # all sixteen at once, and one more is refused
    holders = [await websockets.connect(session_url(worker, enable_vad=False)) for _ in range(16)]
    try:
        refused = await connect_and_collect(session_url(worker))
        assert refused.close_code == 1013
        readers = [asyncio.create_task(collect(ws)) for ws in holders]
        for i, ws in enumerate(holders):
            for chunk in frames(pcm16(speech(SENTENCES[i])), 3200):
                await ws.send(chunk)
        for ws in holders:
            await ws.send(END)
        results = await asyncio.gather(*readers)
    finally:
        for ws in holders:
            await ws.close()
    assert [t.final_text for t in results] == SENTENCES


async def test_health_on_the_websocket_port(worker) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{worker.port}/health") as ws:
        health = json.loads(await ws.recv())
        t = await collect(ws)
    assert t.close_code == 1000
    assert health == {"status": "healthy", "instance": "test-worker", "worker_id": "test-worker",
                      "active_sessions": 0, "capacity": 4, "gpu_memory": "0GB", "gpu_memory_total": "0GB",
                      "cuda_available": False, "models_loaded": ["espeak-demo-en"], "model_count": 1,
                      "device": "cpu", "model_name": "espeak-demo-en", "chunk_size_ms": 160}
    # a plain HTTP probe on the same port gets the same JSON
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health").read())
    assert json.loads(body) == health


async def test_lag_budget_warns_then_terminates(worker, speech) -> None:
    # the debug sleep (a dalston test parameter) holds each frame back 1 s, so processing falls behind
    url = session_url(worker, session_id="sess_lag", enable_vad=False, lag_warning_seconds=0.3,
                      lag_hard_seconds=0.6, lag_hard_grace_seconds=0.2, debug_chunk_sleep_initial_seconds=1)
    t = await run_session(url, frames(pcm16(speech(TIMER)), 3200), end=False)
    kinds = [k for k in t.types if k != "transcript.partial"]
    assert kinds[0] == "session.begin" and kinds[-2:] == ["error", "session.terminated"]
    assert set(kinds[1:-2]) == {"warning"}
    warning = t.of("warning")[0]
    assert (warning["code"], warning["warning_threshold_seconds"], warning["hard_threshold_seconds"]) == \
        ("processing_lag", 0.3, 0.6)
    assert warning["lag_seconds"] >= 0.3
    error = t.of("error")[0]
    assert (error["code"], error["recoverable"]) == ("lag_exceeded", False)
    assert t.messages[-1] == {"type": "session.terminated", "session_id": "sess_lag", "reason": "lag_exceeded",
                              "recoverable": False, "last_transcript_offset_ms": 0}
    assert (t.close_code, t.close_reason) == (4010, "Lag budget exceeded")
    assert worker.stats.sessions_ended["lag_exceeded"] == 1


async def test_audio_still_untranscribed_at_the_end_deadline_is_reported_and_the_session_ends(worker, speech,
                                                                                          monkeypatch) -> None:
    """dalston's gateway waits 10 s for ``session.end`` after ``end``: a session that cannot transcribe the rest in
    time (here each frame is held back 1 s) ends by its deadline and says how much audio it left."""
    from parakeet_services.dalston import session as session_module

    monkeypatch.setattr(session_module, "END_DEADLINE_S", 1.0)
    dropped_before = worker.stats.audio_seconds_dropped
    url = session_url(worker, session_id="sess_deadline", enable_vad=False, debug_chunk_sleep_initial_seconds=1)
    audio = pcm16(speech(TIMER))
    loop = asyncio.get_running_loop()
    started = loop.time()
    t = await run_session(url, frames(audio, 3200))
    assert loop.time() - started < 3.0
    assert [k for k in t.types if k != "transcript.partial"] == ["session.begin", "error", "session.end"]
    error = t.of("error")[0]
    assert (error["code"], error["recoverable"]) == ("lag_exceeded", False)
    dropped = worker.stats.audio_seconds_dropped - dropped_before
    assert 0 < dropped <= len(audio) / 2 / 16000
    assert error["message"] == (f"{dropped:.2f}s of audio before end was not transcribed within 1s; the session "
                                f"ends with the transcript so far")
    assert t.of("session.end")[0]["total_audio_seconds"] == pytest.approx(len(audio) / 2 / 16000, abs=1e-3)
    assert (t.close_code, t.close_reason) == (1000, "")
    assert worker.stats.sessions_ended["end_deadline"] == 1


# -- parakeet-stream extensions (engine_events, endpointing): what the remote LiveKit/Pipecat clients use ----------

ENGINE_BLANK = json.dumps({"vad": False, "eou": False, "trailing_blank_ms": 800})


async def test_engine_events_put_the_final_before_speech_end_with_words_on_partials(worker, speech, engine) -> None:
    audio = np.concatenate([speech(TIMER), np.zeros(16000, np.float32)])
    url = session_url(worker, engine_events=True, word_timestamps=True, endpointing=ENGINE_BLANK)
    t = await run_session(url, frames(pcm16(audio), 3200))
    assert_well_formed(t)
    kinds = [k for k in t.types if k != "transcript.partial"]
    assert kinds == ["session.begin", "vad.speech_start", "transcript.final", "vad.speech_end", "session.end"]
    [final] = t.of("transcript.final")
    assert (final["text"], final["reason"]) == (TIMER, "blank")
    assert final["end"] < final["audio_end"] <= round(len(audio) / 16000, 3)  # the blank run after the words
    offline = [(w.text, round(w.start, 3), round(w.end, 3)) for w in engine.transcribe(audio).words]
    assert [(w["word"], w["start"], w["end"]) for w in final["words"]] == offline
    last_partial = t.of("transcript.partial")[-1]
    assert [w["word"] for w in last_partial["words"]] == TIMER.split()


async def test_engine_endpointing_can_be_retuned_but_not_switched_to_vad(worker, speech) -> None:
    url = session_url(worker, engine_events=True, endpointing=ENGINE_BLANK)
    bad = json.dumps({"type": "config", "endpointing": {"vad": True}})
    good = json.dumps({"type": "config", "endpointing": {"trailing_blank_ms": 400}})
    t = await run_session(url, [bad, good, *frames(pcm16(speech(TIMER)), 3200)])
    assert t.of("error") == [{"type": "error", "code": "invalid_message", "recoverable": True, "message":
                              "Invalid config: endpointing.vad cannot change on an open session (open a new one "
                              "for that)"}]
    assert t.final_text == TIMER


@pytest.mark.parametrize("value, reason", [
    ('{"trailing_blank_ms": 10}',
     "Invalid parameter: endpointing option trailing_blank_ms=10 is out of range; accepted: 80..60000"),
    ('{"silence": 1}',
     "Invalid parameter: unknown endpointing field(s) silence (see parakeet_stream.EndpointingOptions)"),
    ("[1]", "Invalid parameter: endpointing='[1]' is not a JSON object"),
])
async def test_bad_engine_endpointing_closes_1002(worker, value: str, reason: str) -> None:
    t = await connect_and_collect(session_url(worker, endpointing=value))
    assert (t.messages, t.close_code, t.close_reason) == ([], 1002, reason)
