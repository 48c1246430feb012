"""Baseline 3: NeMo's own cache-aware streaming pipeline (``nemo.collections.asr.inference``)."""
from __future__ import annotations

from typing import Any, Callable


def run(model, cfg, workload, geometry, levels, deadline, fixed, log: Callable[[str], None]) -> dict[str, Any]:
    return {"levels": [], "max_sustainable_streams": None, "skipped": "not implemented yet"}
