"""The engine: one model on one device, serving any number of live streams.

``Engine.load(EngineConfig(...))`` is the blocking part (NeMo import and checkpoint restore); afterwards
``open_stream`` is cheap and every stream is stepped by one of the engine's inference threads, its lanes
(``runtime/loop.py``; cache-aware models by ``streaming/cache_aware.py``; on the CPU one lane per core).
``shared_engine`` gives adapters one engine per configuration per process, so many LiveKit jobs, WebSocket
sessions or Pipecat pipelines share one copy of the weights.
"""
from __future__ import annotations

import concurrent.futures
import gc
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .config import EngineConfig
from .audio import MODEL_SAMPLE_RATE, Resampler, check_sample_rate, to_float32
from .endpointing import EndpointingOptions
from .errors import CapacityError, ModelLoadError
from .events import Word
from .models import (ModelInfo, chunk_sizes_ms, frame_seconds, is_cache_aware, load_nemo_model,
                     resolve_device, resolve_dtype, select_chunk)
from .runtime.memory import keep_freed_memory
from .runtime.metrics import EngineMetrics
from .streaming.keyterms import Keyterms
from .acceleration.kv_cache import install_key_value_cache, key_value_cache_of
from .acceleration.packed_weights import pack_linear_weights, packed_linears_of
from .acceleration.pointwise import PointwiseAsMatmul, replace_pointwise_convs, thread_count_independent
from .acceleration.positions import keep_position_projections, position_projections_kept
from .streaming.cache_aware import ChunkScheduler
from .streaming.segmented import SegmentedScheduler, log_segmented_mode
from .stream import Stream
from .runtime.threads import AUTO, ThreadGovernor

logger = logging.getLogger("parakeet_stream")


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]


class Engine:
    """Owns a NeMo model and the thread that steps all of its streams in batches.

    Cache-aware checkpoints are streamed (``streaming.cache_aware.ChunkScheduler``); offline-only ones run in
    VAD-segmented mode (``streaming.segmented.SegmentedScheduler``, with a log line saying so)."""

    def __init__(self, config: EngineConfig, build: Callable[[], object]) -> None:
        """Serve the prepared NeMo model ``build()`` returns, built on the inference thread. Make engines with
        ``Engine.load`` or ``Engine.from_model``, which prepare the model (decoding strategy, dtype)."""
        self.config = config
        import torch

        if config.keep_freed_memory and resolve_device(config.device) == "cpu":
            keep_freed_memory()  # before the inference threads choose their malloc arena
        # read here: a count another engine's thread set becomes torch's default for threads created after it
        most = config.num_threads if isinstance(config.num_threads, int) else torch.get_num_threads()
        ready: concurrent.futures.Future = concurrent.futures.Future()

        def serve() -> None:
            """On the CPU every thread that runs torch ops gets its own OpenMP pool, and with more pool threads
            than cores libgomp stops spinning between parallel regions (a step of the 114 M model: 1.8x as
            long). So one thread loads, prepares and steps the model, and nothing else runs torch ops but the
            other lanes' threads, on one OpenMP thread each."""
            try:
                torch.set_num_threads(most)  # the model is built and warmed up at the count it will step with
                model = build()
                scheduler = self._configure(model)
                lanes = choose_lanes(config, device=self.info.device,
                                     streaming=isinstance(scheduler, ChunkScheduler), cores=most)
                if lanes > 1:
                    torch.set_num_threads(1)
                    scheduler.threads = ThreadGovernor(1, adaptive=False)
                else:
                    scheduler.threads = self._thread_governor(model, most)
                scheduler.threads.before_step()
                self._lanes = [scheduler]
                for i in range(1, lanes):
                    self._lanes.append(self._start_lane(i))
                freeze_long_lived_objects()
            except BaseException as e:  # re-raised in the caller of Engine.load
                for lane in getattr(self, "_lanes", [])[1:]:
                    lane.stop()
                ready.set_exception(e)
                return
            ready.set_result(None)
            scheduler.run_forever()

        threading.Thread(target=serve, name="parakeet-inference", daemon=True).start()
        ready.result()
        logger.info("engine ready", extra={"model": config.model, "chunk_ms": self.info.chunk_ms,
                                           "device": self.info.device, "dtype": self.info.dtype,
                                           "max_streams": config.max_streams, "lanes": len(self._lanes),
                                           "features_device": self.features_device})

    def _start_lane(self, index: int):
        """Another inference thread stepping its own streams over the same model, on one OpenMP thread."""
        import torch

        ready: concurrent.futures.Future = concurrent.futures.Future()

        def serve() -> None:
            try:
                torch.set_num_threads(1)
                lane = self._new_scheduler()
                lane.threads = ThreadGovernor(1, adaptive=False)
                lane.threads.before_step()
            except BaseException as e:
                ready.set_exception(e)
                return
            ready.set_result(lane)
            lane.run_forever()

        threading.Thread(target=serve, name=f"parakeet-inference-{index}", daemon=True).start()
        return ready.result()

    def _thread_governor(self, model, most: int) -> ThreadGovernor:
        """The steps' thread count: a count given is kept; by default (and with ``"auto"``) the governor moves
        between one thread and all cores as load and neighbours require (``threads.py``), where that keeps every
        step's bits; else all cores, fixed.

        Only an fp32 encoder whose 1x1 convolutions are MKL products can keep them: MKL_CBWR's strict mode
        promises sgemm the same bits at any thread count, and ``pointwise.thread_count_independent`` checks the
        rest on this machine. oneDNN's bf16 kernels promise nothing of the kind: a probe that passes on one
        batch shape says nothing of the step's other shapes (two streams of a bf16 model left offline text
        on a CPU whose probe had passed)."""
        num_threads = self.config.num_threads
        if isinstance(num_threads, int) or self.info.device != "cpu" or most == 1:
            return ThreadGovernor(most, adaptive=False)
        products = any(isinstance(m, PointwiseAsMatmul) for m in model.encoder.modules())
        exact = not self.config.nemo_step and products and thread_count_independent(model.encoder, most)
        adaptive = exact or num_threads == AUTO
        logger.info("cpu threads", extra={"threads": most, "adaptive": adaptive, "exact_at_any_count": exact})
        return ThreadGovernor(most, adaptive=adaptive)

    def _configure(self, model):
        import torch

        cfg = self.config
        chunk_ms, max_batch, batch_window_ms = cfg.chunk_ms, cfg.max_batch, cfg.batch_window_ms
        max_streams = cfg.max_streams
        self.features_device = place_features(model, cfg.features_device)

        streaming = is_cache_aware(model)
        frame_s = frame_seconds(model)
        if streaming:
            chunk_ms, context = select_chunk(model, chunk_ms)
            model.encoder.set_default_att_context_size(context)
            if cfg.nemo_step:
                check_unmodified(model.encoder)
            else:
                keep_position_projections(model.encoder)
                param = next(model.parameters())
                if param.device.type == "cpu" and param.dtype == torch.float32:
                    replace_pointwise_convs(model.encoder)  # the same bits at any thread count (pointwise.py)
                if pack_linear_weights(model.encoder) is not None:  # bf16 on the CPU; before the step is traced
                    install_key_value_cache(model.encoder)  # exact there: each row's product alone (kv_cache.py)
                elif next(model.parameters()).device.type == "cuda":  # batching already changes rounding there
                    install_key_value_cache(model.encoder, exact_only=False)
            if batch_window_ms is None:  # half a chunk: a stream waits at most half a chunk for its step
                batch_window_ms = 0.0 if max_batch == 1 else chunk_ms / 2
            window_s = batch_window_ms / 1000
            self._new_scheduler = lambda: ChunkScheduler(model, max_streams=self.capacity, frame_s=frame_s,
                                                         max_batch=max_batch, batch_window_s=window_s,
                                                         traced_step=not cfg.nemo_step)
            self.capacity = max_streams
            self._scheduler = self._new_scheduler()
        else:
            chunk_ms = 0
            log_segmented_mode(cfg.model)
            self._scheduler = SegmentedScheduler(model, max_streams=max_streams, frame_s=frame_s,
                                                 max_batch=max_batch)
        param = next(model.parameters())
        self.info = ModelInfo(
            name=cfg.model, path=cfg.model if cfg.model.endswith(".nemo") else None, chunk_ms=chunk_ms,
            chunk_sizes_ms=tuple(sorted(chunk_sizes_ms(model))) if streaming else (),
            device=str(param.device), dtype=str(param.dtype).replace("torch.", ""), frame_seconds=frame_s,
            has_eou=bool(self._scheduler.vocab.eou_ids), num_params=sum(p.numel() for p in model.parameters()),
            offline_only=not streaming,
        )
        self.capacity = max_streams
        self._open_lock = threading.Lock()
        return self._scheduler

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, config: EngineConfig | None = None) -> Engine:
        """Load ``config.model`` on a new inference thread and serve from it. Blocks for seconds (NeMo import,
        checkpoint restore, warm-up): call it at start-up."""
        config = config or EngineConfig()
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        return cls(config, lambda: prepare_model(load_nemo_model(config.model, device), dtype))

    @classmethod
    def from_model(cls, model, config: EngineConfig | None = None) -> Engine:
        """Serve an already built NeMo model (tests, notebooks, training), reported as ``config.model``
        (default ``"custom"``); ``config.device`` is where the model already is. ``model`` may also be a function
        that builds it: built on the inference thread, it steps faster on the CPU (see ``__init__``)."""
        import torch

        config = config or EngineConfig(model="custom")
        dtype = None if config.dtype == "auto" else resolve_dtype(config.dtype, "cpu")
        build = (lambda: model) if isinstance(model, torch.nn.Module) else model
        return cls(config, lambda: prepare_model(build(), dtype))

    # -- streams -----------------------------------------------------------------------------------------
    def open_stream(self, *, sample_rate: int = MODEL_SAMPLE_RATE, endpointing: EndpointingOptions | None = None,
                    stream_id: str | None = None, keyterms: Sequence[str] | None = None,
                    keyterm_weight: float | None = None) -> Stream:
        """A live stream. ``keyterms``: phrases to boost in this stream's decoding (names, products, jargon; at
        most ``keyterms.MAX_KEYTERMS``), ``keyterm_weight`` how strongly (default
        ``keyterms.DEFAULT_KEYTERM_WEIGHT``). Raises ValueError on bad input, CapacityError when full."""
        check_sample_rate(sample_rate)
        opts = endpointing or EndpointingOptions()
        boost = self.check_keyterms(keyterms, keyterm_weight)
        with self._open_lock:
            if self.active_streams >= self.capacity:
                raise CapacityError(f"engine is full: {self.capacity} streams are open (max_streams={self.capacity})")
            lane = min(self._lanes, key=lambda lane: lane.live_streams)  # the first of the least loaded
            stream = lane.open(sample_rate, opts, stream_id)
        if boost is not None:
            stream._set_keyterms(boost)
        return stream

    def check_keyterms(self, keyterms: Sequence[str] | None, weight: float | None = None) -> Keyterms | None:
        """``keyterms`` as this model spells them, or a ValueError naming what is wrong and what is accepted."""
        return self._scheduler.check_keyterms(keyterms, weight)

    def ensure_capacity(self, max_streams: int) -> None:
        """Raise the stream limit (never lowers it): a shared engine serves its most demanding user."""
        with self._open_lock:
            if max_streams > self.capacity:
                self.capacity = max_streams
                for lane in self._lanes:
                    if isinstance(lane, ChunkScheduler):
                        lane.slots.max_slots = max_streams

    @property
    def active_streams(self) -> int:
        return sum(lane.live_streams for lane in self._lanes)

    def metrics(self) -> EngineMetrics:
        """All lanes' counts together."""
        snapshots = []
        for lane in self._lanes:
            m = lane.metrics.snapshot(lane.live_streams)
            if lane.threads is not None:
                m.cpu_threads, m.thread_switches = lane.threads.threads, lane.threads.switches
            snapshots.append(m)
        return EngineMetrics.merged(snapshots)

    # -- offline -----------------------------------------------------------------------------------------
    def transcribe(self, audio: bytes | np.ndarray, sample_rate: int = MODEL_SAMPLE_RATE, *,
                   keyterms: Sequence[str] | None = None, keyterm_weight: float | None = None) -> Transcript:
        """Decode a whole buffer at once (same att_context as streaming), boosting ``keyterms`` as a stream
        would. Runs on the inference thread."""
        boost = self.check_keyterms(keyterms, keyterm_weight)
        samples = to_float32(audio)
        samples = Resampler(sample_rate).process(samples, last=True)
        text, words = self._scheduler.call(lambda: self._scheduler.decode_offline(samples, boost))
        return Transcript(text, words)

    def close(self) -> None:
        for lane in self._lanes:
            lane.stop()

    @property
    def closed(self) -> bool:
        return any(lane.closed for lane in self._lanes)

    def __repr__(self) -> str:
        return f"Engine({self.info.name!r}, chunk_ms={self.info.chunk_ms}, device={self.info.device})"


def choose_lanes(config: EngineConfig, *, device: str, streaming: bool, cores: int) -> int:
    """How many inference threads step the streams (``EngineConfig.lanes``). By default one per core on the CPU:
    beside another process's torch threads a lane keeps its share of a core where a step split over all cores
    waits at every barrier, and alone lanes sustained more streams than one step over all cores
    (``docs/benchmarks.md``, "Lanes"). One where ``num_threads`` is given (a count: the threads of one step;
    ``"auto"``: the thread governor's choice), for NeMo's own step (the benchmarks' baseline) and for offline-only
    models (segmented mode has one thread). On CUDA one thread steps every stream:
    the GPU is the parallel part, and the steady step's CUDA graphs and the decoder's hold one batch's buffers."""
    if not streaming:
        return 1
    if config.lanes is None:
        return cores if device == "cpu" and config.num_threads is None and not config.nemo_step else 1
    if config.lanes > 1 and device != "cpu":
        raise ModelLoadError(f"lanes={config.lanes} is for the CPU; on {device} one inference thread steps every "
                             "stream (leave lanes unset or give 1)")
    return config.lanes


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now (NeMo, torch, the model's modules: ~760 k objects) from the cyclic garbage
    collector (``gc.freeze``). Its full collections walk every tracked object while holding the GIL: ~180 ms
    each on a 2-core CPU with the demo model loaded, a stall of every stream whenever the per-step allocations
    (tokens, events) trigger one. The engine's own objects come and go per step and are still collected."""
    gc.collect()  # garbage from loading is freed first, not frozen
    gc.freeze()


def check_unmodified(encoder) -> None:
    """``nemo_step`` needs NeMo's layers as NeMo made them: an engine without it changes them in place (kept
    position projections, packed weights, kept keys and values) for every later user of the model object."""
    if packed_linears_of(encoder) is not None or key_value_cache_of(encoder) is not None or any(
            position_projections_kept(layer.self_attn) for layer in getattr(encoder, "layers", ())) or any(
            isinstance(m, PointwiseAsMatmul) for m in encoder.modules()):
        raise ValueError("nemo_step=True needs a model no other engine has served (an engine keeps projections and "
                         "packs weights in the model's layers); build the model again and load_state_dict() this "
                         "one's weights into it (a NeMo model cannot be deep-copied)")


def prepare_model(model, dtype=None):
    """Eval mode, RNNT greedy batched decoding, and the weights in ``dtype``, all but the preprocessor's: its
    window and mel filterbank keep their fp32 values (converted to bf16 and back they would be off by up to 2e-3,
    and every feature with them). The engine puts the preprocessor where features are computed
    (``place_features``); until then it is on the CPU."""
    import torch

    model.eval()
    _use_greedy_rnnt_with_confidence(model)
    if dtype is not None and dtype != torch.float32:
        pre = model.preprocessor
        exact = {name: t.detach().to("cpu", copy=True) for name, t in _tensors_of(pre)}
        model.to(dtype)
        pre.to(dtype=torch.float32)
        with torch.no_grad():
            for name, t in _tensors_of(pre):
                t.copy_(exact[name])
    model.preprocessor.to(device="cpu", dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _tensors_of(module) -> list:
    """A module's floating-point parameters and buffers, by name."""
    return [(name, t) for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_floating_point()]


def place_features(model, features_device: str) -> str:
    """Put the preprocessor where ``EngineConfig.features_device`` says features are computed, in fp32; returns
    that device. Streaming (``features.featurize_batch``) and offline decoding (``offline.decode_whole``) both run
    it there."""
    import torch

    device = str(next(model.encoder.parameters()).device) if features_device == "auto" else features_device
    model.preprocessor.to(device=device, dtype=torch.float32)
    return device


def _use_greedy_rnnt_with_confidence(model) -> None:
    """Batched greedy RNNT (label looping: accepts carried hypotheses and a mix of new and old streams) with
    per-token confidence = the probability of the emitted token (``max_prob``, no blank frames)."""
    import copy

    from omegaconf import open_dict

    cfg = copy.deepcopy(model.cfg.decoding)
    with open_dict(cfg):
        cfg.strategy = "greedy_batch"
        cfg.greedy = cfg.get("greedy") or {}
        cfg.greedy.loop_labels = True
        cfg.confidence_cfg = dict(preserve_frame_confidence=True, preserve_token_confidence=True,
                                  exclude_blank=True, method_cfg=dict(name="max_prob", alpha=1.0))
    kwargs = {"decoder_type": "rnnt"} if hasattr(model, "cur_decoder") else {}
    model.change_decoding_strategy(cfg, verbose=False, **kwargs)
    decoding = model.decoding
    if getattr(decoding, "big_blank_durations", None) is not None and len(decoding.big_blank_durations) == 0:
        # the same (no multi-blank), but NeMo's decode_hypothesis compares this omegaconf ListConfig with [] for
        # every hypothesis: ~70 us each, a third of a stream's per-step Python at 256 streams
        decoding.big_blank_durations = None


_shared: dict[EngineConfig, Engine] = {}
_shared_lock = threading.Lock()


def shared_engine(config: EngineConfig | None = None) -> Engine:
    """The process-wide engine for ``config``, loaded on first use (blocking) and reused after: every adapter
    of the process (LiveKit jobs, WebSocket sessions, Pipecat pipelines) shares one copy of the weights.

    Configs that differ only in ``max_streams`` share one engine, whose limit rises to the largest asked for. An
    engine some user closed is replaced by a new one (its other users' streams ended with it)."""
    config = config or EngineConfig()
    with _shared_lock:
        engine = _shared.get(config.shared_key())
        if engine is None or engine.closed:
            engine = Engine.load(config)
            _shared[config.shared_key()] = engine
        engine.ensure_capacity(config.max_streams)
        return engine
