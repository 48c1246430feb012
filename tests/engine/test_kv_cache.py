"""Kept keys and values (kv_cache.py): steady steps project only the chunk's rows, and stay bit-identical."""
from __future__ import annotations

import pytest
import torch

import parakeet_stream as ps
from parakeet_stream.acceleration.kv_cache import install_key_value_cache, key_value_cache_of
from parakeet_stream.acceleration.packed_weights import _onednn_bf16, pack_linear_weights
from parakeet_stream.streaming.geometry import chunk_geometry
from parakeet_stream.testing import build_random_model
from parakeet_stream.acceleration.steady_step import SteadyStep
from parakeet_stream.acceleration.traced_step import TracedSteadyStep, steady_step_for
from tests.support import collect, packets, speech

needs_bf16 = pytest.mark.skipif(not _onednn_bf16(), reason="this CPU's oneDNN has no bf16 kernels")


def _bf16_model(seed: int = 5):
    return build_random_model("tiny", seed=seed, att_context_size=((70, 1),)).to(torch.bfloat16)


@needs_bf16
def test_steady_steps_with_kept_keys_and_values_equal_nemos_steps_to_the_bit():
    plain, kept = _bf16_model(), _bf16_model()
    pack_linear_weights(kept.encoder)
    kv = install_key_value_cache(kept.encoder)
    assert kv is not None and install_key_value_cache(kept.encoder) is kv
    geometry = chunk_geometry(kept.encoder)
    step = steady_step_for(kept.encoder, geometry)
    assert step.kv is kv
    nemo = SteadyStep(plain.encoder, geometry.drop_extra).eval()
    T = geometry.steady_width
    g = torch.Generator().manual_seed(3)
    lens = [0, 12, 70]  # a young cache, a filling one, a full one
    c_ch, c_t, c_len = _random_caches(plain.encoder, lens, torch.bfloat16, g)
    with torch.inference_mode():
        keys, values = kv.project(c_ch)
        for _ in range(4):  # the kept keys and values carry from step to step
            x = torch.randn(3, 80, T, generator=g).to(torch.bfloat16)
            want = nemo(x, torch.full((3,), T), c_ch, c_t, c_len)
            *got, keys, values = step(x, torch.full((3,), T), c_ch, c_t, c_len, keys, values)
            assert all(torch.equal(a, b) for a, b in zip(got, want))
            _, _, c_ch, c_t, c_len = want
            projected = kv.project(c_ch)
            assert torch.equal(keys, projected[0]) and torch.equal(values, projected[1])
    assert step.traced is not None and not step.failed


def _random_caches(encoder, lens: list[int], dtype, g: torch.Generator):
    c_ch, c_t, c_len = encoder.get_initial_cache_state(batch_size=len(lens), dtype=dtype)
    return (torch.randn(c_ch.shape, generator=g).to(dtype), torch.randn(c_t.shape, generator=g).to(dtype),
            torch.tensor(lens, dtype=c_len.dtype))


@needs_bf16
def test_the_untraced_steady_step_with_kept_keys_and_values_is_nemos_step_to_the_bit():
    """The eager steady step (what CUDA runs: traced_step.steady_step_for traces on the CPU only), here where
    the kept keys and values are exact: bf16 oneDNN."""
    plain, kept = _bf16_model(), _bf16_model()
    pack_linear_weights(kept.encoder)
    kv = install_key_value_cache(kept.encoder)
    geometry = chunk_geometry(kept.encoder)
    step = TracedSteadyStep(kept.encoder, geometry.drop_extra, trace=False)
    assert step.kv is kv and step.failed
    nemo = SteadyStep(plain.encoder, geometry.drop_extra).eval()
    T = geometry.steady_width
    g = torch.Generator().manual_seed(7)
    c_ch, c_t, c_len = _random_caches(plain.encoder, [70, 3], torch.bfloat16, g)
    with torch.inference_mode():
        keys, values = kv.project(c_ch)
        for _ in range(3):
            x = torch.randn(2, 80, T, generator=g).to(torch.bfloat16)
            want = nemo(x, torch.full((2,), T), c_ch, c_t, c_len)
            *got, keys, values = step(x, torch.full((2,), T), c_ch, c_t, c_len, keys, values)
            assert all(torch.equal(a, b) for a, b in zip(got, want))
            _, _, c_ch, c_t, c_len = want
    assert step.traced is None


def test_kept_keys_and_values_where_rows_are_not_independent_match_nemo_within_rounding():
    """What CUDA gets (``exact_only=False``): fp32 MKL rounds one row differently from a taller product, so the
    step differs from NeMo's in the last bits only, and the kept keys stay those of NeMo's next cache."""
    plain = build_random_model("tiny", seed=5, att_context_size=((70, 1),))
    kept = build_random_model("tiny", seed=5, att_context_size=((70, 1),))
    kv = install_key_value_cache(kept.encoder, exact_only=False)
    assert kv is not None and key_value_cache_of(kept.encoder) is kv
    geometry = chunk_geometry(kept.encoder)
    step = SteadyStep(kept.encoder, geometry.drop_extra, kv=kv).eval()
    nemo = SteadyStep(plain.encoder, geometry.drop_extra).eval()
    T = geometry.steady_width
    g = torch.Generator().manual_seed(3)
    c_ch, c_t, c_len = _random_caches(plain.encoder, [0, 12, 70], torch.float32, g)
    with torch.inference_mode():
        keys, values = kv.project(c_ch)
        for _ in range(4):
            x = torch.randn(3, 80, T, generator=g)
            want = nemo(x, torch.full((3,), T), c_ch, c_t, c_len)
            *got, keys, values = step(x, torch.full((3,), T), c_ch, c_t, c_len, keys, values)
            assert [a.shape for a in got] == [b.shape for b in want]
            assert torch.equal(got[1], want[1]) and torch.equal(got[4], want[4])  # lengths
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            _, _, c_ch, c_t, c_len = want
            projected = kv.project(c_ch)
            torch.testing.assert_close(keys, projected[0], rtol=1e-4, atol=1e-4)


def test_keys_and_values_are_kept_only_where_a_row_alone_gives_the_bits_of_a_taller_product():
    """Whether MKL's fp32 product of one row equals that row within a taller product depends on the CPU (on some,
    even under MKL_CBWR=STRICT, it does not): the cache is installed exactly where the probe says rows are independent,
    and NeMo's attention is left untouched elsewhere."""
    from parakeet_stream.acceleration.kv_cache import _rows_independent

    model = build_random_model("tiny", seed=5, att_context_size=((70, 1),))
    independent = _rows_independent(model.encoder.layers[0].self_attn.linear_k)
    kv = install_key_value_cache(model.encoder)
    assert (kv is not None) == independent
    assert key_value_cache_of(model.encoder) is kv
    patched = ["forward_qkv" in layer.self_attn.__dict__ for layer in model.encoder.layers]
    assert patched == [independent] * len(model.encoder.layers)


@needs_bf16
def test_a_bf16_engine_keeps_keys_and_values_per_stream_across_flushes():
    model = _bf16_model(seed=4)  # whose bf16 offline decode of these sentences the streams match (not all seeds do)
    engine = ps.Engine.from_model(model, ps.EngineConfig(model="tiny-bf16", chunk_ms=160, max_streams=2))
    try:
        assert engine._scheduler.kv is key_value_cache_of(model.encoder) is not None
        assert engine._scheduler.slots.keys is not None
        opts = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
        a, b = speech("two three four"), speech("turn on the radio")
        s1, s2 = engine.open_stream(endpointing=opts), engine.open_stream(endpointing=opts)
        for p1, p2 in zip(packets(a), packets(b[: len(a)])):
            s1.push(p1)
            s2.push(p2)
        for p in packets(b[len(a):]):
            s2.push(p)
        s1.flush()  # a new epoch: NeMo's first steps, then kept keys and values again
        for p in packets(b):
            s1.push(p)
        s1.finish()
        s2.finish()
        got1 = [e.text for e in collect(s1) if isinstance(e, ps.Final)]
        got2 = [e.text for e in collect(s2) if isinstance(e, ps.Final)]
        assert got1 == [engine.transcribe(a).text, engine.transcribe(b).text]
        assert " ".join(got2) == engine.transcribe(b).text
    finally:
        engine.close()


@needs_bf16
def test_two_engines_stepping_one_model_object_at_once_keep_their_steps_apart():
    """Two engines over one model object share its traced step, packed weights and kept position projections;
    their inference threads step at the same time and each stream still decodes exactly."""
    import threading

    model = _bf16_model(seed=4)
    engines = [ps.Engine.from_model(model, ps.EngineConfig(model="tiny-bf16", chunk_ms=160)) for _ in range(2)]
    try:
        audios = [speech("set a timer for ten minutes then call me at seven thirty"), speech("turn on the radio")]
        opts = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
        streams = [[e.open_stream(endpointing=opts) for _ in range(2)] for e in engines]
        texts: dict[tuple[int, int], str] = {}

        def feed(e: int, a: int) -> None:
            s = streams[e][a]
            for p in packets(audios[a]):
                s.push(p)
            s.finish()
            texts[e, a] = " ".join(ev.text for ev in collect(s) if isinstance(ev, ps.Final))

        threads = [threading.Thread(target=feed, args=(e, a)) for e in range(2) for a in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        offline = [engines[0].transcribe(a).text for a in audios]
        assert texts == {(e, a): offline[a] for e in range(2) for a in range(2)}
    finally:
        for e in engines:
            e.close()
