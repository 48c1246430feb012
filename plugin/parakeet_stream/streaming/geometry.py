"""The chunk geometry of a cache-aware encoder: how many feature frames each streaming step reads."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkGeometry:
    """In feature frames, for the encoder's current look-ahead (NeMo's ``streaming_cfg``)."""

    first_chunk: int  # the first step's chunk (no pre-encode cache before it)
    chunk: int  # every later step's new frames
    pre_encode_cache: int  # frames of the previous chunk each later step reads again
    drop_extra: int  # pre-encoded frames a later step drops (``drop_extra_pre_encoded``)

    @property
    def steady_width(self) -> int:
        """Frames a steady step reads: the pre-encode cache and the chunk."""
        return self.pre_encode_cache + self.chunk


def chunk_geometry(encoder) -> ChunkGeometry:
    cfg = encoder.streaming_cfg
    return ChunkGeometry(int(cfg.chunk_size[0]), int(cfg.chunk_size[1]), int(cfg.pre_encode_cache_size[1]),
                         int(cfg.drop_extra_pre_encoded))
