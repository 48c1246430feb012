"""1×1 convolutions computed as matrix products, so that a CPU step gives the same bits at every thread count.

oneDNN splits a 1×1 convolution's work across threads by shape, and its rounding follows the split: the demo
model's subsampling (``pre_encode``) pointwise ``Conv2d`` gave outputs up to 2e-6 apart with one and with two
threads, and through the layers that moved a stream's text away from offline decoding in near-ties whenever the
thread count changed. MKL's sgemm under ``MKL_CBWR=AUTO,STRICT`` (``threads.CPU_RUNTIME_ENV``) gives the same bits
for any thread count, so with these layers an fp32 encoder's output does not depend on the count, and the engine
can move between one thread and all cores while streams run (``threads.ThreadGovernor``) without losing
streamed == offline. ``thread_count_independent`` checks that on the machine at hand, once per engine.

The same products are also cheaper at streaming shapes (2 cores, 64 streams' pointwise conv of a conformer
layer: ~180 us as a oneDNN convolution, ~75 us as one sgemm).
"""
from __future__ import annotations

import torch


class PointwiseAsMatmul(torch.nn.Module):
    """A 1×1, stride-1, ungrouped ``Conv1d``/``Conv2d`` as one ``addmm`` over the channels."""

    def __init__(self, conv: torch.nn.Conv1d | torch.nn.Conv2d) -> None:
        super().__init__()
        # the convolution's own parameters, shapes kept: state dicts load both ways
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.movedim(1, -1)
        rows = channels_last.reshape(-1, channels_last.shape[-1])  # a copy: sgemm wants contiguous rows
        matrix = self.weight.view(self.weight.shape[0], self.weight.shape[1]).t()
        out = torch.mm(rows, matrix) if self.bias is None else torch.addmm(self.bias, rows, matrix)
        return out.reshape(*channels_last.shape[:-1], out.shape[-1]).movedim(-1, 1)


def is_pointwise(module: torch.nn.Module) -> bool:
    return (type(module) in (torch.nn.Conv1d, torch.nn.Conv2d) and all(k == 1 for k in module.kernel_size)
            and all(s == 1 for s in module.stride) and all(d == 1 for d in module.dilation)
            and all(p == 0 for p in module.padding) and module.groups == 1 and module.padding_mode == "zeros")


def replace_pointwise_convs(root: torch.nn.Module) -> int:
    """Put a ``PointwiseAsMatmul`` in place of every plain 1×1 convolution under ``root``; returns how many."""
    replaced = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if is_pointwise(child):
                setattr(parent, name, PointwiseAsMatmul(child))
                replaced += 1
    return replaced


def thread_count_independent(encoder: torch.nn.Module, most: int, *, frames: int = 64, batch: int = 3) -> bool:
    """Whether the encoder's output on a random batch is bit-identical with one thread and with ``most``.

    Runs on the thread that steps the model (its OpenMP pool is the one measured) and leaves ``most`` set."""
    param = next(encoder.parameters())
    features = encoder._feat_in if hasattr(encoder, "_feat_in") else encoder.pre_encode.feat_in
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, features, frames, generator=g).to(param.device, param.dtype)
    lengths = torch.tensor([frames, frames - 13, frames - 29][:batch] + [frames] * max(0, batch - 3),
                           device=param.device)
    outputs = []
    try:
        for threads in (1, most):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outputs.append(encoder(audio_signal=x, length=lengths)[0])
    finally:
        torch.set_num_threads(most)
    return torch.equal(outputs[0], outputs[1])
