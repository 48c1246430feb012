"""What a benchmark run is asked to do (``BenchConfig``), and the constants every part of it shares."""
from __future__ import annotations

from dataclasses import dataclass

from parakeet_stream.audio import MODEL_SAMPLE_RATE

PACKET_MS = 20
PACKET = MODEL_SAMPLE_RATE * PACKET_MS // 1000
RANDOM_ARCHS = ("tiny", "large", "xl")
BASELINES = ("per_stream", "per_stream_nemo", "vad_offline", "nemo_pipeline")
LEVEL_GRACE_S = 30.0  # after the last packet, how long a level may take to deliver its results


@dataclass
class BenchConfig:
    """Every knob of a run; the CLI fills it, tests build it directly."""

    model: str = "large"  # tiny | large | xl (random weights, real layout), a known name, or a .nemo path
    chunk_ms: int = 160
    dtype: str = "bf16"
    device: str = "cpu"
    threads: int | None = 2
    seconds: float = 12.0  # audio per stream
    files: tuple[str, ...] = ()
    levels: tuple[int, ...] | None = None  # fixed stream counts; None = ramp (doubling, then bisection)
    baseline_levels: tuple[int, ...] | None = None  # fixed stream counts of the baselines; None = as the engine
    max_level: int = 4096
    spread_s: float = 1.0  # stream i starts at i * spread_s / N
    batch_window_ms: float | None = None  # the tick of the engine's chunk clock (None: the engine's default)
    max_batch: int | None = None  # the engine's streams per model call (None: every ready stream; more: pipelined)
    # the engine again with each of these caps (at its levels above the cap), reported beside the baselines as
    # ``engine_max_batch_<cap>`` with ratios to the engine: which cut of a large step serves best
    max_batch_variants: tuple[int, ...] = ()
    # the engine again in each of these numbers of processes on the device, N streams split between them (at the
    # engine's levels from its limit up, or at its limit and twice that), reported beside the baselines as
    # ``engine_processes_<k>`` (``processes.py``)
    processes: tuple[int, ...] = ()
    baselines: tuple[str, ...] = BASELINES
    vad: bool = True  # endpointing by Silero VAD (the same detector the vad_offline baseline uses)
    min_silence_ms: int = 500
    seed: int = 0
    time_budget_s: float = 780.0  # stop ramping (and skip baselines) once this much time has gone
    out: str | None = None
