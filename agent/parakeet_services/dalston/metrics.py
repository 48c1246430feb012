"""Worker counters and their Prometheus text exposition (format 0.0.4), merged with the engine's snapshot.

Hand-written rather than ``prometheus_client`` so several workers in one process (tests) never share a
global registry, and the worker needs no extra dependency.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class WorkerStats:
    """What the worker itself counts; the engine's step counters come from ``engine.metrics()``."""

    sessions_started: int = 0
    sessions_ended: Counter = field(default_factory=Counter)        # by outcome
    connections_rejected: Counter = field(default_factory=Counter)  # by reason
    audio_seconds_received: float = 0.0
    frames_rejected: int = 0
    messages_rejected: int = 0
    lag_warnings: int = 0
    audio_seconds_dropped: float = 0.0  # audio left untranscribed when a session ended (``Session._give_up_after_end``)


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for suffix, labels, value in samples:
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{suffix}{{{label_text}}} {_fmt(value)}" if label_text else f"{name}{suffix} {_fmt(value)}")
    return lines


def render_metrics(stats: WorkerStats, *, active_sessions: int, capacity: int, draining: bool,
                   max_lag_seconds: float, engine_metrics: Any) -> str:
    """The ``/metrics`` body; ``engine_metrics`` is an ``EngineMetrics`` snapshot (see docs/engine-api.md)."""
    out: list[str] = []
    out += _family("parakeet_dalston_sessions_active", "gauge", "Sessions open now.", [("", {}, active_sessions)])
    out += _family("parakeet_dalston_sessions_capacity", "gauge", "Most sessions this worker accepts.",
                   [("", {}, capacity)])
    out += _family("parakeet_dalston_draining", "gauge", "1 while the worker drains after SIGTERM.",
                   [("", {}, int(draining))])
    out += _family("parakeet_dalston_sessions_started_total", "counter", "Sessions that began.",
                   [("", {}, stats.sessions_started)])
    out += _family("parakeet_dalston_sessions_ended_total", "counter", "Sessions that ended, by outcome.",
                   [("", {"outcome": k}, v) for k, v in sorted(stats.sessions_ended.items())])
    out += _family("parakeet_dalston_connections_rejected_total", "counter",
                   "Connections refused before a session began, by reason.",
                   [("", {"reason": k}, v) for k, v in sorted(stats.connections_rejected.items())])
    out += _family("parakeet_dalston_audio_received_seconds_total", "counter", "Seconds of audio received.",
                   [("", {}, stats.audio_seconds_received)])
    out += _family("parakeet_dalston_frames_rejected_total", "counter", "Audio frames rejected as invalid_audio.",
                   [("", {}, stats.frames_rejected)])
    out += _family("parakeet_dalston_messages_rejected_total", "counter",
                   "Text frames rejected as invalid_message.", [("", {}, stats.messages_rejected)])
    out += _family("parakeet_dalston_lag_warnings_total", "counter", "processing_lag warnings sent.",
                   [("", {}, stats.lag_warnings)])
    out += _family("parakeet_dalston_audio_dropped_seconds_total", "counter",
                   "Seconds of audio not transcribed because a session's end came too far behind.",
                   [("", {}, stats.audio_seconds_dropped)])
    out += _family("parakeet_dalston_lag_seconds", "gauge", "Largest processing lag over open sessions.",
                   [("", {}, max_lag_seconds)])
    m = engine_metrics
    out += _family("parakeet_engine_steps_total", "counter", "Batched engine steps.", [("", {}, m.steps)])
    out += _family("parakeet_engine_streams_stepped_total", "counter", "Stream-steps (sum of batch sizes).",
                   [("", {}, m.streams_stepped)])
    out += _family("parakeet_engine_audio_seconds_total", "counter", "Seconds of audio the engine consumed.",
                   [("", {}, m.audio_seconds)])
    buckets = sorted((float(le), int(count)) for le, count in dict(m.step_latency_buckets).items())
    samples = [("_bucket", {"le": _fmt(le)}, count) for le, count in buckets if not math.isinf(le)]
    samples.append(("_bucket", {"le": "+Inf"}, m.steps))
    samples += [("_sum", {}, m.step_seconds_sum), ("_count", {}, m.steps)]
    out += _family("parakeet_engine_step_seconds", "histogram", "Latency of one batched engine step.", samples)
    samples = [("_bucket", {"le": _fmt(le)}, count) for le, count in m.result_latency_buckets()]
    samples.append(("_bucket", {"le": "+Inf"}, m.results))
    samples += [("_sum", {}, m.result_latency_seconds_sum), ("_count", {}, m.results)]
    out += _family("parakeet_engine_result_latency_seconds", "histogram",
                   "From the arrival of the audio a stream-step's result depends on to the end of that step.",
                   samples)
    out += _family("parakeet_engine_batch_size", "gauge", "Streams in the last batched step.",
                   [("", {}, m.last_batch_size)])
    out += _family("parakeet_engine_batch_size_max", "gauge", "Largest batch stepped so far.",
                   [("", {}, m.max_batch_size)])
    out += _family("parakeet_engine_wakeups_total", "counter", "Times the inference thread woke to work.",
                   [("", {}, m.wakeups)])
    out += _family("parakeet_engine_streams_lagging", "gauge",
                   "Streams whose decodable audio has waited 2 s or more (until it waits under 1 s).",
                   [("", {}, m.lagging_streams)])
    out += _family("parakeet_engine_lag_episodes_total", "counter", "Times a stream fell 2 s behind.",
                   [("", {}, m.lag_episodes)])
    out += _family("parakeet_engine_max_lag_seconds", "gauge",
                   "Longest wait of any stream's decodable audio, at the engine's last look.",
                   [("", {}, m.max_lag_seconds)])
    out += _family("parakeet_engine_cpu_threads", "gauge", "CPU threads of the engine's steps now.",
                   [("", {}, m.cpu_threads)])
    return "\n".join(out) + "\n"
