"""What a caller sees over a stream's life: short audio, flush and continue, finish twice, close, async use."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

import parakeet_stream as ps
from tests.support import collect, packets, silence, speech

NO_ENDPOINTS = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)


def push_all(stream, audio, ms=20):
    for p in packets(audio, ms):
        stream.push(p)


def kinds(events):
    return [type(e).__name__ for e in events]


def test_audio_shorter_than_one_chunk_ends_cleanly(demo_engine):
    s = demo_engine.open_stream()
    s.push(silence(0.05))
    s.finish()
    assert collect(s) == [ps.StreamEnded(audio_seconds=0.05, segments=0)]


def test_event_order_for_one_utterance(demo_engine):
    s = demo_engine.open_stream()
    push_all(s, np.concatenate([speech("turn on the lights"), silence(0.3)]))
    s.finish()
    events = collect(s)
    names = kinds(events)
    assert names[0] == "SpeechStarted" and names[-3:] == ["Final", "SpeechEnded", "StreamEnded"]
    assert set(names[1:-3]) == {"Partial"}
    partials = [e for e in events if isinstance(e, ps.Partial)]
    assert all(b.text.startswith(a.text) for a, b in zip(partials, partials[1:]))  # append-only
    assert "".join(p.delta for p in partials) == partials[-1].text == events[-3].text == "turn on the lights"


def test_flush_finalizes_the_segment_and_the_stream_continues(demo_engine):
    first, second = speech("set a timer for ten minutes"), speech("turn on the lights")
    s = demo_engine.open_stream(endpointing=NO_ENDPOINTS)
    push_all(s, first)
    s.flush()
    push_all(s, second)
    s.finish()
    events = collect(s)
    finals = [e for e in events if isinstance(e, ps.Final)]
    assert [(f.segment_id, f.text, f.reason) for f in finals] == [
        (0, "set a timer for ten minutes", "flush"), (1, "turn on the lights", "finish")]
    # each segment equals offline decoding of its own audio, on the stream's continuous clock
    offset = len(first) / 16000
    expected = demo_engine.transcribe(second).words
    assert finals[1].words == tuple(ps.Word(w.text, round(w.start + offset, 3), round(w.end + offset, 3),
                                            w.confidence) for w in expected)
    assert finals[0].words == demo_engine.transcribe(first).words
    assert events[-1] == ps.StreamEnded(audio_seconds=round((len(first) + len(second)) / 16000, 3), segments=2)


def test_finish_twice_delivers_one_end(demo_engine):
    before = demo_engine.active_streams
    s = demo_engine.open_stream()
    push_all(s, speech("two three four"))
    s.finish()
    s.finish()
    events = collect(s)
    assert demo_engine.active_streams == before  # the slot is free by the time StreamEnded is seen
    assert kinds(events).count("StreamEnded") == 1
    assert [e.text for e in events if isinstance(e, ps.Final)] == ["two three four"]


def test_close_without_finish_frees_the_stream(demo_engine):
    before = demo_engine.active_streams
    s = demo_engine.open_stream()
    push_all(s, speech("two three four"))
    s.close()
    s.close()
    assert demo_engine.active_streams == before
    rest = collect(s)  # the iterator ends: no StreamEnded for an abandoned stream
    assert "StreamEnded" not in kinds(rest) and "Final" not in kinds(rest)
    with pytest.raises(ps.StreamClosedError, match=r"cannot push audio to stream .*: it was closed"):
        s.push(silence(0.02))


def test_async_iteration_yields_the_same_events(demo_engine):
    audio = speech("call me at seven thirty")

    async def run():
        s = demo_engine.open_stream()
        push_all(s, audio)
        s.finish()
        return [e async for e in s]

    events = asyncio.run(run())
    assert [e.text for e in events if isinstance(e, ps.Final)] == [demo_engine.transcribe(audio).text]
    assert isinstance(events[-1], ps.StreamEnded)


def test_word_times_are_monotonic_inside_the_audio_and_on_frames(demo_engine):
    audio = np.concatenate([silence(0.4), speech("call me at seven thirty tomorrow morning")])
    s = demo_engine.open_stream(endpointing=NO_ENDPOINTS)
    push_all(s, audio)
    s.finish()
    words = [e for e in collect(s) if isinstance(e, ps.Final)][0].words
    assert len(words) >= 5
    duration = len(audio) / 16000
    for a, b in zip(words, words[1:]):
        assert a.start < a.end <= b.start
    for w in words:
        assert 0.4 <= w.start < w.end <= duration + 0.08
        assert abs(w.start / 0.08 - round(w.start / 0.08)) < 1e-6  # on 80 ms encoder frames
        assert 0.0 < w.confidence <= 1.0


def test_48khz_input_is_resampled_once(demo_engine):
    import soxr

    audio16 = speech("turn on the lights")
    audio48 = soxr.resample(audio16, 16000, 48000).astype(np.float32)
    s = demo_engine.open_stream(sample_rate=48000)
    for p in packets(audio48, 20, rate=48000):
        s.push(p)
    s.finish()
    events = collect(s)
    assert [e.text for e in events if isinstance(e, ps.Final)] == ["turn on the lights"]
    assert events[-1].audio_seconds == round(len(audio48) / 48000, 3)


def test_streams_opened_while_another_steps_decode_normally(demo_engine):
    """Regression: NeMo rewrites streaming_cfg.drop_extra_pre_encoded during every step, so a stream opened on
    another thread mid-step once read the first step's 0 and decoded nothing (seen through dalston's `clear`)."""
    first, second = speech("set a timer for ten minutes"), speech("call me at seven thirty")
    for _ in range(12):
        a = demo_engine.open_stream(endpointing=NO_ENDPOINTS)
        push_all(a, first, ms=100)
        a.close()
        b = demo_engine.open_stream(endpointing=NO_ENDPOINTS)
        push_all(b, second, ms=100)
        b.finish()
        assert [e.text for e in collect(b) if isinstance(e, ps.Final)] == ["call me at seven thirty"]
