"""A run's result: the JSON document (written after every phase), the markdown table printed at the end, the
ratios of each baseline to the engine, and the machine it ran on."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from parakeet_stream.audio import MODEL_SAMPLE_RATE

from .config import BenchConfig
from .measures import LevelResult
from .workload import Workload

LATENCY_DEFINITION = (
    "per-result: end of the step that produced a result - arrival of the packet holding the last sample its "
    "encoder frames depend on, for every stream-step (engine and per_stream: EngineMetrics.result_latency_ms; "
    "other baselines: their partials); partial: the same for Partial events only (Partial.emitted_at); final: "
    "Final.emitted_at - arrival of the packet holding the last speech sample (includes the VAD silence wait)")


def result_document(cfg: BenchConfig, machine: dict[str, Any], workload: Workload, model,
                    engine_levels: list[LevelResult], engine_best: int, baselines: dict[str, dict[str, Any]],
                    started: float) -> dict[str, Any]:
    """The JSON-ready result of a run so far (``started``: its ``time.monotonic()`` start)."""
    from parakeet_stream.models import frame_seconds

    return {
        "config": dataclasses.asdict(cfg), "machine": machine, "workload": workload.source,
        "audio_seconds_per_stream": [round(a.shape[0] / MODEL_SAMPLE_RATE, 2) for a in workload.audio],
        "model": {"name": cfg.model, "params": sum(p.numel() for p in model.parameters()),
                  "frame_s": frame_seconds(model), "chunk_ms": cfg.chunk_ms},
        "latency_definition": LATENCY_DEFINITION,
        "engine": {"levels": [dataclasses.asdict(r) for r in engine_levels],
                   "max_sustainable_streams": engine_best},
        "baselines": baselines,
        "comparison": compare(engine_levels, engine_best, baselines),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - started, 1),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(result: dict[str, Any], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1, default=str) + "\n")


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import nemo

        info["nemo"] = nemo.__version__
    except Exception:  # NeMo missing is reported by the model load itself
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def compare(engine: list[LevelResult], engine_best: int, others: dict[str, dict]) -> dict[str, Any]:
    """Each baseline as a ratio to the engine: sustainable streams, and latency/compute at a common N."""
    by_n = {r.streams: r for r in engine}
    out: dict[str, Any] = {}
    for name, b in others.items():
        if not b.get("levels"):
            continue
        entry: dict[str, Any] = {"max_sustainable_streams": b["max_sustainable_streams"]}
        if name != "vad_offline":
            entry["engine_streams_ratio"] = _ratio(engine_best, b["max_sustainable_streams"]) \
                if b["max_sustainable_streams"] else (f">= {engine_best}x (baseline sustains 0)" if engine_best else None)
        common = [lv for lv in b["levels"] if lv["streams"] in by_n]
        if common:
            lv = max(common, key=lambda x: x["streams"])
            e = by_n[lv["streams"]]
            entry["at_streams"] = lv["streams"]
            entry["latency_p95_ratio"] = _ratio(lv["latency_ms"].get("p95"), e.latency_ms.get("p95"))
            entry["final_latency_p95_ratio"] = _ratio(lv["final_latency_ms"].get("p95"),
                                                      e.final_latency_ms.get("p95"))
            entry["final_latency_p50_ratio"] = _ratio(lv["final_latency_ms"].get("p50"),
                                                      e.final_latency_ms.get("p50"))
            entry["compute_rtf_ratio"] = _ratio(lv["compute_rtf"], e.compute_rtf)
        out[name] = entry
    return out


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown: one row per measured level, then the ratios and the machine."""
    m, cfg = result["machine"], result["config"]
    lines = [
        f"### `{cfg['model']}` {cfg['dtype']} @ {cfg['chunk_ms']} ms on {m.get('gpu') or m['cpu']} "
        f"({m['torch_threads']} threads, load {m['load_avg_at_start'][0]} → {result['load_avg_at_end'][0]})",
        "",
        "| system | N | results | p50 ms | p95 ms | p99 ms | partials | partial p95 ms | final p50 ms | final p95 ms "
        "| RTF | batch mean/max | text = offline | growth ms | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [(r, "engine") for r in result["engine"]["levels"]]
    for name, b in result["baselines"].items():
        rows += [(r, name) for r in b.get("levels", [])]
    for r, name in rows:
        lat, fin, part = r["latency_ms"], r["final_latency_ms"], r.get("partial_latency_ms") or r["latency_ms"]
        lines.append(
            f"| {name} | {r['streams']} | {r.get('results') or r['partials']} | {_ms(lat.get('p50'))} | "
            f"{_ms(lat.get('p95'))} | {_ms(lat.get('p99'))} | {r['partials']} | {part.get('p95', '–')} | "
            f"{fin.get('p50', '–')} | {fin.get('p95', '–')} | {r['compute_rtf']} | "
            f"{r['mean_batch']}/{r['max_batch']} | {_of(r['text_matches_offline'], r['streams'])} | "
            f"{r['latency_growth_ms']} | {'✓' if r['sustainable'] else '✗'} |")
    lines += ["", f"**Engine: max sustainable streams = {result['engine']['max_sustainable_streams']}** "
                  f"(p95 per-result latency ≤ {cfg['chunk_ms']} ms, no growing backlog)."]
    for name, c in result["comparison"].items():
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in c.items()]
        lines.append(f"- {name}: " + ", ".join(parts))
    for name, b in result["baselines"].items():
        if b.get("skipped"):
            lines.append(f"- {name}: not run — {b['skipped']}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    """A latency cell; the engine counts results per millisecond up to RESULT_LATENCY_MAX_MS, later ones in its
    last bin, so a percentile there means at least that."""
    from parakeet_stream.runtime.metrics import RESULT_LATENCY_MAX_MS

    if value is None:
        return "–"
    return f"≥ {value}" if value >= RESULT_LATENCY_MAX_MS else str(value)


def _of(count: int | None, total: int) -> str:
    return "–" if count is None else f"{count}/{total}"
