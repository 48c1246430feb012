"""``run_benchmark``: the engine's ramp, then each baseline on the same audio, the result written after every
phase; ``main``: the ``parakeet-stream bench`` entry point that prints the markdown table."""
from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from pathlib import Path
from typing import Any, Callable


from . import nemo_pipeline
from .config import BenchConfig
from .measures import LevelResult
from .models import build_off_main_thread, load_model, plain_copy
from .ramp import ramp
from .report import machine_info, markdown, result_document, write_json
from .processes import ProcessesRun
from .systems import EngineRun, VadOfflineRun, warm_up
from .workload import Workload, file_workload, speech_workload


def run_benchmark(cfg: BenchConfig, *, model=None, workload: Workload | None = None,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the engine ramp and the baselines; returns the JSON-ready result (also written to ``cfg.out``)."""
    import torch

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    started = time.monotonic()
    deadline = started + cfg.time_budget_s
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    machine = machine_info(cfg.device)
    log(f"bench: model={cfg.model} dtype={cfg.dtype} chunk={cfg.chunk_ms} ms device={cfg.device} "
        f"load={machine['load_avg_at_start']}")
    if model is None:
        log("bench: building/loading the model ...")
        model = build_off_main_thread(lambda: load_model(cfg))
    if workload is None:
        log("bench: synthesizing speech ...")
        workload = file_workload(cfg.files) if cfg.files else speech_workload(cfg.seconds, seed=cfg.seed)
    offline = offline_texts(model, cfg, workload)
    levels = tuple(cfg.levels) if cfg.levels else None
    base_levels = tuple(cfg.baseline_levels) if cfg.baseline_levels else levels

    def runner(run, label: str) -> Callable[[int], LevelResult]:
        def level(n: int) -> LevelResult:
            log(f"  {label}: N={n} ...")
            r = run(workload, n, log)
            log(f"  {label}: N={n} p95={r.latency_ms.get('p95', '-')} ms final p95="
                f"{r.final_latency_ms.get('p95', '-')} ms rtf={r.compute_rtf} batch={r.mean_batch}"
                f"/{r.max_batch} growth={r.latency_growth_ms} ms -> {'ok' if r.sustainable else 'NOT sustainable'}")
            return r
        return level

    warm_up(model, cfg, workload)
    plain_model: list = []

    def plain():
        """NeMo's own layers for the baselines that stand for NeMo's code (built once, when first needed)."""
        if not plain_model:
            log("bench: building a copy of the model with NeMo's own layers ...")
            plain_model.append(build_off_main_thread(lambda: plain_copy(model, cfg)))
        return plain_model[0]
    baselines: dict[str, dict[str, Any]] = {}
    engine_levels: list[LevelResult] = []
    engine_best = 0

    def assemble() -> dict[str, Any]:
        result = result_document(cfg, machine, workload, model, engine_levels, engine_best, baselines, started)
        if cfg.out:  # written after every phase, so a run cut short still leaves its numbers
            write_json(result, cfg.out)
        return result

    engine_levels, engine_best = ramp(runner(EngineRun(model, cfg, offline, None), "engine"),
                                      levels, deadline, cfg.max_level)
    assemble()
    if "per_stream" in cfg.baselines:
        res, best = ramp(runner(EngineRun(model, cfg, offline, 1), "per_stream"), base_levels, deadline,
                         cfg.max_level)
        baselines["per_stream"] = {"levels": [dataclasses.asdict(r) for r in res], "max_sustainable_streams": best}
        assemble()
    if "per_stream_nemo" in cfg.baselines:
        res, best = ramp(runner(EngineRun(plain(), cfg, offline, 1, nemo_step=True), "per_stream_nemo"),
                         base_levels, deadline, cfg.max_level)
        baselines["per_stream_nemo"] = {"levels": [dataclasses.asdict(r) for r in res],
                                        "max_sustainable_streams": best}
        assemble()
    common = max(base_levels) if base_levels else max(engine_best, 1)
    if "vad_offline" in cfg.baselines:
        r = runner(VadOfflineRun(model, cfg), "vad_offline")(common)
        baselines["vad_offline"] = {"levels": [dataclasses.asdict(r)],
                                    "max_sustainable_streams": common if r.sustainable else None,
                                    "note": "run at the engine's max sustainable N only (not ramped)"}
        assemble()
    if "nemo_pipeline" in cfg.baselines:
        baselines["nemo_pipeline"] = nemo_pipeline.run(plain(), cfg, workload, base_levels, deadline, log)
    for cap in cfg.max_batch_variants:
        name = f"engine_max_batch_{cap}"
        if time.monotonic() > deadline:  # exploratory: never at the cost of the run's time box
            baselines[name] = {"levels": [], "max_sustainable_streams": None, "skipped": "time budget spent"}
            continue
        candidates = levels or (max(engine_best, 1),)
        at = tuple(n for n in candidates if n > cap) or (max(candidates),)
        res, best = ramp(runner(EngineRun(model, cfg, offline, cap, system=name), name), at, deadline,
                         cfg.max_level)
        baselines[name] = {"levels": [dataclasses.asdict(r) for r in res], "max_sustainable_streams": best}
        assemble()
    for k in cfg.processes:
        name = f"engine_processes_{k}"
        if time.monotonic() > deadline:
            baselines[name] = {"levels": [], "max_sustainable_streams": None, "skipped": "time budget spent"}
            continue
        # from one process's limit up: the engine's levels from it (else its highest), or that limit and twice it
        best = max(engine_best, 1)
        at = (tuple(n for n in levels if n >= engine_best) or (max(levels),)) if levels else (best, 2 * best)
        res, best = ramp(runner(ProcessesRun(cfg, offline, k), name), at, deadline, cfg.max_level)
        baselines[name] = {"levels": [dataclasses.asdict(r) for r in res], "max_sustainable_streams": best}
        assemble()
    return assemble()


def offline_texts(model, cfg: BenchConfig, workload: Workload) -> list[str]:
    """Offline decode of each distinct audio: what every stream's joined finals must equal."""
    import parakeet_stream as ps

    engine = ps.Engine.from_model(model, ps.EngineConfig(model=cfg.model, chunk_ms=cfg.chunk_ms, max_streams=1))
    try:
        return [engine.transcribe(a).text for a in workload.audio]
    finally:
        engine.close()


def main(cfg: BenchConfig) -> int:
    """``parakeet-stream bench``: run, print the markdown table, say where the JSON is."""
    if cfg.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.out = f"bench/results/{Path(cfg.model).stem}-{cfg.dtype}-{cfg.chunk_ms}ms-{cfg.device}-{stamp}.json"
    result = run_benchmark(cfg)
    print(markdown(result))
    print(f"\nJSON: {cfg.out}", file=sys.stderr)
    return 0
