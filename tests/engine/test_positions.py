"""The kept relative-position projections (positions.py) change no output and are recomputed when they must be."""
from __future__ import annotations

import torch

from parakeet_stream.acceleration.positions import keep_position_projections
from parakeet_stream.testing import build_random_model


def _steps(encoder, feats: torch.Tensor, chunk: int, pre_cache: int, drop: int) -> list[torch.Tensor]:
    """The encoder's outputs for ``feats`` (1, mels, T), stepped cache-aware ``chunk`` mel frames at a time."""
    c_ch, c_t, c_len = encoder.get_initial_cache_state(batch_size=1)
    outs, pos = [], 0
    with torch.inference_mode():
        while pos + chunk <= feats.shape[2]:
            start = max(0, pos - pre_cache)
            x = feats[:, :, start:pos + chunk]
            out, _, c_ch, c_t, c_len = encoder.cache_aware_stream_step(
                processed_signal=x, processed_signal_length=torch.tensor([x.shape[2]]), cache_last_channel=c_ch,
                cache_last_time=c_t, cache_last_channel_len=c_len, keep_all_outputs=False,
                drop_extra_pre_encoded=0 if pos == 0 else drop)
            outs.append(out)
            pos += chunk
    return outs


def _tiny():
    return build_random_model("tiny", seed=3, att_context_size=((70, 1),))


def test_streamed_encoder_output_is_bit_identical_and_the_projection_is_reused():
    plain, kept = _tiny(), _tiny()
    memos = keep_position_projections(kept.encoder)
    assert len(memos) == len(kept.encoder.layers) == 4
    assert keep_position_projections(kept.encoder) == memos  # installing twice changes nothing
    assert kept.state_dict().keys() == plain.state_dict().keys()

    cfg = plain.encoder.streaming_cfg
    chunk, pre, drop = int(cfg.chunk_size[1]), int(cfg.pre_encode_cache_size[1]), int(cfg.drop_extra_pre_encoded)
    feats = torch.randn(1, 80, chunk * 40, generator=torch.Generator().manual_seed(0))
    a = _steps(plain.encoder, feats, chunk, pre, drop)
    b = _steps(kept.encoder, feats, chunk, pre, drop)
    assert len(a) == 40
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # the first chunk sees fewer frames (no pre-encode cache yet); every later one reuses the projection
    assert [m.hits for m in memos] == [38] * 4


def test_changed_weights_or_training_compute_the_projection_again():
    model = _tiny()
    linear = model.encoder.layers[0].self_attn.linear_pos
    memo = keep_position_projections(model.encoder)[0]
    x = torch.randn(1, 9, linear.in_features)
    with torch.inference_mode():
        first = linear(x)
        assert linear(x) is first and memo.hits == 1
    with torch.no_grad():
        linear.weight.mul_(2.0)  # bumps the weight's version
    with torch.inference_mode():
        again = linear(x)
    assert memo.hits == 1 and torch.allclose(again, 2 * first)
    y = linear(x)  # gradients enabled: the layer's own forward, nothing kept
    assert y.requires_grad and memo.hits == 1
