"""The ``nemo_pipeline`` baseline: NeMo's own cache-aware streaming pipeline (``nemo.collections.asr.inference``).

``CacheAwareRNNTPipeline`` is NeMo 3.0's production-style server path: slot caches, batched steps over
``Frame`` requests of one model chunk of audio each, features per chunk with 10 ms of look-back (approximate at
chunk edges), its own blank-history endpointer. It is driven here like the engine: the same real-time feeder
fills per-stream audio buffers, and one inference thread batches every stream that holds a whole chunk into
one ``transcribe_step``. A result's latency is its emission minus the arrival of the chunk's last packet.
The model object is handed to NeMo's wrapper directly (no .nemo round trip); this baseline runs last because
the wrapper changes the model's decoding strategy and dtype handling.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable

import numpy as np

from parakeet_stream.audio import MODEL_SAMPLE_RATE

from .config import LEVEL_GRACE_S
from .feeder import Feeder
from .measures import LevelResult, gpu_peak_mb, latency_growth, match_finals, percentiles, rss_mb
from .ramp import ramp


def pipeline_config(cfg, batch_size: int, att_context_size: list[int]):
    """The keys ``CacheAwarePipelineBuilder`` reads (NeMo's asr_streaming_inference/cache_aware_rnnt.yaml)."""
    from omegaconf import OmegaConf

    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(cfg.dtype, "float32")
    return OmegaConf.create({
        "asr": {"model_name": "in-memory", "device": "cuda" if cfg.device.startswith("cuda") else "cpu",
                "device_id": 0, "compute_dtype": dtype, "use_amp": False,
                "decoding": {"strategy": "greedy_batch", "fused_batch_size": -1,
                             "greedy": {"max_symbols": 10, "preserve_frame_confidence": True}}},
        "itn": {"input_case": "lower_cased", "whitelist": None, "overwrite_cache": False,
                "max_number_of_permutations_per_split": 729, "left_padding_size": 4, "batch_size": 32, "n_jobs": 1},
        "confidence": {"exclude_blank": True, "aggregation": "min",
                       "method_cfg": {"name": "entropy", "entropy_type": "tsallis", "alpha": 0.5,
                                      "entropy_norm": "exp"}},
        "endpointing": {"stop_history_eou": 800, "residue_tokens_at_end": 2},
        "streaming": {"sample_rate": MODEL_SAMPLE_RATE, "batch_size": batch_size, "word_boundary_tolerance": 4,
                      "att_context_size": list(att_context_size), "use_cache": True, "use_feat_cache": True,
                      "chunk_size_in_secs": None, "request_type": "frame", "num_slots": max(16, batch_size)},
        "matmul_precision": "highest", "log_level": 30, "pipeline_type": "cache_aware", "asr_decoding_type": "rnnt",
        "enable_itn": False, "enable_nmt": False, "asr_output_granularity": "segment", "cache_dir": None,
        "lang": None, "return_tail_result": False,
    })


def build_pipeline(model, cfg, batch_size: int):
    """NeMo's pipeline over an already loaded model (its wrapper would otherwise restore a checkpoint by name)."""
    from nemo.collections.asr.inference.factory.cache_aware_pipeline_builder import CacheAwarePipelineBuilder
    from nemo.collections.asr.inference.model_wrappers.cache_aware_rnnt_inference_wrapper import \
        CacheAwareRNNTInferenceWrapper
    from nemo.collections.asr.inference.pipelines.cache_aware_rnnt_pipeline import CacheAwareRNNTPipeline

    class InMemoryWrapper(CacheAwareRNNTInferenceWrapper):
        @staticmethod
        def load_model(model_name, map_location):
            return model.eval()

    att = [int(v) for v in model.encoder.att_context_size]
    pcfg = pipeline_config(cfg, batch_size, att)
    wrapper = InMemoryWrapper(model_name="in-memory", decoding_cfg=CacheAwarePipelineBuilder.get_rnnt_decoding_cfg(pcfg),
                              device=pcfg.asr.device, device_id=0, compute_dtype=pcfg.asr.compute_dtype,
                              use_amp=False)
    return CacheAwareRNNTPipeline(pcfg, wrapper)


class PipelineRun:
    """One level: N streams through NeMo's pipeline, batched per wake-up like the engine."""

    def __init__(self, model, cfg) -> None:
        self.model, self.cfg = model, cfg

    def __call__(self, workload, n: int, log: Callable[[str], None]):
        import torch
        from nemo.collections.asr.inference.streaming.framing.request import Frame
        from nemo.collections.asr.inference.streaming.framing.request_options import ASRRequestOptions

        cfg = self.cfg
        pipe = build_pipeline(self.model, cfg, batch_size=max(n, 1))
        chunk = round(float(pipe.chunk_size_in_secs) * MODEL_SAMPLE_RATE)
        audios = [workload.audio[workload.for_stream(i)] for i in range(n)]
        feeder = Feeder(audios, cfg.spread_s)
        cond = threading.Condition()
        received = [0] * n  # samples pushed
        sent = [0] * n  # samples handed to the pipeline
        ended = [False] * n
        done = [False] * n
        lat: list[float] = []
        points: list[tuple[float, float]] = []
        finals: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        step_s = [0.0, 0, 0]  # seconds, steps, frames
        errors: list[str] = []

        def push(i: int, pcm: np.ndarray) -> None:
            with cond:
                received[i] += pcm.shape[0]
                cond.notify()

        def finish(i: int) -> None:
            with cond:
                ended[i] = True
                cond.notify()

        def ready() -> list[int]:
            return [i for i in range(n) if not done[i] and (received[i] - sent[i] >= chunk or
                                                           (ended[i] and received[i] >= sent[i]))]

        def loop() -> None:
            pipe.open_session()
            while True:
                with cond:
                    while not ready() and not all(done):
                        cond.wait()
                    if all(done):
                        break
                    todo = ready()
                    take = {i: min(chunk, received[i] - sent[i]) for i in todo}
                    last = {i: ended[i] and received[i] - sent[i] <= chunk for i in todo}
                frames = []
                for i in todo:
                    a = audios[i][sent[i]:sent[i] + take[i]]
                    samples = torch.zeros(chunk)
                    samples[:a.shape[0]] = torch.from_numpy(a)
                    frames.append(Frame(samples=samples, stream_id=i, is_first=sent[i] == 0, is_last=last[i],
                                        length=a.shape[0], options=ASRRequestOptions()))
                t = time.perf_counter()
                try:
                    outs = pipe.transcribe_step(frames)
                except Exception as e:  # reported in the result, the level is then not sustainable
                    errors.append(f"{type(e).__name__}: {e}")
                    with cond:
                        for i in todo:
                            done[i] = True
                    continue
                now = time.monotonic()
                step_s[0] += time.perf_counter() - t
                step_s[1] += 1
                step_s[2] += len(frames)
                for i, out in zip(todo, outs):
                    sent[i] += take[i]
                    dep = feeder.arrival_of_sample(i, max(sent[i], 1))
                    lat.append(now - dep)
                    points.append((dep, now - dep))
                    if out.final_transcript:
                        finals[i].append((sent[i] / MODEL_SAMPLE_RATE, now))
                    if last[i]:
                        done[i] = True
            pipe.close_session()

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        feeder.run(push, finish, lambda t: log(f"    nemo_pipeline N={n}: {t:.0f} s fed, {step_s[1]} steps"))
        worker.join(timeout=LEVEL_GRACE_S)
        if worker.is_alive():  # fell hopelessly behind: stop stepping, count unfinished streams as failed
            with cond:
                errors.append("not finished within the grace period")
                for i in range(n):
                    done[i] = True
                cond.notify()
            worker.join(timeout=60)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        final_lat, n_ends, matched = [], 0, 0
        for i in range(n):
            ends = workload.speech_ends[workload.for_stream(i)]
            pairs = match_finals(ends, finals[i], 2.0)
            n_ends += len(ends)
            matched += len(pairs)
            final_lat += [emitted - feeder.arrival_of_sample(i, round(e * MODEL_SAMPLE_RATE)) for e, emitted in pairs]
        audio_s = sum(a.shape[0] for a in audios) / MODEL_SAMPLE_RATE
        growth = latency_growth(points)
        p = percentiles(lat)
        res = LevelResult(
            system="nemo_pipeline", streams=n, partials=len(lat), latency_ms=p, final_latency_ms=percentiles(final_lat),
            speech_ends=n_ends, finals_matched=matched, latency_growth_ms=round(growth * 1000, 1),
            compute_rtf=round(step_s[0] / audio_s, 4), cpu_utilisation=round(cpu / wall, 2),
            audio_seconds=round(audio_s, 1), wall_seconds=round(wall, 1), steps=step_s[1],
            mean_batch=round(step_s[2] / max(step_s[1], 1), 2), max_batch=n,
            feeder_lag_ms_p99=round(float(np.percentile(feeder.lags, 99)) * 1000, 1),
            failed_streams=n if errors else 0, peak_rss_mb=round(rss_mb(), 1), peak_gpu_mb=gpu_peak_mb(cfg.device),
            note=("; ".join(sorted(set(errors)))[:300] if errors else
                  "every step counted as a result; finals from NeMo's blank-history EOU endpointer (800 ms)"))
        res.sustainable = bool(p) and p["p95"] <= cfg.chunk_ms and growth <= cfg.chunk_ms / 2000 and not errors
        return res


def run(model, cfg, workload, levels, deadline: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Ramp NeMo's pipeline like the engine; if it cannot run here, say exactly why."""
    try:
        import nemo.collections.asr.inference.pipelines.cache_aware_rnnt_pipeline  # noqa: F401
    except Exception as e:
        return {"levels": [], "max_sustainable_streams": None,
                "skipped": f"nemo.collections.asr.inference is not importable: {type(e).__name__}: {e}"}
    run_level = PipelineRun(model, cfg)

    def level(n: int):
        log(f"  nemo_pipeline: N={n} ...")
        r = run_level(workload, n, log)
        log(f"  nemo_pipeline: N={n} p95={r.latency_ms.get('p95', '-')} ms rtf={r.compute_rtf} batch={r.mean_batch} "
            f"-> {'ok' if r.sustainable else 'NOT sustainable'}{' (' + r.note + ')' if r.failed_streams else ''}")
        return r

    try:
        results, best = ramp(level, levels, deadline, cfg.max_level)
    except Exception as e:  # NeMo could not even build the pipeline for this model/device
        return {"levels": [], "max_sustainable_streams": None,
                "skipped": f"NeMo's CacheAwareRNNTPipeline failed to build: {type(e).__name__}: {e}"}
    out = {"levels": [dataclasses.asdict(r) for r in results], "max_sustainable_streams": best,
           "note": "features per chunk with 10 ms look-back (approximate at chunk edges), so its text is not "
                   "compared with the offline decode"}
    if results and all(r.failed_streams for r in results):
        out["skipped"] = f"ran, but every step failed: {results[0].note}"
    return out
