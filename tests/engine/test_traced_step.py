"""The traced steady encoder step (traced_step.py) gives bit-identical outputs and is traced once per setup."""
from __future__ import annotations

import torch

import parakeet_stream as ps
from parakeet_stream.streaming.geometry import chunk_geometry
from parakeet_stream.testing import build_random_model
from parakeet_stream.acceleration.steady_step import SteadyStep
from parakeet_stream.acceleration.traced_step import steady_step_for
from tests.support import collect, packets, speech


def _inputs(encoder, T: int, cache_lens: list[int], seed: int):
    g = torch.Generator().manual_seed(seed)
    c_ch, c_t, c_len = encoder.get_initial_cache_state(batch_size=len(cache_lens))
    return (torch.randn(len(cache_lens), 80, T, generator=g), torch.full((len(cache_lens),), T),
            torch.randn(c_ch.shape, generator=g), torch.randn(c_t.shape, generator=g),
            torch.tensor(cache_lens, dtype=c_len.dtype))


def test_traced_step_equals_eager_for_any_batch_and_cache_length():
    model = build_random_model("tiny", seed=4, att_context_size=((70, 1),))
    geometry = chunk_geometry(model.encoder)
    T = geometry.steady_width
    step = steady_step_for(model.encoder, geometry)
    eager = SteadyStep(model.encoder, geometry.drop_extra).eval()
    with torch.inference_mode():
        step(*_inputs(model.encoder, T, [3, 3], seed=0))  # traced here, on a young cache
        assert step.traced is not None and not step.failed
        for seed, lens in enumerate(([0], [70, 70, 70], [5, 70, 35, 0, 12])):
            args = _inputs(model.encoder, T, lens, seed + 1)
            assert all(torch.equal(a, b) for a, b in zip(step(*args), eager(*args)))
    assert steady_step_for(model.encoder, geometry) is step  # one trace per setup
    model.encoder.set_default_att_context_size([70, 0])
    assert steady_step_for(model.encoder, geometry) is not step  # another look-ahead is another graph


def test_engines_trace_the_step_at_start_and_stream_with_it(tiny_model):
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160))
    try:
        assert engine._scheduler.steady_step.traced is not None  # traced on silence before any stream
        s = engine.open_stream(endpointing=ps.EndpointingOptions(trailing_blank_ms=None, eou=False))
        for p in packets(speech("one two three four five six")):
            s.push(p)
        s.finish()
        collect(s)
        assert engine._scheduler.steady_step.traced is not None
    finally:
        engine.close()


def test_nemo_step_engines_run_nemos_own_layers_and_refuse_a_changed_model():
    import pytest

    from parakeet_stream.acceleration.positions import position_projections_kept

    model = build_random_model("tiny", seed=4, att_context_size=((70, 1),))
    engine = ps.Engine.from_model(model, ps.EngineConfig(model="tiny", chunk_ms=160, nemo_step=True))
    try:
        assert engine._scheduler.steady_step is None and engine._scheduler.kv is None
        assert not any(position_projections_kept(layer.self_attn) for layer in model.encoder.layers)
        audio = speech("one two three four five six")
        s = engine.open_stream(endpointing=ps.EndpointingOptions(trailing_blank_ms=None, eou=False))
        for p in packets(audio):
            s.push(p)
        s.finish()
        assert " ".join(e.text for e in collect(s) if isinstance(e, ps.Final)) == engine.transcribe(audio).text
    finally:
        engine.close()
    ps.Engine.from_model(model, ps.EngineConfig(model="tiny",
                                                chunk_ms=160)).close()  # an engine of ours changes the layers
    with pytest.raises(ValueError, match=r"^nemo_step=True needs a model no other engine has served"):
        ps.Engine.from_model(model, ps.EngineConfig(model="tiny", chunk_ms=160, nemo_step=True))
