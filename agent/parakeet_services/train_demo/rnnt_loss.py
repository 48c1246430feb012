"""The RNNT loss for training on the CPU, with batched tensor ops.

NeMo's default RNNT loss ("warprnnt_numba") is a CUDA kernel on a GPU, but on the CPU it walks every utterance's
T x U lattice in Python, cell by cell: 89 % of a CPU training step of the demo recipe (py-spy), ~8 s per batch of 32.
NeMo's "pytorch" loss is slower still. Here the forward variable is computed one time step at a time for the whole
batch: along the label axis the recursion alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u],
alpha[t, u-1] + emit[t, u-1]) unrolls to C[u] + logcumsumexp(alpha[t-1] + blank[t-1] - C)[u] with C the cumulative
emission log-probability, so a batch costs T small tensor steps; autograd gives the gradients.
"""
from __future__ import annotations

import torch


class BatchedRNNTLoss(torch.nn.Module):
    """Drop-in for NeMo's ``RNNTLossNumba`` (``RNNTLoss._loss``): per-utterance negative log-likelihoods from the
    joint's logits ``acts`` [B, T, U+1, V]. FastEmit scales the gradient of every label emission by
    ``1 + fastemit_lambda``, as NeMo's kernels do."""

    def __init__(self, blank: int, fastemit_lambda: float = 0.0) -> None:
        super().__init__()
        self.blank = blank
        self.fastemit_lambda = fastemit_lambda
        self.reduction = None  # NeMo's RNNTLoss sets and reduces itself

    def forward(self, acts: torch.Tensor, labels: torch.Tensor, act_lens: torch.Tensor,
                label_lens: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(acts.float(), dim=-1)
        b, t_max, u1, _ = logp.shape
        blank = logp[..., self.blank].double()  # [B, T, U+1]
        targets = labels[:, :u1 - 1].long().clamp(min=0)[:, None, :, None].expand(b, t_max, u1 - 1, 1)
        emit = torch.gather(logp[:, :, :u1 - 1], 3, targets).squeeze(3).double()  # [B, T, U]
        if self.fastemit_lambda:
            emit = emit + self.fastemit_lambda * (emit - emit.detach())
        cum = torch.cat([emit.new_zeros(b, t_max, 1), emit.cumsum(2)], dim=2)  # [B, T, U+1]
        alpha = cum[:, 0]
        alphas = [alpha]
        for t in range(1, t_max):
            alpha = cum[:, t] + torch.logcumsumexp(alpha + blank[:, t - 1] - cum[:, t], dim=1)
            alphas.append(alpha)
        last_t, n_labels, rows = act_lens.long() - 1, label_lens.long(), torch.arange(b, device=acts.device)
        nll = -(torch.stack(alphas, 1)[rows, last_t, n_labels] + blank[rows, last_t, n_labels])
        # NeMo reports (1 + lambda) x NLL under FastEmit (its gradient is the one above): same numbers in the logs
        return (nll + self.fastemit_lambda * nll.detach()).float()


def use_batched_rnnt_loss(model) -> None:
    """Put ``BatchedRNNTLoss`` under the RNNT loss of a NeMo transducer (CPU training only), keeping its blank and
    FastEmit settings."""
    inner = model.loss._loss
    model.loss._loss = BatchedRNNTLoss(blank=inner.blank, fastemit_lambda=getattr(inner, "fastemit_lambda", 0.0))
