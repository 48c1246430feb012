"""The engine's CPU thread policy (``parakeet_stream.runtime.threads``) and how a stream falling behind is reported."""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import parakeet_stream as ps
import pytest
import torch
from parakeet_stream.testing import build_random_model
from parakeet_stream.runtime.threads import (BUSY_WINDOW_S, GROWN_AFTER_S, LIGHT_PROBE_EVERY_S, MIN_WINDOW_STEPS,
                                     PROBE_MORE_EVERY_S, PROBE_STEPS, ThreadGovernor)
from tests.support import collect, packets, silence, speech

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ALONE = {2: 0.9, 1: 1.0}  # the share of their cores the step's threads get
CONTENDED = {2: 0.5, 1: 0.9}  # another process spins on both cores


def run_steps(governor: ThreadGovernor, clock: FakeClock, n: int, cost_ms: dict[int, float], batch: int = 8,
              share: dict[int, float] = ALONE) -> list:
    """``n`` steps of ``batch`` streams 0.1 s apart, each costing ``cost_ms[threads]`` per stream with its threads
    getting ``share[threads]`` of their cores; the counts used."""
    used = []
    for _ in range(n):
        governor.before_step()
        threads = governor._applied
        used.append(threads)
        seconds = cost_ms[threads] * batch / 1000
        governor.after_step(batch, seconds, cpu_seconds=seconds * threads * share[threads])
        clock.now += 0.1
    return used


HEAVY = {2: 7.5, 1: 12.0}  # ms per stream: 8 streams every 100 ms keep one thread ~96 % busy, two ~60 %
LIGHT = {2: 1.0, 1: 1.6}  # one thread ~13 % busy


class Neighbour:
    """What ``OtherProcessesLoad`` would say: the cores other processes keep busy."""

    def __init__(self) -> None:
        self.cores = 0.0

    def __call__(self) -> float:
        return self.cores


def test_an_engine_starts_on_one_thread_and_takes_all_cores_when_the_load_grows():
    clock, neighbour = FakeClock(), Neighbour()
    g = ThreadGovernor(2, clock=clock, others=neighbour)
    used = run_steps(g, clock, 200, LIGHT)  # light: one thread, though all cores would be faster
    assert (g.threads, g.switches) == (1, 0) and used.count(2) <= 2 * PROBE_STEPS  # tried rarely
    run_steps(g, clock, int(BUSY_WINDOW_S / 0.1) + int(GROWN_AFTER_S / 0.1) + 1, HEAVY)
    assert (g.threads, g.switches, g.reason) == (2, 1, "load grew")  # within a second and a half of the growth
    used = run_steps(g, clock, 600, HEAVY)  # alone at a heavy load: nothing is tried, nothing changes
    assert set(used) == {2} and g.switches == 1


def test_a_grown_load_takes_all_cores_even_where_they_are_only_a_little_cheaper_per_stream():
    """At a large batch much of a step is per-stream Python: two threads cost 0.9 of one per stream, and still
    they are what keeps the load real-time (one thread is busy 100 % of the time)."""
    clock, neighbour = FakeClock(), Neighbour()
    g = ThreadGovernor(2, clock=clock, others=neighbour)
    run_steps(g, clock, 50, LIGHT)
    run_steps(g, clock, int(BUSY_WINDOW_S / 0.1) + int(GROWN_AFTER_S / 0.1) + 1, {2: 11.25, 1: 12.5})
    assert (g.threads, g.reason) == (2, "load grew")
    used = run_steps(g, clock, 300, {2: 11.25, 1: 12.5})
    assert set(used) == {2} and g.switches == 1


def test_contention_takes_one_thread_at_once_and_all_cores_come_back_when_free():
    clock, neighbour = FakeClock(), Neighbour()
    g = ThreadGovernor(2, clock=clock, others=neighbour)
    run_steps(g, clock, 30, HEAVY)
    assert g.threads == 2
    neighbour.cores = 1.8  # a torch process spinning on both cores
    run_steps(g, clock, MIN_WINDOW_STEPS, {2: 25.0, 1: 12.0}, share=CONTENDED)
    used = run_steps(g, clock, 1, {2: 25.0, 1: 12.0}, share=CONTENDED)
    assert used == [1] and (g.threads, g.reason) == (1, "contention")  # seen in the steps' CPU time at once
    used = run_steps(g, clock, 600, {2: 25.0, 1: 12.0}, share=CONTENDED)  # a minute beside the neighbour
    assert set(used) == {1}  # all cores are not even tried while the neighbour keeps them busy
    neighbour.cores = 0.0  # the neighbour left
    run_steps(g, clock, int(PROBE_MORE_EVERY_S[0] / 0.1) + PROBE_STEPS + 1, HEAVY)
    assert (g.threads, g.reason) == (2, "cores free again")


def test_one_thread_is_taken_when_the_load_becomes_light():
    clock, neighbour = FakeClock(), Neighbour()
    g = ThreadGovernor(2, clock=clock, others=neighbour)
    run_steps(g, clock, 50, HEAVY)
    assert g.threads == 2
    run_steps(g, clock, int((BUSY_WINDOW_S + LIGHT_PROBE_EVERY_S) / 0.1) + PROBE_STEPS + 1, LIGHT)
    assert (g.threads, g.reason) == (1, "light load")


def test_a_fixed_count_is_kept():
    clock = FakeClock()
    g = ThreadGovernor(2, adaptive=False, clock=clock)
    assert set(run_steps(g, clock, 100, {2: 5.0, 1: 1.0})) == {2}


def test_an_engine_moves_its_thread_count_by_default_where_that_is_exact_and_keeps_a_count_given():
    """An engine of one lane runs the governor by default where a step's bits do not depend on the thread count
    (checked at load), and with ``"auto"``; a count given is kept."""
    model = build_random_model("tiny", seed=1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count is "all cores"
    engines = {n: ps.Engine.from_model(model, ps.EngineConfig(model="tiny", num_threads=n, lanes=1))
               for n in (None, 1, "auto")}
    try:
        governors = {n: e._scheduler.threads for n, e in engines.items()}
        assert {n: (g.most, g.adaptive) for n, g in governors.items()} == {
            None: (2, True), 1: (1, False), "auto": (2, True)}  # the 1-thread engine did not change the next one's
        assert [e.metrics().cpu_threads for e in engines.values()] == [1, 1, 1]  # no streams: one thread
    finally:
        for e in engines.values():
            e.close()
        torch.set_num_threads(before)


def test_a_bf16_engine_on_the_cpu_keeps_all_cores_unless_asked_to_move():
    """oneDNN's bf16 kernels may round by the thread split at some batch shapes and not at others: no probe can
    clear them, so a bf16 engine of one lane keeps its count by default and moves only with ``"auto"``."""
    model = build_random_model("tiny", seed=1).to(torch.bfloat16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    engines = {n: ps.Engine.from_model(model, ps.EngineConfig(model="tiny-bf16", num_threads=n,
                                                              lanes=1)) for n in (None, "auto")}
    try:
        assert {n: (e._scheduler.threads.most, e._scheduler.threads.adaptive) for n, e in engines.items()} == {
            None: (2, False), "auto": (2, True)}
        assert engines[None].metrics().cpu_threads == 2
    finally:
        for e in engines.values():
            e.close()
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -2, "two", 1.5, True])
def test_a_thread_count_that_is_not_one_or_more_or_auto_is_refused(bad):
    with pytest.raises(ValueError) as e:
        ps.Engine.from_model(build_random_model("tiny", seed=1), ps.EngineConfig(model="tiny", num_threads=bad))
    assert str(e.value) == f"num_threads must be a count of at least 1, 'auto' or None; got {bad!r}"


PROBE = """
import os, sys
{pre}
import parakeet_stream
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("MKL_CBWR"))
"""


def test_openmp_spins_briefly_unless_torch_came_first_and_mkl_is_strict_unless_the_user_chose():
    def policy(pre: str, **env: str) -> str:
        out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": f"{ROOT / 'plugin'}", "PATH": "/usr/bin:/bin", **env})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    from parakeet_stream.runtime.threads import mkl_branch

    assert policy("") == f"20000 {mkl_branch()},STRICT"
    assert policy("", MKL_ENABLE_INSTRUCTIONS="AVX2") == "20000 AVX2,STRICT"
    assert policy("", OMP_WAIT_POLICY="PASSIVE", MKL_CBWR="AVX2") == "None AVX2"  # a wait policy of yours wins
    assert policy("", GOMP_SPINCOUNT="0") == "0 " + f"{mkl_branch()},STRICT"
    # libgomp read its spin count when torch loaded; MKL reads MKL_CBWR at its first call: still set (an
    # application importing torch first kept MKL's shape-dependent kernels: a stream alone != in a batch)
    assert policy("import torch") == f"None {mkl_branch()},STRICT"


def test_mkls_branch_is_named_where_the_cpu_stops_at_avx2(monkeypatch):
    from parakeet_stream.runtime.threads import mkl_branch

    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    assert mkl_branch("flags : fpu sse2 avx avx2 fma") == "AVX2"  # AMD EPYC Rome/Milan, older Xeons
    assert mkl_branch("flags : fpu sse2 avx avx2 fma avx512f avx512bw") == "AUTO"
    assert mkl_branch("flags : fpu sse2 avx") == "AUTO"


def test_pointwise_convs_as_products_make_the_encoders_bits_independent_of_the_thread_count():
    """What lets the governor change the count by default: NeMo's 1x1 convolutions (oneDNN) round by the thread
    split; as MKL products under MKL_CBWR's STRICT mode they do not. ``thread_count_independent`` is the check the
    engine makes at load, on this machine."""
    from parakeet_stream.acceleration.pointwise import replace_pointwise_convs, thread_count_independent

    before = torch.get_num_threads()
    try:
        model = build_random_model("tiny", seed=1)
        assert not thread_count_independent(model.encoder, 2)
        assert replace_pointwise_convs(model.encoder) == 10  # 2 in the subsampling, 2 in each of 4 layers
        assert thread_count_independent(model.encoder, 2)
    finally:
        torch.set_num_threads(before)


def speak_through_a_stall(engine, streams, caplog):
    """Each stream says "turn on the lights" in packets while the inference thread makes no progress for 2.6 s (a
    neighbour took the cores), then goes on in real time; log records kept in ``caplog``. Returns the metrics once
    every stream has fallen behind, and each stream's events."""
    audio = list(packets(speech("turn on the lights"), 20))
    gate, held = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        gate.wait(10)

    def push_all(chunk) -> None:
        for s in streams:
            s.push(chunk)

    for p in audio[:10]:
        push_all(p)
    time.sleep(0.3)  # the thread takes those packets first
    busy = threading.Thread(target=engine._scheduler.call, args=(hold,))
    with caplog.at_level(logging.INFO, logger="parakeet_stream"):
        busy.start()
        assert held.wait(10)
        for p in audio[10:]:
            push_all(p)
        time.sleep(2.6)
        gate.set()
        busy.join()
        deadline = time.monotonic() + 10
        while engine.metrics().lag_episodes < len(streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        lagging = engine.metrics()
        for p in packets(silence(1.5), 20):  # the speakers go on in real time: results come at once again
            push_all(p)
            time.sleep(0.02)
        for s in streams:
            s.finish()
        return lagging, [collect(s) for s in streams]


def test_a_stream_falling_behind_and_catching_up_is_logged_once_each(caplog):
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=2))
    try:
        stream = engine.open_stream()
        lagging, (events,) = speak_through_a_stall(engine, [stream], caplog)
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


def test_streams_falling_behind_together_share_one_line_each_way(caplog):
    """An engine that stops making progress puts every stream behind at once: one line names them all (a line per
    stream would flood the log at a thousand streams, and cost the thread more than their decode)."""
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=4, lanes=1))
    try:
        streams = [engine.open_stream() for _ in range(3)]
        lagging, events = speak_through_a_stall(engine, streams, caplog)
        lines = [r for r in caplog.records if "falling behind" in r.getMessage() or "caught up" in r.getMessage()]
        assert [(r.getMessage(), r.levelname) for r in lines] == [("streams falling behind", "WARNING"),
                                                                  ("streams caught up", "INFO")]
        behind, caught = lines
        assert behind.count == 3 and behind.lag_s >= 2.0 and behind.streams == 3
        assert sorted(behind.stream_ids.split(",")) == sorted(s.id for s in streams)
        assert caught.count == 3 and sorted(caught.stream_ids.split(",")) == sorted(s.id for s in streams)
        assert (lagging.lag_episodes, lagging.lagging_streams) == (3, 3)
        assert engine.metrics().lagging_streams == 0
        assert [[e.text for e in ev if isinstance(e, ps.Final)] for ev in events] == [["turn on the lights"]] * 3
    finally:
        engine.close()
