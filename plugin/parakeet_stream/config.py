"""``EngineConfig``: everything that describes an engine, in one value (``Engine.load(config)``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .models import DEFAULT_MODEL
from .runtime.threads import check_num_threads


FEATURES_DEVICES = ("auto", "cpu")  # where features are computed: the model's device, or the CPU


@dataclass(frozen=True)
class EngineConfig:
    """One model on one device, and how its streams are stepped.

    ``model``: a known name (``parakeet-stream models``), a hub id or a ``.nemo`` path; for ``Engine.from_model``
    the name it is reported under. ``device``/``dtype``: ``"auto"`` picks CUDA and bf16 where there is a GPU, else
    the CPU and fp32. ``chunk_ms``: the streaming chunk (None: the model's default). ``max_streams``: streams open
    at once (``CapacityError`` beyond). ``num_threads``: CPU threads of the steps (a count, ``"auto"`` or None: see
    ``runtime/threads.py``). ``max_batch``: streams per model call (None: every ready stream; 1: one per call).
    ``batch_window_ms``: the chunk clock's tick (None: half a chunk; 0: step at once). ``lanes``: inference
    threads over the one copy of the weights, each stepping its own share of the streams on one CPU thread (a new
    stream joins the lane with the fewest): no step waits at a barrier for a thread the kernel has not scheduled,
    so beside another process's torch threads the engine keeps its share of the cores (``docs/engine-api.md``,
    "Lanes"). None: one lane per core on the CPU unless ``num_threads`` is given, else one lane (CUDA,
    offline-only models, ``nemo_step``); more than one is for the CPU only.
    ``nemo_step``: step with NeMo's own eager ``cache_aware_stream_step`` (what per-stream services run: the
    benchmark's baseline). ``features_device``: where log-mel features are computed, in fp32, for streaming and
    offline alike (so streamed text stays the offline text): ``"auto"`` on the model's device (on a GPU, a thousand
    streams' features are one small kernel launch instead of a CPU core's work), ``"cpu"`` on the CPU.
    ``keep_freed_memory``: on the CPU, glibc's malloc keeps freed memory for the next step's tensors, as CUDA's
    caching allocator does (``runtime/memory.py``: the model's steps at high batch take ~2.4x less time, and the
    process keeps its peak memory); a setting of the whole process, made by the first CPU engine that asks."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    chunk_ms: int | None = None
    max_streams: int = 64
    num_threads: int | str | None = None
    max_batch: int | None = None
    batch_window_ms: float | None = None
    nemo_step: bool = False
    lanes: int | None = None
    features_device: str = "auto"
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        if self.max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {self.max_streams}")
        check_num_threads(self.num_threads)
        if self.lanes is not None and (not isinstance(self.lanes, int) or isinstance(self.lanes, bool)
                                       or self.lanes < 1):
            raise ValueError(f"lanes must be a count of at least 1 or None, got {self.lanes!r}")
        if self.features_device not in FEATURES_DEVICES:
            raise ValueError(f"features_device must be one of {', '.join(FEATURES_DEVICES)}, got "
                             f"{self.features_device!r}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 or None, got {self.max_batch}")

    def replace(self, **changes) -> EngineConfig:
        return dataclasses.replace(self, **changes)

    def shared_key(self) -> EngineConfig:
        """What makes two users of ``shared_engine`` share one engine: everything but the stream limit, which the
        shared engine raises to its most demanding user's (``Engine.ensure_capacity``)."""
        return self.replace(max_streams=1)
