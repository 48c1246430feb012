"""The CPU training loss equals NeMo's RNNT loss (value and gradient), FastEmit included."""
from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("fastemit", [0.0, 5e-3])
def test_batched_rnnt_loss_equals_nemo_loss_and_gradient(fastemit):
    from nemo.collections.asr.parts.numba.rnnt_loss.rnnt_pytorch import RNNTLossNumba

    from parakeet_services.train_demo.rnnt_loss import BatchedRNNTLoss

    torch.manual_seed(0)
    b, t, u, v = 3, 9, 5, 7
    acts = torch.randn(b, t, u + 1, v)
    labels = torch.randint(0, v - 1, (b, u))
    act_lens, label_lens = torch.tensor([9, 7, 4]), torch.tensor([5, 3, 0])  # padding and an empty transcript
    results = []
    for loss in (RNNTLossNumba(blank=v - 1, reduction=None, fastemit_lambda=fastemit, clamp=-1),
                 BatchedRNNTLoss(blank=v - 1, fastemit_lambda=fastemit)):
        x = acts.clone().requires_grad_()
        value = loss(x, labels, act_lens, label_lens)
        value.sum().backward()
        results.append((value.detach(), x.grad))
    (ref, ref_grad), (got, got_grad) = results
    assert torch.allclose(got, ref, atol=1e-5, rtol=0)
    assert torch.allclose(got_grad, ref_grad, atol=1e-5, rtol=0)
    assert got_grad[2, 4:].abs().max() == 0  # frames past an utterance's length get no gradient
