"""The HTTP side port: /health, /v1/capabilities and Prometheus /metrics from live worker and engine state."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dalston.kit import frames, pcm16, run_session, session_url
from parakeet_services.dalston.http import SidePort
from parakeet_services.dalston.registry import load_capabilities

pytestmark = pytest.mark.asyncio(loop_scope="session")

TIMER = "set a timer for twenty minutes"


async def get(url: str) -> tuple[int, str, str]:
    def fetch() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers["Content-Type"], err.read().decode()

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def side_port(worker):
    caps = load_capabilities(None, engine_id="parakeet-stream", max_concurrency=4, model_variants=worker.models)
    side = SidePort(worker, caps, "127.0.0.1", 0)
    await side.start()
    yield side
    await side.close()


async def test_health_and_capabilities(worker, side_port) -> None:
    base = f"http://127.0.0.1:{side_port.port}"
    status, ctype, body = await get(f"{base}/health")
    assert (status, ctype, json.loads(body)) == (200, "application/json", worker.health())
    status, ctype, body = await get(f"{base}/v1/capabilities")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == side_port.capabilities
    assert json.loads(body)["model_variants"] == ["espeak-demo-en"]
    status, _, body = await get(f"{base}/nope")
    assert (status, json.loads(body)) == (404, {"error": "Unknown path /nope",
                                                "routes": ["/health", "/v1/capabilities", "/metrics"]})


async def test_metrics_count_sessions_audio_and_engine_steps(worker, side_port, speech, engine) -> None:
    audio = speech(TIMER)
    await run_session(session_url(worker, enable_vad=False), frames(pcm16(audio), 3200))
    await run_session(session_url(worker, enable_vad=False), [b"\x00"])  # one invalid frame, no audio
    status, ctype, body = await get(f"http://127.0.0.1:{side_port.port}/metrics")
    assert (status, ctype) == (200, "text/plain; version=0.0.4; charset=utf-8")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("parakeet_dalston_sessions_active", ())] == 0
    assert samples[("parakeet_dalston_sessions_capacity", ())] == 4
    assert samples[("parakeet_dalston_draining", ())] == 0
    assert samples[("parakeet_dalston_sessions_started_total", ())] == 2
    assert samples[("parakeet_dalston_sessions_ended_total", (("outcome", "completed"),))] == 2
    assert samples[("parakeet_dalston_audio_received_seconds_total", ())] == pytest.approx(len(audio) / 16000)
    assert samples[("parakeet_dalston_frames_rejected_total", ())] == 1
    assert samples[("parakeet_dalston_lag_seconds", ())] == 0
    snapshot = engine.metrics()
    assert samples[("parakeet_engine_steps_total", ())] == snapshot.steps > 0
    assert samples[("parakeet_engine_step_seconds_count", ())] == snapshot.steps
    assert samples[("parakeet_engine_step_seconds_bucket", (("le", "+Inf"),))] == snapshot.steps
    assert samples[("parakeet_engine_step_seconds_sum", ())] == pytest.approx(snapshot.step_seconds_sum)
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == "parakeet_engine_step_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert samples[("parakeet_engine_batch_size_max", ())] == snapshot.max_batch_size >= 1
    # the thread may still poll once or twice after the sessions' last audio
    assert snapshot.steps <= samples[("parakeet_engine_wakeups_total", ())] <= snapshot.wakeups
    # every stream-step's result latency, as a histogram of the same engine counts
    assert samples[("parakeet_engine_result_latency_seconds_count", ())] == snapshot.results \
        == snapshot.streams_stepped
    assert samples[("parakeet_engine_result_latency_seconds_sum", ())] == pytest.approx(
        snapshot.result_latency_seconds_sum)
    assert [(le, v) for (name, labels), v in samples.items()
            if name == "parakeet_engine_result_latency_seconds_bucket" and labels != (("le", "+Inf"),)
            for le in [float(dict(labels)["le"])]] == snapshot.result_latency_buckets()
