"""The steady streaming step (full pre-encode context, not the last chunk) as a module, and its silent inputs.

Shared by the two ways the engine runs it faster than eager: traced on the CPU (``traced_step.py``) and replayed
from CUDA graphs (``graphed_step.py``).
"""
from __future__ import annotations

import torch

from ..streaming.geometry import ChunkGeometry
from .kv_cache import KeyValueCache
from .packed_weights import PackedLinears


class SteadyStep(torch.nn.Module):
    """NeMo's ``cache_aware_stream_step`` of a steady chunk as a module of tensors in and out: what is traced
    (``traced_step.py``), captured in CUDA graphs (``graphed_step.py``) or run eager."""

    def __init__(self, encoder, drop: int, packs: PackedLinears | None = None,
                 kv: KeyValueCache | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.drop = drop
        self.packs = packs
        self.kv = kv

    def forward(self, x, lengths, cache_channel, cache_time, cache_len, *extra):
        """``extra``: the kept keys and values [L, B, C, D] when ``kv`` (``kv_cache.py``; then two more outputs: the
        next ones), then the packed linear weights when ``packs`` (``packed_weights.py``): inputs, not constants."""
        def step():
            return self.encoder.cache_aware_stream_step(
                processed_signal=x, processed_signal_length=lengths, cache_last_channel=cache_channel,
                cache_last_time=cache_time, cache_last_channel_len=cache_len, keep_all_outputs=False,
                drop_extra_pre_encoded=self.drop)

        run = step
        if self.kv is not None:
            keys, values, extra = extra[0], extra[1], extra[2:]
            run = lambda: self.kv.step(step, keys, values)  # noqa: E731
        if self.packs is None:
            return run()
        with self.packs.using(extra):
            return run()


def silent_inputs(encoder, geometry: ChunkGeometry, batch: int, with_kv: bool) -> tuple:
    """Inputs of a steady step of ``batch`` streams that have heard nothing: zero features and caches (with zero
    kept keys and values, which a zero cache does not project to: any finite rows do where outputs are unread)."""
    param = next(encoder.parameters())
    width = geometry.steady_width
    x = torch.zeros(batch, int(encoder._feat_in), width, dtype=param.dtype, device=param.device)
    lengths = torch.full((batch,), width, dtype=torch.int64, device=param.device)
    c_ch, c_t, c_len = encoder.get_initial_cache_state(batch_size=batch, dtype=param.dtype, device=param.device)
    kv = (torch.zeros_like(c_ch), torch.zeros_like(c_ch)) if with_kv else ()
    return (x, lengths, c_ch, c_t, c_len, *kv)
