"""Encoder caches of every live stream, kept in preallocated slot tensors.

A stream owns one slot index for its whole life. A batched step gathers its streams' caches with
``index_select`` and writes the new ones back with ``index_copy_`` (the layout NeMo's own
``CacheAwareContextManager`` uses): no per-stream tensors, no cat/split of the whole batch, and a closed
stream's slot is simply handed to the next one. Capacity grows by doubling up to ``max_slots`` and never shrinks,
so opening and closing streams forever holds no more memory than the peak number of concurrent streams.
"""
from __future__ import annotations

import torch


class CacheSlots:
    def __init__(self, encoder, max_slots: int, dtype: torch.dtype, device: str, initial: int = 4,
                 keys_values: bool = False) -> None:
        self._encoder = encoder
        self.keys_values = keys_values  # also keep the cached frames' attention keys and values (kv_cache.py)
        self.max_slots = max_slots
        self.dtype = dtype
        self.device = device
        self._free: list[int] = []
        self._in_use: set[int] = set()
        self.capacity = 0
        self.channel = self.time = self.channel_len = None
        self.keys = self.values = None  # [L,S,C,D] like channel, when keys_values
        self._grow(min(initial, max_slots))

    def _grow(self, new_capacity: int) -> None:
        ch, t, ln = self._encoder.get_initial_cache_state(batch_size=new_capacity, dtype=self.dtype,
                                                         device=torch.device(self.device))
        if self.capacity:
            ch[:, : self.capacity] = self.channel
            t[:, : self.capacity] = self.time
            ln[: self.capacity] = self.channel_len
        if self.keys_values:
            keys, values = torch.zeros_like(ch), torch.zeros_like(ch)
            if self.capacity:
                keys[:, : self.capacity] = self.keys
                values[:, : self.capacity] = self.values
            self.keys, self.values = keys, values
        self.channel, self.time, self.channel_len = ch, t, ln  # [L,S,C,D], [L,S,D,K-1], [S]
        self._free.extend(range(new_capacity - 1, self.capacity - 1, -1))  # pop() hands out low slots first
        self.capacity = new_capacity

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def acquire(self) -> int:
        if not self._free:
            if self.capacity >= self.max_slots:
                raise RuntimeError("no free cache slot")  # Engine checks capacity first; this is a bug guard
            self._grow(min(self.capacity * 2, self.max_slots))
        slot = self._free.pop()
        self._in_use.add(slot)
        self.reset(slot)
        return slot

    def release(self, slot: int) -> None:
        if slot in self._in_use:
            self._in_use.remove(slot)
            self._free.append(slot)

    def reset(self, slot: int) -> None:
        """Back to the state of a stream that has heard nothing (what get_initial_cache_state gives)."""
        self.channel[:, slot].zero_()
        self.time[:, slot].zero_()
        self.channel_len[slot] = 0
        if self.keys_values:  # rebuilt from channel after the stream's first (NeMo) step
            self.keys[:, slot].zero_()
            self.values[:, slot].zero_()

    def gather(self, index: torch.Tensor, span: slice | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor]:
        """The caches of the slots ``index``; where they are one run of slots in order (``span_of``), views of
        the slot tensors instead of copies (the step reads them before ``scatter`` writes the new ones: at 256
        streams the copy was a tenth of the inference thread's time on the CPU)."""
        if span is not None:
            return self.channel[:, span], self.time[:, span], self.channel_len[span]
        return (self.channel.index_select(1, index), self.time.index_select(1, index),
                self.channel_len.index_select(0, index))

    def scatter(self, index: torch.Tensor, channel: torch.Tensor, time: torch.Tensor,
                channel_len: torch.Tensor) -> None:
        self.channel.index_copy_(1, index, channel.to(self.dtype))
        self.time.index_copy_(1, index, time.to(self.dtype))
        self.channel_len.index_copy_(0, index, channel_len.to(self.channel_len.dtype))

    @staticmethod
    def span_of(slots: list[int]) -> slice | None:
        """``slots`` as one slice where they are consecutive and ascending, else None."""
        first = slots[0]
        return slice(first, first + len(slots)) if slots == list(range(first, first + len(slots))) else None

    def gather_keys_values(self, index: torch.Tensor, span: slice | None = None) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
        """The cached frames' keys and values of the slots ``index``: views where they are one run (as ``gather``;
        twice the channel cache, so at a thousand streams the copy and its allocation were the step's largest)."""
        if span is not None:
            return self.keys[:, span], self.values[:, span]
        return self.keys.index_select(1, index), self.values.index_select(1, index)

    def scatter_keys_values(self, index: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys.index_copy_(1, index, keys.to(self.dtype))
        self.values.index_copy_(1, index, values.to(self.dtype))
