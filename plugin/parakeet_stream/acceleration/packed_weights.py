"""The encoder's linear layers with their weights packed once for oneDNN, instead of on every call (bf16, CPU).

On the CPU a bf16 ``F.linear`` runs oneDNN, which first reorders the weight into its blocked layout, on every call.
A streaming step multiplies few rows (2 frames per stream) by every weight of the model, so that reorder is a large
share of the step: packing each weight once and calling oneDNN's packed linear (what Inductor's freezing pass
does) takes the traced 114 M step from 34 to 28 ms at B=1 and from 50 to 42 ms at B=4 (2 cores, bf16). The packed
op computes the very same oneDNN product, so outputs are bit-identical (checked once per model at packing; any
difference and the model keeps its own linears). The packed copies cost memory: one more copy of the linear
weights (~0.2 GB for the 114 M model).

TorchScript cannot hold a packed (``mkldnn``) tensor as a constant, so the traced steady step
(``traced_step.py``) takes the packed weights as inputs: ``PackedLinears.using`` lends them to the layers while it
is traced, and ``tensors()`` gives them at every call.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import Iterator, Optional

import torch

from .positions import tensor_version

logger = logging.getLogger("parakeet_stream")

_MARK = "_parakeet_packed_linears"


def _packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """oneDNN's linear over a weight packed by ``_reorder_linear_weight``."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, and what traced_step.py uses
    # scripted: tracing cannot record the op's (empty) scalar list, but it records a call to a script function
    packed_linear = torch.jit.script(_packed_linear)


class PackedLinears:
    """Every plain ``nn.Linear`` of an encoder, computed from a packed copy of its weight while not training."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        # a layer whose instance forward is already replaced (the memoised position projection) keeps its own
        self.modules = [m for m in encoder.modules() if type(m) is torch.nn.Linear and "forward" not in m.__dict__]
        self._keys: list[tuple] = [()] * len(self.modules)
        self._packed: list[torch.Tensor] = [torch.empty(0)] * len(self.modules)
        self._local = threading.local()  # .lent: the traced step's inputs while it runs, per inference thread
        self.tensors()

    def weight(self, i: int) -> torch.Tensor:
        """Layer ``i``'s packed weight, packed again if the weight changed (another dtype or device, or written
        in place)."""
        w = self.modules[i].weight
        key = (w.data_ptr(), w.dtype, w.device, tensor_version(w))
        if key != self._keys[i]:
            self._packed[i] = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 8)
            self._keys[i] = key
        return self._packed[i]

    def tensors(self) -> list[torch.Tensor]:
        """Every layer's packed weight, in order (the traced step's extra inputs)."""
        return [self.weight(i) for i in range(len(self.modules))]

    @contextlib.contextmanager
    def using(self, tensors: tuple[torch.Tensor, ...]) -> Iterator[None]:
        """Layers compute with ``tensors`` (the traced step's inputs, so the trace records them as inputs)."""
        self._local.lent = list(tensors)
        try:
            yield
        finally:
            self._local.lent = None

    def _install(self) -> None:
        for i, m in enumerate(self.modules):
            m.forward = self._forward_of(i, m)  # an instance attribute: found before the class's forward

    def _forward_of(self, i: int, m: torch.nn.Linear):
        plain = type(m).forward.__get__(m)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if m.training or torch.is_grad_enabled() or x.dtype != torch.bfloat16 or x.device.type != "cpu":
                return plain(x)
            lent = getattr(self._local, "lent", None)
            weight = lent[i] if lent is not None else self.weight(i)
            return packed_linear(x, weight, m.bias)

        return forward

    def _matches_plain(self) -> bool:
        """One product of each layer, packed and plain, on the same random rows: equal to the bit, or not used."""
        g = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for m, w in zip(self.modules, self.tensors()):
                x = torch.randn(3, m.in_features, generator=g).to(torch.bfloat16)
                if not torch.equal(packed_linear(x, w, m.bias), torch.nn.functional.linear(x, m.weight, m.bias)):
                    return False
        return True


def pack_linear_weights(encoder: torch.nn.Module) -> PackedLinears | None:
    """Install packed linears on ``encoder`` (idempotent) where they apply: bf16 weights on a CPU whose oneDNN
    has bf16 kernels; None elsewhere (fp32, CUDA), where the layers stay as they are."""
    if _MARK in encoder.__dict__:
        return encoder.__dict__[_MARK]
    param = next(encoder.parameters())
    if param.device.type != "cpu" or param.dtype != torch.bfloat16 or not _onednn_bf16():
        return None
    packs = PackedLinears(encoder)
    if not packs.modules:
        return None
    if not packs._matches_plain():
        logger.warning("packed linear weights differ from the plain product on this CPU: not used")
        encoder.__dict__[_MARK] = None
        return None
    packs._install()
    encoder.__dict__[_MARK] = packs
    return packs


def packed_linears_of(encoder: torch.nn.Module) -> PackedLinears | None:
    """What ``pack_linear_weights`` installed on ``encoder``, if anything."""
    return encoder.__dict__.get(_MARK)


def _onednn_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
