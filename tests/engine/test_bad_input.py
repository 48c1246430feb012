"""Bad input is answered with an error that says what was wrong and what is accepted, and harms nothing else."""
from __future__ import annotations

import re

import numpy as np
import pytest

import parakeet_stream as ps
from tests.support import collect, packets, speech

ACCEPTED = ("accepted: int16 little-endian mono bytes, or a 1-D numpy array of float32 (-1..1) or int16 samples")


@pytest.mark.parametrize("pcm,message", [
    (b"\x00\x01\x02", f"got 3 bytes, which is not a whole number of int16 samples; {ACCEPTED}"),
    (np.zeros((160, 2), np.float32), "got an array of shape (160, 2); audio must be mono and 1-D (mix channels "
                                     f"down first); {ACCEPTED}"),
    (np.zeros(160, np.int32), f"got dtype int32; {ACCEPTED}"),
    ([0.0, 0.1], f"got list; {ACCEPTED}"),
    (np.array([0.0, np.nan, np.inf], np.float32), "got 2 NaN or infinite samples; audio samples must be finite "
                                                  "floats in -1..1"),
])
def test_bad_audio_is_rejected_and_the_stream_goes_on(demo_engine, pcm, message):
    good = speech("two three four")
    s = demo_engine.open_stream()
    half = len(good) // 2
    s.push(good[:half])
    with pytest.raises(ps.AudioFormatError, match=re.escape(message)):
        s.push(pcm)
    s.push(good[half:])
    s.finish()
    assert [e.text for e in collect(s) if isinstance(e, ps.Final)] == ["two three four"]


def test_a_failing_stream_does_not_disturb_another(demo_engine):
    a, b = demo_engine.open_stream(), demo_engine.open_stream()
    for p in packets(speech("turn on the lights")):
        a.push(p)
        with pytest.raises(ps.AudioFormatError):
            b.push(b"\x01")
    b.close()
    a.finish()
    assert [e.text for e in collect(a) if isinstance(e, ps.Final)] == ["turn on the lights"]


def test_empty_push_is_a_no_op(demo_engine):
    s = demo_engine.open_stream()
    s.push(b"")
    s.push(np.zeros(0, np.float32))
    s.finish()
    assert collect(s) == [ps.StreamEnded(audio_seconds=0.0, segments=0)]


def test_push_and_flush_after_finish_are_refused(demo_engine):
    s = demo_engine.open_stream(stream_id="s-after-finish")
    s.finish()
    with pytest.raises(ps.StreamClosedError, match=re.escape(
            "cannot push audio to stream s-after-finish: finish() was already called")):
        s.push(b"\x00\x00")
    with pytest.raises(ps.StreamClosedError, match=re.escape(
            "cannot flush stream s-after-finish: finish() was already called")):
        s.flush()
    collect(s)


@pytest.mark.parametrize("rate", [4000, 96000])
def test_unsupported_sample_rate(demo_engine, rate):
    with pytest.raises(ps.AudioFormatError, match=re.escape(
            f"sample_rate {rate} Hz is not supported; accepted: 8000..48000 Hz")):
        demo_engine.open_stream(sample_rate=rate)


def test_unknown_chunk_size_names_the_valid_ones():
    with pytest.raises(ps.ChunkSizeError, match=re.escape(
            "chunk size 80 ms is not supported by this model; valid sizes: 160 ms")):
        ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", chunk_ms=80))


def test_a_file_that_is_not_a_nemo_model(tmp_path):
    bogus = tmp_path / "model.nemo"
    bogus.write_text("not a model")
    with pytest.raises(ps.ModelLoadError, match=re.escape(
            f"'{bogus}' is not a NeMo model: a .nemo file is a tar archive holding model_config.yaml and "
            "model_weights.ckpt")):
        ps.Engine.load(ps.EngineConfig(model=str(bogus)))


def test_a_missing_model_file(tmp_path):
    missing = tmp_path / "nope.nemo"
    with pytest.raises(ps.ModelLoadError, match=re.escape(f"model file '{missing}' does not exist")):
        ps.Engine.load(ps.EngineConfig(model=str(missing)))


def test_a_hub_model_without_network_fails_fast_with_the_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the test machine has no hub access either way
    name = "nvidia/stt_en_fastconformer_hybrid_large_streaming_multi"
    with pytest.raises(ps.ModelLoadError) as err:
        ps.Engine.load(ps.EngineConfig(model=name, device="cpu"))
    message = str(err.value)
    assert message.startswith(f"could not fetch model '{name}' from the Hugging Face hub / NGC (")
    assert message.endswith("pass its local path instead, e.g. --model "
                            "/models/stt_en_fastconformer_hybrid_large_streaming_multi.nemo")


def test_capacity_is_enforced(tiny_model):
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=2))
    try:
        a, b = engine.open_stream(), engine.open_stream()
        with pytest.raises(ps.CapacityError, match=re.escape(
                "engine is full: 2 streams are open (max_streams=2)")):
            engine.open_stream()
        a.close()
        c = engine.open_stream()  # a closed stream's place is free at once
        b.close(), c.close()
    finally:
        engine.close()


def test_endpointing_options_are_range_checked():
    with pytest.raises(ValueError, match=re.escape(
            "endpointing option vad_threshold=1.5 is out of range; accepted: 0.0..1.0")):
        ps.EndpointingOptions(vad_threshold=1.5)


def test_a_stream_closed_while_its_finish_is_decoded_gives_its_slot_to_the_next_at_once():
    """The late-attach race: ``close`` gives capacity back at once, so a new stream may attach before the closed
    one's finish barrier was decoded. Its slot must be free by then (it was "no free cache slot" before)."""
    import threading

    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=1))
    try:
        gate, held = threading.Event(), threading.Event()

        def hold() -> None:  # the inference thread is busy (a long step under load) while the callers act
            held.set()
            gate.wait(10)

        busy = threading.Thread(target=engine._scheduler.call, args=(hold,))
        busy.start()
        assert held.wait(10)
        a = engine.open_stream()
        for p in packets(speech("turn on the lights"), 20):
            a.push(p)
        a.finish()  # a barrier: everything before it is decoded first
        a.close()  # the owner gives up on it before the thread got there
        b = engine.open_stream()  # capacity is back at once
        gate.set()
        busy.join()
        for p in packets(speech("set a timer for ten minutes"), 20):
            b.push(p)
        b.finish()
        events = collect(b)
        assert [type(e).__name__ for e in events if not isinstance(e, ps.Partial)] == [
            "SpeechStarted", "Final", "SpeechEnded", "StreamEnded"]
        assert events[-3].text == "set a timer for ten minutes"
    finally:
        engine.close()


def test_every_int16_sample_becomes_the_float_it_always_was():
    """PCM16 as bytes or as an int16 array: each of the 65 536 values becomes value / 32768 in float32, exactly."""
    import numpy as np

    from parakeet_stream.audio import to_float32

    every = np.arange(-32768, 32768, dtype=np.int16)
    expected = (every.astype(np.float64) / 32768.0).astype(np.float32)
    for converted in (to_float32(every.astype("<i2").tobytes()), to_float32(every),
                      to_float32(memoryview(bytearray(every.astype("<i2").tobytes())))):
        assert converted.dtype == np.float32
        assert np.array_equal(converted, expected)
