"""Lanes (``EngineConfig.lanes``): several inference threads over one copy of the weights, each stepping its own
streams on one CPU thread."""
from __future__ import annotations

import threading

import parakeet_stream as ps
import pytest
from parakeet_stream.engine import choose_lanes
from tests.support import collect, packets, speech

SENTENCES = ("set a timer for ten minutes", "call me at seven thirty tomorrow morning", "turn on the lights",
             "remind me to call john on friday")


def test_lanes_must_be_a_count_of_at_least_one():
    with pytest.raises(ValueError, match=r"lanes must be a count of at least 1 or None, got 0"):
        ps.EngineConfig(lanes=0)
    with pytest.raises(ValueError, match=r"lanes must be a count of at least 1 or None, got '2'"):
        ps.EngineConfig(lanes="2")


def test_by_default_one_lane_per_core_on_the_cpu_and_one_elsewhere():
    default = ps.EngineConfig()
    assert choose_lanes(default, device="cpu", streaming=True, cores=2) == 2
    assert choose_lanes(default, device="cpu", streaming=True, cores=16) == 16
    assert choose_lanes(default.replace(num_threads=2), device="cpu", streaming=True, cores=2) == 1  # a count kept
    assert choose_lanes(default.replace(num_threads="auto"), device="cpu", streaming=True, cores=2) == 1  # governor
    assert choose_lanes(default.replace(nemo_step=True), device="cpu", streaming=True, cores=2) == 1
    assert choose_lanes(default, device="cpu", streaming=False, cores=2) == 1  # segmented mode
    assert choose_lanes(default, device="cuda:0", streaming=True, cores=16) == 1
    assert choose_lanes(default.replace(lanes=3), device="cpu", streaming=True, cores=2) == 3
    assert choose_lanes(default.replace(lanes=1), device="cuda:0", streaming=True, cores=16) == 1
    with pytest.raises(ps.ModelLoadError, match=r"^lanes=2 is for the CPU; on cuda:0 one inference thread steps "
                                                r"every stream \(leave lanes unset or give 1\)$"):
        choose_lanes(default.replace(lanes=2), device="cuda:0", streaming=True, cores=16)


def test_an_engine_on_the_cpu_takes_one_lane_per_core_of_one_thread_each(tiny_model):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count is "all cores"
    try:
        engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160))
    finally:
        torch.set_num_threads(before)
    try:
        assert [(lane.threads.most, lane.threads.adaptive) for lane in engine._lanes] == [(1, False), (1, False)]
        assert engine.metrics().cpu_threads == 2
    finally:
        engine.close()


def test_two_lanes_share_the_streams_and_each_stream_decodes_as_offline():
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", lanes=2, max_streams=4))
    try:
        assert [lane._thread.name for lane in engine._lanes] == ["parakeet-inference", "parakeet-inference-1"]
        assert [lane.model for lane in engine._lanes][0] is engine._lanes[1].model  # one copy of the weights
        opts = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
        streams = [engine.open_stream(endpointing=opts) for _ in SENTENCES]
        assert [lane.live_streams for lane in engine._lanes] == [2, 2]  # each new stream joins the emptier lane
        with pytest.raises(ps.CapacityError, match=r"engine is full: 4 streams are open \(max_streams=4\)"):
            engine.open_stream()
        texts: dict[int, str] = {}

        def feed(i: int) -> None:
            for p in packets(speech(SENTENCES[i])):
                streams[i].push(p)
            streams[i].finish()
            texts[i] = " ".join(e.text for e in collect(streams[i]) if isinstance(e, ps.Final))

        threads = [threading.Thread(target=feed, args=(i,)) for i in range(len(SENTENCES))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        offline = {i: engine.transcribe(speech(s)).text for i, s in enumerate(SENTENCES)}
        assert texts == offline == dict(enumerate(SENTENCES))
        m = engine.metrics()  # both lanes' counts together
        assert m.streams_opened == 4 and m.active_streams == 0 and m.cpu_threads == 2
        assert m.steps == sum(lane.metrics.steps for lane in engine._lanes)
        assert m.results == sum(lane.metrics.results for lane in engine._lanes) > 0
    finally:
        engine.close()
    assert not any(lane._thread.is_alive() for lane in engine._lanes)


def test_the_adapters_and_commands_pass_lanes_to_their_engine():
    from livekit.plugins import parakeet
    from parakeet_pipecat import ParakeetSTTService
    from parakeet_services.cli import build_parser

    pipecat = ParakeetSTTService(model="espeak-demo-en", lanes=3, num_threads=None)._engine_config
    assert (pipecat.lanes, pipecat.num_threads) == (3, None)
    assert ParakeetSTTService(model="espeak-demo-en", num_threads=1)._engine_config.num_threads == 1

    assert parakeet.STT(model="espeak-demo-en", lanes=2)._opts.engine_config().lanes == 2
    assert parakeet.STT(model="espeak-demo-en")._opts.engine_config().lanes is None
    for command in ("serve", "captions", "transcribe"):
        args = [command, "--lanes", "3"] + (["x.wav"] if command == "transcribe" else [])
        assert build_parser().parse_args(args).lanes == 3
        assert build_parser().parse_args(args[:1] + args[3:]).lanes is None


def test_a_lane_waits_while_another_is_inside_nemos_eager_step():
    """NeMo's eager step sets ``streaming_cfg.drop_extra_pre_encoded`` for its call and restores the value it
    found: two lanes inside it at once leave the first lane's value behind for good. Lane 0 is held inside its
    step (a first chunk's, which is eager); lane 1's first chunk must wait outside until lane 0 returns."""
    import time

    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", lanes=2, max_streams=2))
    encoder = engine._scheduler.model.encoder
    before = encoder.streaming_cfg.drop_extra_pre_encoded
    inside: list[str] = []
    held, release = threading.Event(), threading.Event()

    def hold_lane_0(module, args) -> None:  # NeMo's eager step only: the traced steady step runs no hooks
        inside.append(threading.current_thread().name)
        if threading.current_thread().name == "parakeet-inference" and not release.is_set():
            held.set()
            release.wait(30)
    hook = encoder.pre_encode.register_forward_pre_hook(hold_lane_0)
    try:
        opts = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
        first, second = engine.open_stream(endpointing=opts), engine.open_stream(endpointing=opts)
        assert [lane.live_streams for lane in engine._lanes] == [1, 1]
        audio = [speech(SENTENCES[0]), speech(SENTENCES[2])]
        for p in packets(audio[0]):
            first.push(p)
        first.finish()
        assert held.wait(30)
        for p in packets(audio[1]):
            second.push(p)
        second.finish()
        time.sleep(1.0)  # six chunks of lane 1's audio are waiting
        assert inside == ["parakeet-inference"]
        release.set()
        texts = [" ".join(e.text for e in collect(s) if isinstance(e, ps.Final)) for s in (first, second)]
        assert "parakeet-inference-1" in inside
    finally:
        release.set()
        hook.remove()
        engine.close()
    assert texts == [SENTENCES[0], SENTENCES[2]]
    assert encoder.streaming_cfg.drop_extra_pre_encoded == before
