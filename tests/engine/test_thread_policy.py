"""The engine's CPU thread policy (``parakeet_stream.threads``) and how a stream falling behind is reported."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import parakeet_stream as ps
import pytest
import torch
from parakeet_stream.testing import build_random_model
from parakeet_stream.threads import PROBE_FEWER_EVERY_S, PROBE_STEPS, WINDOW_STEPS, ThreadGovernor
from tests.support import collect, packets, silence, speech

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(governor: ThreadGovernor, clock: FakeClock, n: int, cost_ms: dict[int, float], batch: int = 8) -> list:
    """``n`` steps of ``batch`` streams, each costing ``cost_ms[threads]`` per stream; the counts used."""
    used = []
    for _ in range(n):
        governor.before_step()
        used.append(governor._applied)
        governor.after_step(batch, cost_ms[governor._applied] * batch / 1000)
        clock.now += 0.1
    return used


HEAVY = {2: 7.5, 1: 12.0}  # ms per stream: 8 streams every 100 ms keep one thread ~96 % busy, two ~60 %
LIGHT = {2: 1.0, 1: 1.6}  # one thread ~13 % busy


def test_one_thread_is_taken_under_contention_and_all_cores_again_when_they_are_free():
    clock = FakeClock()
    g = ThreadGovernor(2, clock=clock)
    used = run_steps(g, clock, 60, HEAVY)  # two threads are cheaper and needed: probes of one thread lose
    assert g.threads == 2 and g.switches == 0 and used.count(1) >= PROBE_STEPS  # it did try
    contended = {2: 40.0, 1: 12.0}  # another process spins on the cores: one thread wins the next probe
    run_steps(g, clock, int(PROBE_FEWER_EVERY_S / 0.1) + WINDOW_STEPS + PROBE_STEPS, contended)
    assert (g.threads, g.switches) == (1, 1)
    used = run_steps(g, clock, int(PROBE_FEWER_EVERY_S / 0.1) + 2 * PROBE_STEPS, HEAVY)  # the neighbour left:
    assert (g.threads, g.switches) == (2, 2)  # one thread is busy, so all cores are tried soon, and win


def test_one_thread_is_taken_at_light_load_and_all_cores_once_the_load_grows():
    """A few streams: one thread steps them in a small share of the time, and a second thread would only add its
    spinning. When the load grows past what one thread carries lightly, all cores come back within seconds."""
    clock = FakeClock()
    g = ThreadGovernor(2, clock=clock)
    run_steps(g, clock, int(PROBE_FEWER_EVERY_S / 0.1) + WINDOW_STEPS + PROBE_STEPS, LIGHT)
    assert (g.threads, g.switches) == (1, 1)
    run_steps(g, clock, 200, LIGHT)  # light, though all cores would be faster: stays on one
    assert (g.threads, g.switches) == (1, 1)
    run_steps(g, clock, int(2 * PROBE_FEWER_EVERY_S / 0.1) + 2 * PROBE_STEPS, HEAVY)
    assert (g.threads, g.switches) == (2, 2)


def test_a_probe_of_all_cores_that_stalls_ends_at_its_first_step():
    clock = FakeClock()
    g = ThreadGovernor(2, clock=clock)
    run_steps(g, clock, int(PROBE_FEWER_EVERY_S / 0.1) + WINDOW_STEPS + PROBE_STEPS, {2: 40.0, 1: 12.0})
    assert g.threads == 1
    used = run_steps(g, clock, 400, {2: 500.0, 1: 12.0})  # all cores stall for seconds beside the neighbour
    probes = [i for i, n in enumerate(used) if n == 2]
    assert probes and all(i - 1 not in probes for i in probes)  # each probe was one step long
    assert g.threads == 1


def test_a_fixed_count_is_kept():
    clock = FakeClock()
    g = ThreadGovernor(2, adaptive=False, clock=clock)
    assert set(run_steps(g, clock, 100, {2: 5.0, 1: 1.0})) == {2}


def test_a_probe_at_another_batch_size_is_not_compared():
    clock = FakeClock()
    g = ThreadGovernor(2, clock=clock)
    run_steps(g, clock, WINDOW_STEPS, {2: 1.0, 1: 1.0}, batch=64)
    clock.now += PROBE_FEWER_EVERY_S
    run_steps(g, clock, PROBE_STEPS, {2: 10.0, 1: 1.0}, batch=4)  # far cheaper, but 16x smaller batches
    assert g.switches == 0


def test_an_engine_moves_its_thread_count_by_default_where_that_is_exact_and_keeps_a_count_given():
    """The governor runs by default where a step's bits do not depend on the thread count (checked at load), and
    with ``"auto"``; a count given is kept."""
    model = build_random_model("tiny", seed=1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count is "all cores"
    engines = {n: ps.Engine.from_model(model, name="tiny", num_threads=n) for n in (None, 1, "auto")}
    try:
        governors = {n: e._scheduler.threads for n, e in engines.items()}
        assert {n: (g.most, g.adaptive) for n, g in governors.items()} == {
            None: (2, True), 1: (1, False), "auto": (2, True)}  # the 1-thread engine did not change the next one's
        assert [e.metrics().cpu_threads for e in engines.values()] == [2, 1, 2]
    finally:
        for e in engines.values():
            e.close()
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2, "two", 1.5, True])
def test_a_thread_count_that_is_not_one_or_more_or_auto_is_refused(bad):
    with pytest.raises(ValueError) as e:
        ps.Engine.from_model(build_random_model("tiny", seed=1), name="tiny", num_threads=bad)
    assert str(e.value) == f"num_threads must be a count of at least 1, 'auto' or None; got {bad!r}"


PROBE = """
import os, sys
{pre}
import parakeet_stream
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("MKL_CBWR"))
"""


def test_openmp_spins_briefly_and_mkl_is_strict_unless_the_user_chose_or_torch_came_first():
    def policy(pre: str, **env: str) -> str:
        out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'plugin'}", "PATH": "/usr/bin:/bin", **env})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    from parakeet_stream.threads import mkl_branch

    assert policy("") == f"20000 {mkl_branch()},STRICT"
    assert policy("", MKL_ENABLE_INSTRUCTIONS="AVX2") == "20000 AVX2,STRICT"
    assert policy("", OMP_WAIT_POLICY="PASSIVE", MKL_CBWR="AVX2") == "None AVX2"  # a wait policy of yours wins
    assert policy("", GOMP_SPINCOUNT="0") == "0 " + f"{mkl_branch()},STRICT"
    assert policy("import torch") == "None None"  # too late to matter: left alone


def test_mkls_branch_is_named_where_the_cpu_stops_at_avx2(monkeypatch):
    from parakeet_stream.threads import mkl_branch

    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    assert mkl_branch("flags : fpu sse2 avx avx2 fma") == "AVX2"  # AMD EPYC Rome/Milan, older Xeons
    assert mkl_branch("flags : fpu sse2 avx avx2 fma avx512f avx512bw") == "AUTO"
    assert mkl_branch("flags : fpu sse2 avx") == "AUTO"


def test_pointwise_convs_as_products_make_the_encoders_bits_independent_of_the_thread_count():
    """What lets the governor change the count by default: NeMo's 1x1 convolutions (oneDNN) round by the thread
    split; as MKL products under MKL_CBWR's STRICT mode they do not. ``thread_count_independent`` is the check the
    engine makes at load, on this machine."""
    from parakeet_stream.pointwise import replace_pointwise_convs, thread_count_independent

    before = torch.get_num_threads()
    try:
        model = build_random_model("tiny", seed=1)
        assert not thread_count_independent(model.encoder, 2)
        assert replace_pointwise_convs(model.encoder) == 10  # 2 in the subsampling, 2 in each of 4 layers
        assert thread_count_independent(model.encoder, 2)
    finally:
        torch.set_num_threads(before)


def test_a_stream_falling_behind_and_catching_up_is_logged_once_each(caplog):
    engine = ps.Engine.load("espeak-demo-en", device="cpu", max_streams=2)
    try:
        stream = engine.open_stream()
        audio = list(packets(speech("turn on the lights"), 20))
        gate, held = threading.Event(), threading.Event()

        def hold() -> None:  # the inference thread makes no progress (a neighbour took the cores)
            held.set()
            gate.wait(10)

        for p in audio[:10]:
            stream.push(p)
        time.sleep(0.3)  # the thread takes those packets first
        busy = threading.Thread(target=engine._scheduler.call, args=(hold,))
        with caplog.at_level(logging.INFO, logger="parakeet_stream"):
            busy.start()
            assert held.wait(10)
            for p in audio[10:]:
                stream.push(p)
            time.sleep(2.6)
            gate.set()
            busy.join()
            deadline = time.monotonic() + 10
            while engine.metrics().lag_episodes < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            lagging = engine.metrics()
            for p in packets(silence(1.5), 20):  # the speaker goes on in real time: results come at once again
                stream.push(p)
                time.sleep(0.02)
            stream.finish()
            events = collect(stream)
        messages = [(r.getMessage(), r.levelname) for r in caplog.records
                    if r.getMessage() in ("stream falling behind", "stream caught up")]
        assert messages == [("stream falling behind", "WARNING"), ("stream caught up", "INFO")]
        behind = next(r for r in caplog.records if r.getMessage() == "stream falling behind")
        assert behind.stream_id == stream.id and behind.lag_s >= 2.0
        assert (lagging.lag_episodes, lagging.lagging_streams) == (1, 1) and lagging.max_lag_seconds >= 2.0
        assert engine.metrics().lagging_streams == 0
        assert [e.text for e in events if isinstance(e, ps.Final)] == ["turn on the lights"]  # nothing lost
    finally:
        engine.close()
