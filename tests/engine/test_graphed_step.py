"""The CUDA steady step's batch buckets (graphed_step.py), run here with the eager step in place of graph replay:
a step of B streams uses the first B rows of its bucket's static tensors, and the other rows never leak in."""
from __future__ import annotations

import pytest
import torch

from parakeet_stream.acceleration.graphed_step import GraphedSteadyStep, bucket_of
from parakeet_stream.acceleration.kv_cache import install_key_value_cache
from parakeet_stream.acceleration.packed_weights import _onednn_bf16, pack_linear_weights
from parakeet_stream.streaming.geometry import chunk_geometry
from parakeet_stream.testing import build_random_model
from parakeet_stream.acceleration.steady_step import SteadyStep, silent_inputs


def test_buckets_are_powers_of_two():
    assert [bucket_of(b) for b in (1, 2, 3, 4, 5, 8, 9, 100, 512, 513, 1000)] == [1, 2, 4, 4, 8, 8, 16, 128, 512,
                                                                                   1024, 1024]


def _inputs(encoder, geometry, lens: list[int], dtype, g: torch.Generator, with_kv: bool) -> tuple:
    T = geometry.steady_width
    c_ch, c_t, c_len = encoder.get_initial_cache_state(batch_size=len(lens), dtype=dtype)
    c_ch = torch.randn(c_ch.shape, generator=g).to(dtype)
    kv = (torch.randn(c_ch.shape, generator=g).to(dtype), torch.randn(c_ch.shape, generator=g).to(dtype)) \
        if with_kv else ()
    return (torch.randn(len(lens), 80, T, generator=g).to(dtype), torch.full((len(lens),), T), c_ch,
            torch.randn(c_t.shape, generator=g).to(dtype), torch.tensor(lens, dtype=c_len.dtype), *kv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_step_of_b_streams_in_a_bigger_bucket_equals_the_step_of_those_streams(dtype):
    if dtype == torch.bfloat16 and not _onednn_bf16():
        pytest.skip("this CPU's oneDNN has no bf16 kernels")
    model = build_random_model("tiny", seed=5, att_context_size=((70, 1),)).to(dtype)
    kv = None
    if dtype == torch.bfloat16:  # kept keys and values, as on CUDA (exact here, with packed weights)
        pack_linear_weights(model.encoder)
        kv = install_key_value_cache(model.encoder)
    geometry = chunk_geometry(model.encoder)
    eager = SteadyStep(model.encoder, geometry.drop_extra, kv=kv).eval()
    step = GraphedSteadyStep(eager, model.encoder, capture=False)
    g = torch.Generator().manual_seed(11)
    with torch.inference_mode():
        step.prepare(4, geometry)
        assert sorted(step._buckets) == [1, 2, 4]
        for lens in ([70, 0, 12], [5], [70, 70, 70, 3], [1, 69, 40]):  # bucket 4 again: its 4th row is stale
            args = _inputs(model.encoder, geometry, lens, dtype, g, kv is not None)
            want = eager(*args)
            got = step(*args)
            assert len(got) == len(want) == (7 if kv is not None else 5)
            for a, b in zip(got, want):
                assert a.shape == b.shape
                if dtype == torch.bfloat16:
                    assert torch.equal(a, b)
                else:  # MKL's fp32 product of a taller batch may round differently
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert sorted(step._buckets) == [1, 2, 4] and not step.failed


def test_silent_inputs_are_a_valid_steady_step():
    model = build_random_model("tiny", seed=5, att_context_size=((70, 1),))
    geometry = chunk_geometry(model.encoder)
    with torch.inference_mode():
        step = SteadyStep(model.encoder, geometry.drop_extra).eval()
        enc, enc_len, *_ = step(*silent_inputs(model.encoder, geometry, 2, False))
    assert enc.shape[0] == 2 and torch.isfinite(enc).all() and enc_len.tolist() == [enc.shape[2]] * 2 == [2, 2]
