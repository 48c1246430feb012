"""Packed linear weights (packed_weights.py): bf16 on the CPU, bit-identical to the model's own linears."""
from __future__ import annotations

import pytest
import torch

import parakeet_stream as ps
from parakeet_stream.acceleration.packed_weights import _onednn_bf16, pack_linear_weights, packed_linears_of
from parakeet_stream.streaming.geometry import chunk_geometry
from parakeet_stream.testing import build_random_model
from parakeet_stream.acceleration.steady_step import SteadyStep
from parakeet_stream.acceleration.traced_step import steady_step_for
from tests.support import collect, packets, speech

pytestmark = pytest.mark.skipif(not _onednn_bf16(), reason="this CPU's oneDNN has no bf16 kernels")


def _bf16_model(seed: int = 4):
    return build_random_model("tiny", seed=seed, att_context_size=((70, 1),)).to(torch.bfloat16)


def test_packed_encoder_equals_the_plain_one_to_the_bit():
    plain, packed = _bf16_model(), _bf16_model()
    packs = pack_linear_weights(packed.encoder)
    assert packs is not None and pack_linear_weights(packed.encoder) is packs  # installing twice changes nothing
    assert len(packs.modules) == sum(type(m) is torch.nn.Linear for m in plain.encoder.modules())
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 80, 301, generator=g).to(torch.bfloat16)
    lengths = torch.tensor([301, 250, 97])
    with torch.inference_mode():
        want, want_len = plain.encoder(audio_signal=feats, length=lengths)
        got, got_len = packed.encoder(audio_signal=feats, length=lengths)
    assert torch.equal(got, want) and torch.equal(got_len, want_len)


def test_traced_step_takes_the_packed_weights_as_inputs_and_equals_the_plain_step():
    plain, packed = _bf16_model(), _bf16_model()
    pack_linear_weights(packed.encoder)
    geometry = chunk_geometry(packed.encoder)
    step = steady_step_for(packed.encoder, geometry)
    assert step.packs is packed_linears_of(packed.encoder)
    reference = SteadyStep(plain.encoder, geometry.drop_extra).eval()
    T = geometry.steady_width
    g = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        for lens in ([3, 3], [70], [5, 70, 35, 0, 12]):
            c_ch, c_t, c_len = packed.encoder.get_initial_cache_state(batch_size=len(lens), dtype=torch.bfloat16)
            args = (torch.randn(len(lens), 80, T, generator=g).to(torch.bfloat16), torch.full((len(lens),), T),
                    torch.randn(c_ch.shape, generator=g).to(torch.bfloat16),
                    torch.randn(c_t.shape, generator=g).to(torch.bfloat16), torch.tensor(lens, dtype=c_len.dtype))
            assert all(torch.equal(a, b) for a, b in zip(step(*args), reference(*args)))
            assert step.traced is not None and not step.failed
    graph = str(step.traced.inlined_graph)
    assert "mkldnn::_linear_pointwise" in graph and "aten::linear" not in graph


def test_a_weight_written_in_place_is_packed_again():
    model = _bf16_model()
    packs = pack_linear_weights(model.encoder)
    layer = packs.modules[0]
    x = torch.randn(2, layer.in_features).to(torch.bfloat16)
    with torch.no_grad():
        layer.weight.mul_(2)
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_fp32_models_keep_their_own_linears():
    model = build_random_model("tiny", seed=4, att_context_size=((70, 1),))
    assert pack_linear_weights(model.encoder) is None
    assert not any("forward" in m.__dict__ for m in model.encoder.modules() if type(m) is torch.nn.Linear)


def test_a_bf16_engine_streams_what_it_decodes_offline():
    model = _bf16_model()
    engine = ps.Engine.from_model(model, ps.EngineConfig(model="tiny-bf16", chunk_ms=160))
    try:
        assert engine.info.dtype == "bfloat16"
        assert packed_linears_of(model.encoder) is not None and engine._scheduler.steady_step.traced is not None
        audio = speech("set a timer for ten minutes then call me at seven thirty")
        s = engine.open_stream(endpointing=ps.EndpointingOptions(trailing_blank_ms=None, eou=False))
        for p in packets(audio):
            s.push(p)
        s.finish()
        finals = [e.text for e in collect(s) if isinstance(e, ps.Final)]
        offline = engine.transcribe(audio).text
        assert offline != "" and " ".join(finals) == offline
    finally:
        engine.close()
