"""The encoder's steady streaming step, traced once into TorchScript so that it runs without Python per op.

A cache-aware step of the 114 M model runs ~1 500 aten ops; in eager PyTorch each goes through Python and the GIL,
which on a 2-core CPU is ~10 ms of a 45 ms step (B=1) and competes with the threads that receive audio. Nearly
every step is the steady kind (full pre-encode context, ``drop_extra_pre_encoded``, not the last chunk): that one
call is traced with ``torch.jit.trace`` the first time it runs and replayed after. The traced graph runs the same
aten ops on the same inputs, so its outputs are bit-identical to eager (checked on the first call; tested), and
it takes any batch size and any per-stream cache length (they are tensor inputs, not Python values). First
chunks, the R=0 second step and last chunks stay eager. Any failure to trace falls back to eager for good.
"""
from __future__ import annotations

import logging
import warnings

import torch

from ..streaming.geometry import ChunkGeometry
from .graphed_step import GraphedSteadyStep, graphs_enabled
from .kv_cache import key_value_cache_of
from .packed_weights import packed_linears_of
from .steady_step import SteadyStep, silent_inputs

logger = logging.getLogger("parakeet_stream")


class TracedSteadyStep:
    """``__call__`` = ``encoder.cache_aware_stream_step`` of a steady chunk; with ``trace``, traced on first use.
    With kept keys and values (``kv``), it takes them after the caches and returns the next ones after NeMo's
    outputs."""

    def __init__(self, encoder, drop: int, *, trace: bool = True) -> None:
        param = next(encoder.parameters())
        # on the CPU both are exact for bf16 only, which is where they were installed (a model may change dtype);
        # on CUDA the kept keys and values are installed without being exact (kv_cache.py)
        bf16_cpu = param.dtype == torch.bfloat16 and param.device.type == "cpu"
        self.packs = packed_linears_of(encoder) if bf16_cpu else None
        self.kv = key_value_cache_of(encoder) if self.packs is not None or param.device.type == "cuda" else None
        self.eager = SteadyStep(encoder, drop, self.packs, self.kv).eval()
        self.traced = None
        self.failed = not trace  # an untraced step runs eager for good, as one whose trace failed
        self._encoder = encoder

    def prepare(self, max_batch: int, geometry: ChunkGeometry) -> None:
        """Trace now, on silence, so that the first stream's first steady chunk does not wait for it (~1 s for the
        114 M model). Once per model setup: later engines over the same model reuse the graph. ``max_batch`` is
        unused (a trace takes any batch); ``GraphedSteadyStep.prepare`` needs it."""
        if self.traced is None and not self.failed:
            with torch.inference_mode():
                self(*silent_inputs(self._encoder, geometry, 1, self.kv is not None))

    def __call__(self, x, lengths, cache_channel, cache_time, cache_len, keys=None, values=None):
        args = (x, lengths, cache_channel, cache_time, cache_len)
        if self.kv is not None:
            args += (keys, values)
        if self.packs is not None:
            args += tuple(self.packs.tensors())
        if self.traced is not None:
            return self.traced(*args)
        expected = self.eager(*args)
        if not self.failed:
            self._trace(args, expected)
        return expected

    def _trace(self, args: tuple, expected: tuple) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about Python values: checked below instead
                traced = torch.jit.trace(self.eager, args, check_trace=False)
            got = traced(*args)
            if not all(torch.equal(a, b) for a, b in zip(got, expected)):
                raise RuntimeError("traced step differs from eager")
        except Exception as e:  # tracing is an optimisation: never fail a stream for it
            self.failed = True
            logger.warning("encoder step not traced, running eager", extra={"reason": f"{type(e).__name__}: {e}"})
            return
        self.traced = traced


def steady_step_for(encoder, geometry: ChunkGeometry):
    """One steady step per encoder configuration, kept on the encoder: every engine over the same model (one per
    benchmark level, say) reuses it instead of tracing or capturing again (~1 s for the 114 M model, inside a
    step). A graph holds the look-ahead, chunk geometry, dtype and device it was made with, so they are its key.
    Traced on the CPU; on CUDA replayed from CUDA graphs (``graphed_step.py``), or eager with
    ``PARAKEET_CUDA_GRAPHS=0``."""
    param = next(encoder.parameters())
    key = (tuple(int(c) for c in encoder.att_context_size), geometry, param.dtype, str(param.device))
    steps = encoder.__dict__.setdefault("_parakeet_steady_steps", {})
    if key not in steps:
        if param.device.type == "cuda" and graphs_enabled():
            kv = key_value_cache_of(encoder)
            steps[key] = GraphedSteadyStep(SteadyStep(encoder, geometry.drop_extra, kv=kv).eval(), encoder)
        else:
            steps[key] = TracedSteadyStep(encoder, geometry.drop_extra, trace=param.device.type == "cpu")
    return steps[key]
