"""Streamed log-mel frames equal the model's own preprocessor on the whole signal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from parakeet_stream.streaming.features import IncrementalFeaturizer
from tests.support import speech


@pytest.mark.parametrize("packet_ms", [10, 20, 37])
def test_incremental_features_equal_offline_preprocessor(tiny_model, packet_ms):
    audio = np.concatenate([speech("call me at seven thirty tomorrow morning"), np.zeros(1234, np.float32)])
    pre = tiny_model.preprocessor
    with torch.inference_mode():
        offline, n = pre(input_signal=torch.from_numpy(audio)[None], length=torch.tensor([len(audio)]))
    offline = offline[0, :, : int(n)]

    feat = IncrementalFeaturizer(pre)
    step = 16 * packet_ms
    parts = [feat.push(audio[i:i + step]) for i in range(0, len(audio), step)] + [feat.flush()]
    streamed = torch.from_numpy(np.concatenate(parts).T)  # (frame-major [T, n_mels])

    assert int(n) == len(audio) // 160
    assert streamed.shape == offline.shape
    assert torch.max(torch.abs(streamed - offline)).item() <= 1e-5


def test_frames_are_emitted_once_their_window_is_complete(tiny_model):
    feat = IncrementalFeaturizer(tiny_model.preprocessor)
    # frame a needs samples up to a*160 + 256: 255 samples give nothing, 256 give frame 0, 416 give frame 1
    assert feat.push(np.zeros(255, np.float32)).shape[0] == 0
    assert feat.push(np.zeros(1, np.float32)).shape[0] == 1
    assert feat.push(np.zeros(159, np.float32)).shape[0] == 0
    assert feat.push(np.zeros(1, np.float32)).shape[0] == 1
    assert feat.flush().shape[0] == 0  # 416 // 160 = 2 frames in all, both already out


def test_audio_received_faster_than_featurized_grows_the_buffer_and_stays_exact(tiny_model):
    """An engine behind its streams featurizes seconds of audio at once: the featurizer's buffer (a quarter
    second) grows, and is moved down when full, without changing a frame."""
    from parakeet_stream.streaming.features import featurize_batch

    audio = np.concatenate([speech("call me at seven thirty tomorrow morning")] * 2)
    pre = tiny_model.preprocessor
    with torch.inference_mode():
        offline, n = pre(input_signal=torch.from_numpy(audio)[None], length=torch.tensor([len(audio)]))
    feat = IncrementalFeaturizer(pre)
    parts, i = [], 0
    for size in (5 * 16000 // 2, 320, 3 * 16000, 320, 16000 - 7):  # 2.5 s, a packet, 3 s, ...: then the rest
        feat.append(audio[i:i + size])
        i += size
        parts.append(featurize_batch(pre, [feat])[0])
    feat.append(audio[i:])
    parts += [featurize_batch(pre, [feat])[0], feat.flush()]
    streamed = np.concatenate(parts).T
    assert streamed.shape[1] == int(n) == len(audio) // 160
    assert np.max(np.abs(streamed - offline[0, :, : int(n)].numpy())) <= 1e-5


def test_frame_buffer_gives_each_chunk_after_its_context():
    """What the scheduler steps: each chunk after the last ``keep`` frames stepped (all of them while fewer were),
    the first without context, across the buffer being moved down and grown; frame-major and contiguous."""
    from parakeet_stream.streaming.features import FrameBuffer

    frames = np.arange(400 * 3, dtype=np.float32).reshape(400, 3)  # frame t holds 3t, 3t + 1, 3t + 2
    buf = FrameBuffer(n_mels=3, keep=9, capacity=20)
    fed, stepped = 0, 0
    for k, take in [(7, 7), (5, 3), (30, 16), (1, 16), (100, 16), (0, 16), (0, 16)]:
        buf.append(frames[fed:fed + k])
        fed += k
        assert buf.pending == fed - stepped
        x = buf.take(take, context=stepped > 0)
        first = max(0, stepped - 9) if stepped else stepped
        np.testing.assert_array_equal(x, frames[first:stepped + take])
        assert x.flags.c_contiguous
        stepped += take
    assert buf.pending == fed - stepped == 143 - 90


def test_a_bf16_model_keeps_its_preprocessor_exactly_fp32():
    """``prepare_model`` converts the weights, not the window and mel filterbank: through bf16 and back they would
    move by up to 2e-3, and every feature with them (streamed and offline alike, so no exactness test sees it)."""
    from parakeet_stream.engine import prepare_model
    from parakeet_stream.testing import build_random_model

    model = build_random_model("tiny", seed=3)
    before = {name: t.clone() for name, t in model.preprocessor.named_buffers() if t.is_floating_point()}
    prepare_model(model, torch.bfloat16)
    after = dict(model.preprocessor.named_buffers())
    assert before and set(before) <= set(after)
    for name, t in before.items():
        assert after[name].dtype == torch.float32
        assert torch.equal(after[name], t), name
    assert next(model.encoder.parameters()).dtype == torch.bfloat16


def test_features_are_computed_where_the_config_says():
    import parakeet_stream as ps

    with pytest.raises(ValueError, match="features_device must be one of auto, cpu, got 'gpu'"):
        ps.EngineConfig(features_device="gpu")
