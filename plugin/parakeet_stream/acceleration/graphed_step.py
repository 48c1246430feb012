"""The steady step on CUDA, replayed from CUDA graphs captured once per batch-size bucket.

In eager PyTorch a cache-aware step launches a few thousand kernels and costs about the same at B=1 as at B=256
(~50 ms for the 0.6 B model on an H200: launch-bound). Captured in a CUDA graph it replays the same kernels
without Python or launch overhead: 4.5 ms at B=1, 16.5 ms at B=128, outputs identical to eager
(measured on an H200). A graph has fixed shapes and addresses, so each bucket (a power of two up to the
scheduler's largest batch) owns static inputs: a step of B streams copies its inputs into the first B rows of the
smallest bucket of at least B, replays it, and reads the first B rows of its static outputs. The other rows hold
an earlier step's inputs (or silence), valid inputs whose outputs are ignored: the rows of a step are independent
(per-row masks and lengths, BatchNorm in eval mode).

A bucket is captured on first use (or up front by ``prepare``); its first replay is checked against the eager step
on the same inputs, and any failure or difference falls back to the eager step for good, with a log line.
``PARAKEET_CUDA_GRAPHS=0`` turns graphs off.
"""
from __future__ import annotations

import logging
import os

import torch

from ..streaming.geometry import ChunkGeometry
from .steady_step import silent_inputs

logger = logging.getLogger("parakeet_stream")

# the batch dimension of each input and output: x, lengths, cache_channel, cache_time, cache_len, [keys, values]
BATCH_DIMS = (0, 0, 1, 1, 0, 1, 1)


def graphs_enabled() -> bool:
    return os.environ.get("PARAKEET_CUDA_GRAPHS", "1") != "0"


def bucket_of(batch: int) -> int:
    """The smallest power of two holding ``batch`` rows."""
    return 1 << max(batch - 1, 0).bit_length()


class _Bucket:
    def __init__(self, inputs: tuple) -> None:
        self.inputs = inputs  # static tensors the graph reads
        self.outputs: tuple = ()  # static tensors the graph writes
        self.graph = None  # torch.cuda.CUDAGraph, or None where replay is the eager step (``capture=False``)


class GraphedSteadyStep:
    """``__call__`` = the steady ``SteadyStep`` (``steady_step.py``) of B streams, replayed from the graph of its
    bucket. With ``capture=False`` the buckets' static inputs and outputs work the same and "replay" runs the eager
    step over the whole bucket: the bucket mechanics on a machine without CUDA (tests)."""

    def __init__(self, eager: torch.nn.Module, encoder, *, capture: bool = True) -> None:
        self.eager = eager
        self.kv = eager.kv
        self._encoder = encoder
        self._capture = capture
        self._buckets: dict[int, _Bucket] = {}
        self._pool = torch.cuda.graph_pool_handle() if capture else None  # shared: buckets never run at once
        self.failed = False

    def prepare(self, max_batch: int, geometry: ChunkGeometry) -> None:
        """Capture every bucket up to ``max_batch`` now, so that no step waits for a capture (~0.1-0.5 s each)."""
        silence = None
        b = 1
        while b <= bucket_of(max_batch) and not self.failed:
            if b not in self._buckets:
                with torch.inference_mode():
                    silence = silence or silent_inputs(self._encoder, geometry, 1, self.kv is not None)
                    self._bucket(b, silence)
            b *= 2

    def __call__(self, x, lengths, cache_channel, cache_time, cache_len, keys=None, values=None):
        args = (x, lengths, cache_channel, cache_time, cache_len) + ((keys, values) if self.kv is not None else ())
        if self.failed:
            return self.eager(*args)
        batch = x.shape[0]
        bucket = self._buckets.get(bucket_of(batch))
        if bucket is None:
            bucket = self._bucket(bucket_of(batch), args)
            if bucket is None:
                return self.eager(*args)
        for static, given, dim in zip(bucket.inputs, args, BATCH_DIMS):
            static.narrow(dim, 0, batch).copy_(given)
        self._replay(bucket)
        # the encoder output is read after the next step may have replayed: a copy; the caches are copied into the
        # slots at once
        return tuple(out.narrow(dim, 0, batch).clone() if i < 2 else out.narrow(dim, 0, batch)
                     for i, (out, dim) in enumerate(zip(bucket.outputs, BATCH_DIMS)))

    def _replay(self, bucket: _Bucket) -> None:
        if bucket.graph is not None:
            bucket.graph.replay()
        else:
            for static, out in zip(bucket.outputs, self.eager(*bucket.inputs)):
                static.copy_(out)

    def _bucket(self, size: int, example: tuple) -> _Bucket | None:
        """Static inputs of ``size`` rows, every row a copy of ``example``'s first (valid inputs), then the graph."""
        inputs = tuple(given.narrow(dim, 0, 1).repeat_interleave(size, dim=dim).contiguous()
                       for given, dim in zip(example, BATCH_DIMS))
        bucket = _Bucket(inputs)
        try:
            if self._capture:
                bucket.graph, bucket.outputs = self._captured(inputs)
                bucket.graph.replay()
                expected = self.eager(*inputs)
                if not all(torch.equal(a, b) for a, b in zip(bucket.outputs, expected)):
                    raise RuntimeError("the graph's replay differs from the eager step")
            else:
                bucket.outputs = tuple(out.clone() for out in self.eager(*inputs))
        except Exception as e:  # graphs are an optimisation: never fail a stream for them
            self.failed = True
            self._buckets.clear()
            logger.warning("encoder step not captured in a CUDA graph, running eager",
                           extra={"batch": size, "reason": f"{type(e).__name__}: {e}"})
            return None
        self._buckets[size] = bucket
        logger.info("encoder step captured", extra={"batch": size, "graph": bucket.graph is not None})
        return bucket

    def _captured(self, inputs: tuple) -> tuple:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture (cuBLAS handles, lazy inits), as torch advises
            for _ in range(3):
                self.eager(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self.eager(*inputs)
        return graph, tuple(outputs)
