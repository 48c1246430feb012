"""Keys and values of the cached frames, kept from the step that computed them instead of projected again.

NeMo's cache-aware attention caches each layer's *input* for the last ``C`` frames (``cache_last_channel``) and,
every step, projects all ``C + T`` rows through ``linear_k`` and ``linear_v``: with C=70 and T=2 (160 ms), 75 % of
a step's weight multiply-adds re-project old audio (2·C·d² = 140·d² per stream and layer, against 46·d² for the
chunk's own rows through every linear and pointwise convolution). Here the projections of the cached rows are
kept, per stream and layer, in slot tensors beside NeMo's caches (``slots.CacheSlots``), and a step projects only
its new rows: K = [K_cache ; linear_k(new)].

That is exact where a row's projection does not depend on the other rows of the product: oneDNN's bf16 linear
(``packed_weights.py``) on the CPU; checked when installed. On CUDA it is not (cuBLAS picks its kernel by the
product's height), but there batching streams already changes each stream's rounding the same way, so the engine
installs it on CUDA too (``exact_only=False``): at a thousand streams the step is compute-bound and this removes
three quarters of its weight multiply-adds. NeMo's own cache is still computed and kept, so every other step kind
(first chunk, the R=0 second step, the last chunk) runs NeMo's code unchanged, and afterwards the kept
projections are rebuilt from NeMo's cache (``project``).

Only the steady step (``traced_step.py``: traced on the CPU; ``graphed_step.py`` on CUDA) uses it:
``KeyValueCache.using`` lends the gathered keys and values to the attention layers while the step runs, and
collects the next ones.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

_MARK = "_parakeet_kv_cache"


class _Lent:
    """One step's keys and values [L, B, C, D] and, per layer, the next ones."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values = keys, values
        n = keys.shape[0]
        self.next_keys: list[torch.Tensor | None] = [None] * n
        self.next_values: list[torch.Tensor | None] = [None] * n
        self.active = [False] * n


class KeyValueCache:
    """Installed on every self-attention layer of an encoder: with keys and values lent, a layer projects only the
    chunk's rows; otherwise it is NeMo's layer."""

    def __init__(self, encoder) -> None:
        self.layers = [layer.self_attn for layer in encoder.layers]
        self._local = threading.local()  # .lent: one step's keys and values, per inference thread

    @contextlib.contextmanager
    def using(self, keys: torch.Tensor, values: torch.Tensor) -> Iterator[_Lent]:
        self._local.lent = lent = _Lent(keys, values)
        try:
            yield lent
        finally:
            self._local.lent = None

    def step(self, run, keys: torch.Tensor, values: torch.Tensor) -> tuple:
        """``run()`` (a steady ``cache_aware_stream_step``) with ``keys``/``values`` lent; its outputs and then the
        next keys and values, [L, B, C, D] each."""
        with self.using(keys, values) as lent:
            out = run()
            if not all(lent.active):
                raise RuntimeError("a self-attention layer ran without the kept keys and values")
            return (*out, torch.stack(lent.next_keys), torch.stack(lent.next_values))

    def project(self, channel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of NeMo's cache ``channel`` [L, B, C, D], as the layers would project them."""
        keys = torch.stack([attn.linear_k(channel[i]) for i, attn in enumerate(self.layers)])
        values = torch.stack([attn.linear_v(channel[i]) for i, attn in enumerate(self.layers)])
        return keys, values

    def _install(self) -> None:
        for i, attn in enumerate(self.layers):
            attn.update_cache = self._update_cache_of(i, attn)
            attn.forward_qkv = self._forward_qkv_of(i, attn)

    def _update_cache_of(self, i: int, attn):
        nemo = type(attn).update_cache.__get__(attn)

        def update_cache(key, value, query, cache):
            lent = getattr(self._local, "lent", None)
            if lent is None or cache is None:
                return nemo(key, value, query, cache)
            # NeMo's own next cache, as MultiHeadAttention.update_cache makes it (without the [cache; key] rows,
            # which only the projections needed)
            keep = query.shape[1] - attn.cache_drop_size
            cache_next = torch.cat([cache[:, keep:, :], query[:, :keep, :]], dim=1)
            lent.active[i] = True
            return key, value, query, cache_next  # only the chunk's rows go on to forward_qkv

        return update_cache

    def _forward_qkv_of(self, i: int, attn):
        nemo = type(attn).forward_qkv.__get__(attn)

        def forward_qkv(query, key, value):
            lent = getattr(self._local, "lent", None)
            if lent is None or not lent.active[i]:
                return nemo(query, key, value)
            n = query.size(0)
            cached_k, cached_v = lent.keys[i], lent.values[i]
            k_all = torch.cat([cached_k, attn.linear_k(key)], dim=1)  # = linear_k([cache; key]), row by row
            v_all = torch.cat([cached_v, attn.linear_v(value)], dim=1)
            # the next cache is [cache[keep:]; new[:keep]] (update_cache), i.e. these rows of [cache; new]
            keep, size = query.shape[1] - attn.cache_drop_size, cached_k.shape[1]
            lent.next_keys[i] = k_all[:, keep:keep + size]
            lent.next_values[i] = v_all[:, keep:keep + size]
            q = attn.linear_q(query).view(n, -1, attn.h, attn.d_k)
            k = k_all.view(n, -1, attn.h, attn.d_k)
            v = v_all.view(n, -1, attn.h, attn.d_k)
            return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

        return forward_qkv


def install_key_value_cache(encoder, *, exact_only: bool = True) -> KeyValueCache | None:
    """Keep the cached frames' keys and values on ``encoder`` (idempotent) where every layer is NeMo's
    relative-position attention and, with ``exact_only``, its projections are independent of the other rows
    (checked); else None."""
    if _MARK in encoder.__dict__:
        return encoder.__dict__[_MARK]
    from nemo.collections.asr.parts.submodules.multi_head_attention import RelPositionMultiHeadAttention

    layers = getattr(encoder, "layers", ())
    if not (layers and all(type(getattr(layer, "self_attn", None)) is RelPositionMultiHeadAttention
                           for layer in layers)):
        return None
    if exact_only and not _rows_independent(layers[0].self_attn.linear_k):
        return None
    kv = KeyValueCache(encoder)
    kv._install()
    encoder.__dict__[_MARK] = kv
    return kv


def key_value_cache_of(encoder) -> KeyValueCache | None:
    return encoder.__dict__.get(_MARK)


def _rows_independent(linear: torch.nn.Linear) -> bool:
    """Whether ``linear`` gives each row the same bits alone as within a taller product (the layer's own kernel)."""
    param = linear.weight
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 72, linear.in_features, generator=g).to(dtype=param.dtype, device=param.device)
    with torch.inference_mode():
        whole = linear(x)
        parts = ((slice(None), slice(70, 72)), (slice(None), slice(71, 72)), (slice(None), slice(0, 70)),
                 (slice(0, 1), slice(71, 72)))  # a chunk's rows, one row, the cache's rows, one row of one stream
        return all(torch.equal(whole[rows, cols], linear(x[rows, cols].contiguous())) for rows, cols in parts)
