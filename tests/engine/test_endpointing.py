"""Automatic endpoints cut the transcript into segments without touching the model state."""
from __future__ import annotations

import numpy as np
import pytest

import parakeet_stream as ps
from tests.support import collect, packets, silence, speech


def run(engine, audio, opts):
    s = engine.open_stream(endpointing=opts)
    for p in packets(audio):
        s.push(p)
    s.finish()
    return collect(s)


def summary(events):
    return [(type(e).__name__, getattr(e, "segment_id", None), getattr(e, "reason", None), getattr(e, "text", None))
            for e in events if not isinstance(e, ps.Partial)]


def test_trailing_blank_rule_splits_two_sentences(demo_engine):
    audio = np.concatenate([speech("set a timer for ten minutes"), silence(1.5), speech("turn on the lights"),
                            silence(0.2)])
    events = run(demo_engine, audio, ps.EndpointingOptions(trailing_blank_ms=800, eou=False))
    assert summary(events) == [
        ("SpeechStarted", 0, None, None), ("Final", 0, "blank", "set a timer for ten minutes"),
        ("SpeechEnded", 0, None, None),
        ("SpeechStarted", 1, None, None), ("Final", 1, "finish", "turn on the lights"),
        ("SpeechEnded", 1, None, None), ("StreamEnded", None, None, None)]
    # the cut only splits text: together the segments are the offline transcript of the whole stream
    finals = [e for e in events if isinstance(e, ps.Final)]
    offline = demo_engine.transcribe(audio)
    assert " ".join(f.text for f in finals) == offline.text
    assert sum((f.words for f in finals), ()) == offline.words
    ended = [e for e in events if isinstance(e, ps.SpeechEnded)]
    assert finals[0].end == finals[0].words[-1].end == ended[0].time


def test_silero_vad_marks_speech_start_and_end(demo_engine):
    first = speech("call me at seven thirty")
    audio = np.concatenate([silence(0.5), first, silence(1.2), speech("two three four"), silence(1.0)])
    opts = ps.EndpointingOptions(vad=True, min_silence_ms=500, trailing_blank_ms=None, eou=False)
    events = run(demo_engine, audio, opts)
    assert summary(events) == [
        ("SpeechStarted", 0, None, None), ("Final", 0, "vad", "call me at seven thirty"),
        ("SpeechEnded", 0, None, None),
        ("SpeechStarted", 1, None, None), ("Final", 1, "vad", "two three four"),
        ("SpeechEnded", 1, None, None), ("StreamEnded", None, None, None)]
    starts = [e.time for e in events if isinstance(e, ps.SpeechStarted)]
    loud = np.flatnonzero(np.abs(audio) > 0.02) / 16000
    onsets = [loud[0], loud[loud > 0.5 + len(first) / 16000][0]]
    # Silero confirms speech after min_speech_ms and reports where it began, minus speech_pad_ms
    for start, onset in zip(starts, onsets):
        assert onset - 0.1 <= start <= onset + 0.1, (start, onset)


def test_silence_produces_no_segment(demo_engine):
    opts = ps.EndpointingOptions(vad=True)
    assert summary(run(demo_engine, silence(2.0), opts)) == [("StreamEnded", None, None, None)]


def test_max_segment_duration_forces_a_cut(demo_engine):
    audio = np.concatenate([speech("call me at seven thirty tomorrow morning"), speech("set a timer for ten minutes")])
    events = run(demo_engine, audio, ps.EndpointingOptions(trailing_blank_ms=None, max_segment_s=1.0, eou=False))
    reasons = [e.reason for e in events if isinstance(e, ps.Final)]
    assert reasons[:-1] == ["max_duration"] * (len(reasons) - 1) and len(reasons) >= 3
    finals = [e for e in events if isinstance(e, ps.Final)]
    # never inside a word: the model emits "thirty" as "th" in one step and "irty" in the next, and a cut
    # due between them waits for the next word
    assert " ".join(f.text for f in finals) == demo_engine.transcribe(audio).text == (
        "call me at seven thirty tomorrow morning set a timer for ten minutes")
    assert all(f.end - f.start <= 1.0 + 0.16 + 0.4 for f in finals[:-1])  # a step, plus the rest of a word
    assert all(a.end <= b.start for a, b in zip(finals, finals[1:]))


def test_batched_vad_finds_the_same_speech_as_one_detector_per_stream():
    from parakeet_stream.endpointing import VoiceActivity, detect

    opts = ps.EndpointingOptions(vad=True, min_silence_ms=300)
    audios = [np.concatenate([silence(0.3), speech("set a timer for ten minutes"), silence(0.8),
                              speech("turn on the lights"), silence(0.6)]),
              np.concatenate([speech("two three four"), silence(0.7)]),
              silence(1.0)]
    alone = []
    for a in audios:
        vad = VoiceActivity(opts)
        alone.append([c for p in packets(a) for c in vad.process(p)])
    batched = [VoiceActivity(opts) for _ in audios]
    found = [[] for _ in audios]
    for k in range(max(len(a) for a in audios) // 320 + 1):
        for vad, a in zip(batched, audios):
            vad.feed(a[k * 320:(k + 1) * 320])  # streams of different lengths: rounds shrink as they end
        for got, changes in zip(found, detect(batched)):
            got.extend(changes)
    assert found == alone
    assert [kind for kind, _ in alone[0]] == ["start", "end", "start", "end"]
    assert [kind for kind, _ in alone[1]] == ["start", "end"] and alone[2] == []


def test_vad_network_that_cannot_run_on_the_device_stays_on_the_cpu(caplog):
    """The engine asks for Silero on its own device; a copy that fails there (here: ``meta``, which holds no data)
    leaves the CPU network serving, with a warning, and detection still works."""
    from parakeet_stream.endpointing import VoiceActivity, _silero_network, detect, vad_network

    with caplog.at_level("WARNING", logger="parakeet_stream"):
        assert vad_network("meta") is _silero_network()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["Silero VAD stays on the CPU"]
    vad = VoiceActivity(ps.EndpointingOptions(vad=True), device="meta")
    vad.feed(np.concatenate([silence(0.5), speech("turn on the radio"), silence(1.0)]))
    assert [kind for kind, _ in detect([vad])[0]] == ["start", "end"]


def test_vad_device_can_be_pinned_to_the_cpu(monkeypatch):
    from parakeet_stream.endpointing import _silero_network, vad_network

    monkeypatch.setenv("PARAKEET_VAD_DEVICE", "cpu")
    assert vad_network("cuda:3") is _silero_network()  # not even tried


def test_a_live_stream_takes_new_vad_durations_from_where_it_is(demo_engine):
    """With 500 ms of silence ending an utterance, a 1 s pause splits two sentences; raised to 2000 ms after the
    first sentence, the same pause no longer ends it and the closing silence (2.5 s) does. (Silero hears silence
    from ~0.35 s before the end of an espeak-ng sentence.)"""
    first, second = speech("call me at seven thirty"), speech("two three four")
    opts = ps.EndpointingOptions(vad=True, min_silence_ms=500, trailing_blank_ms=None, eou=False)

    def finals(update: bool) -> list[tuple[str, str]]:
        s = demo_engine.open_stream(endpointing=opts)
        for p in packets(np.concatenate([silence(0.5), first])):
            s.push(p)
        if update:
            assert s.update_endpointing(min_silence_ms=2000) == ps.EndpointingOptions(
                vad=True, min_silence_ms=2000, trailing_blank_ms=None, eou=False)
        for p in packets(np.concatenate([silence(1.0), second, silence(2.5)])):
            s.push(p)
        s.finish()
        return [(e.reason, e.text) for e in collect(s) if isinstance(e, ps.Final)]

    assert finals(update=False) == [("vad", "call me at seven thirty"), ("vad", "two three four")]
    assert finals(update=True) == [("vad", "call me at seven thirty two three four")]


def test_live_endpointing_updates_are_checked_and_refused_without_effect(demo_engine):
    s = demo_engine.open_stream(endpointing=ps.EndpointingOptions(vad=True))
    try:
        with pytest.raises(ValueError) as e:
            s.update_endpointing(vad=False)
        assert str(e.value) == ("vad cannot be switched on or off on a live stream (open a new stream for that); "
                                "its threshold and durations can change")
        with pytest.raises(ValueError) as e:
            s.update_endpointing(min_silence_ms=-1)
        assert str(e.value) == "endpointing option min_silence_ms=-1 is out of range; accepted: 0..10000"
        with pytest.raises(ValueError) as e:
            s.update_endpointing(silence_ms=300)
        assert str(e.value) == ("unknown endpointing option(s) silence_ms; accepted: vad_threshold, min_speech_ms, "
                                "min_silence_ms, speech_pad_ms, eou, trailing_blank_ms, max_segment_s")
        assert s.endpointing == ps.EndpointingOptions(vad=True)
        s.finish()
        with pytest.raises(ps.StreamClosedError):
            s.update_endpointing(vad_threshold=0.6)
    finally:
        s.close()


def test_trailing_blank_rule_defers_to_the_vad_at_the_models_time(demo_engine):
    """Audio pushed faster than real time puts the VAD seconds ahead of the model. A pause shorter than the VAD's
    minimum silence is speech to the VAD, so the trailing-blank rule must not cut there, even once the VAD has
    heard the end of all the audio (it judges the VAD's state at the time the model has reached)."""
    audio = np.concatenate([speech("call me at seven thirty"), silence(1.0), speech("two three four"), silence(3.0)])
    events = run(demo_engine, audio, ps.EndpointingOptions(vad=True, min_silence_ms=2000, trailing_blank_ms=800,
                                                                eou=False))
    assert [(e.reason, e.text) for e in events if isinstance(e, ps.Final)] == [
        ("vad", "call me at seven thirty two three four")]
