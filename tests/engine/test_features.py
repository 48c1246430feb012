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
    streamed = torch.from_numpy(np.concatenate(parts, axis=1))

    assert int(n) == len(audio) // 160
    assert streamed.shape == offline.shape
    assert torch.max(torch.abs(streamed - offline)).item() <= 1e-5


def test_frames_are_emitted_once_their_window_is_complete(tiny_model):
    feat = IncrementalFeaturizer(tiny_model.preprocessor)
    # frame a needs samples up to a*160 + 256: 255 samples give nothing, 256 give frame 0, 416 give frame 1
    assert feat.push(np.zeros(255, np.float32)).shape[1] == 0
    assert feat.push(np.zeros(1, np.float32)).shape[1] == 1
    assert feat.push(np.zeros(159, np.float32)).shape[1] == 0
    assert feat.push(np.zeros(1, np.float32)).shape[1] == 1
    assert feat.flush().shape[1] == 0  # 416 // 160 = 2 frames in all, both already out
