"""Offline-only checkpoints run in VAD-segmented mode: one whole-utterance decode per VAD segment."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import parakeet_stream as ps
from parakeet_stream.endpointing import VoiceActivity
from tests.support import collect, packets, silence, speech


@pytest.fixture(scope="module")
def offline_engine():
    from parakeet_stream.testing import build_random_model

    engine = ps.Engine.from_model(build_random_model("tiny", offline=True, seed=1),
                                  ps.EngineConfig(model="tiny-offline"))
    yield engine
    engine.close()


def vad_segments(audio: np.ndarray, opts: ps.EndpointingOptions) -> list[tuple[int, int]]:
    vad, marks = VoiceActivity(opts), []
    for p in packets(audio):
        marks += vad.process(p)
    starts = [at for kind, at in marks if kind == "start"]
    ends = [at for kind, at in marks if kind == "end"]
    return list(zip(starts, ends))


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_offline_model_is_detected_and_says_so():
    from parakeet_stream.testing import build_random_model

    handler, log = Records(), logging.getLogger("parakeet_stream")
    log.addHandler(handler)
    try:
        engine = ps.Engine.from_model(build_random_model("tiny", offline=True, seed=2),
                                      ps.EngineConfig(model="offline-x"))
    finally:
        log.removeHandler(handler)
    engine.close()
    assert engine.info.offline_only and engine.info.chunk_sizes_ms == () and engine.info.chunk_ms == 0
    assert any(r.getMessage().startswith("model 'offline-x' is not cache-aware (full-context attention): running "
                                         "in VAD-segmented mode") for r in handler.records)


def test_each_vad_utterance_is_decoded_whole(offline_engine):
    audio = np.concatenate([silence(0.4), speech("call me at seven thirty"), silence(1.0),
                            speech("set a timer for ten minutes"), silence(1.0)])
    opts = ps.EndpointingOptions(min_silence_ms=500)
    s = offline_engine.open_stream(endpointing=opts)
    for p in packets(audio):
        s.push(p)
    s.finish()
    events = collect(s)
    segments = vad_segments(audio, opts)
    assert len(segments) == 2
    assert [type(e).__name__ for e in events] == ["SpeechStarted", "Final", "SpeechEnded"] * 2 + ["StreamEnded"]
    finals = [e for e in events if isinstance(e, ps.Final)]
    for final, (a, b) in zip(finals, segments):
        expected = offline_engine.transcribe(audio[a:b])
        assert final.reason == "vad"
        assert final.text == expected.text and final.text
        # both utterances may be decoded in one padded batch: equal words and times, confidences to float noise
        assert [(w.text, w.start, w.end) for w in final.words] == [
            (w.text, round(w.start + a / 16000, 3), round(w.end + a / 16000, 3)) for w in expected.words]
        assert [w.confidence for w in final.words] == pytest.approx([w.confidence for w in expected.words], abs=1e-3)
    assert [e.time for e in events if isinstance(e, ps.SpeechStarted)] == [round(a / 16000, 3) for a, _ in segments]


def test_flush_decodes_the_open_utterance(offline_engine):
    audio = np.concatenate([silence(0.3), speech("four five six")])
    s = offline_engine.open_stream(endpointing=ps.EndpointingOptions(min_silence_ms=5000))
    for p in packets(audio):
        s.push(p)
    s.flush()
    s.finish()
    events = collect(s)
    finals = [e for e in events if isinstance(e, ps.Final)]
    assert [f.reason for f in finals] == ["flush"]
    assert events[-1] == ps.StreamEnded(audio_seconds=round(len(audio) / 16000, 3), segments=1)


@pytest.mark.parametrize("pace", ["at once", "a cut per wake-up"])
def test_max_segment_duration_cuts_a_long_utterance_every_limit_of_stream_time(offline_engine, pace):
    """Pushed at once, one wake-up of the inference thread may see all of it; pushed a second at a time, each cut
    opens the next segment while the last one waits for its decode, and its start is told after that one's end."""
    audio = np.concatenate([speech("call me at seven thirty tomorrow morning set a timer for ten minutes"),
                            silence(1.0)])
    opts = ps.EndpointingOptions(max_segment_s=1.0)
    s = offline_engine.open_stream(endpointing=opts)
    for i, p in enumerate(packets(audio)):
        s.push(p)
        if pace != "at once" and i % 50 == 49:
            time.sleep(0.3)  # (the tiny model decodes a second in milliseconds)
    s.finish()
    events = collect(s)
    finals = [e for e in events if isinstance(e, ps.Final)]
    starts = [e.time for e in events if isinstance(e, ps.SpeechStarted)]
    (speech_start, speech_end), = vad_segments(audio, opts)
    n = int((speech_end - speech_start) / 16000)  # whole seconds of speech: that many forced cuts
    assert [f.reason for f in finals] == ["max_duration"] * n + ["vad"]
    assert starts == [round(speech_start / 16000 + k, 3) for k in range(n + 1)]
    assert [f.audio_end for f in finals] == [round(speech_start / 16000 + k, 3) for k in range(1, n + 1)] + [
        round(speech_end / 16000, 3)]
