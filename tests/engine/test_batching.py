"""Streams stepped together in batches give exactly what each gives alone; slots are reused. One lane each: its
batches, its slots and its thread are what is tested."""
from __future__ import annotations

import time

import pytest

import parakeet_stream as ps
from tests.support import collect, packets, speech

NO_ENDPOINTS = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
SENTENCES = ["one two three", "call me at seven thirty", "set a timer for ten minutes", "what time is it",
             "the quick brown fox jumps over the lazy dog", "open the window please", "four five six",
             "hello world this is a test of the stream model"]


def final_text_and_words(events):
    finals = [e for e in events if isinstance(e, ps.Final)]
    return [(f.text, f.words) for f in finals]


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=16, lanes=1))
    yield engine
    engine.close()


AUDIOS = [(s, v) for s, v in zip(SENTENCES, ["en-us", "en-gb", "en-us", "en"] * 2)]


@pytest.fixture(scope="module")
def solo_results(tiny_engine):
    """Each sentence streamed alone: what every batched run must give."""
    solo = []
    for sentence, voice in AUDIOS:
        s = tiny_engine.open_stream(endpointing=NO_ENDPOINTS)
        for p in packets(speech(sentence, voice=voice)):
            s.push(p)
        s.finish()
        solo.append(final_text_and_words(collect(s)))
    assert all(len(r) == 1 and r[0][0] for r in solo)
    return solo


def run_staggered(engine, results: bool = True) -> list:
    """The sentences on concurrent streams, stream i starting i*7 packets (140 ms) after stream i-1; all are pushed
    far faster than real time, so the inference thread finds several streams ready at each wake-up, at different
    step kinds."""
    streams = [engine.open_stream(endpointing=NO_ENDPOINTS) for _ in AUDIOS]
    feeds = [list(packets(speech(sentence, voice=voice))) for sentence, voice in AUDIOS]
    for tick in range(max(len(f) + 7 * i for i, f in enumerate(feeds)) + 1):
        for i, (s, feed) in enumerate(zip(streams, feeds)):
            k = tick - 7 * i
            if 0 <= k < len(feed):
                s.push(feed[k])
            elif k == len(feed):
                s.finish()
    events = [collect(s) for s in streams]
    return [final_text_and_words(e) for e in events] if results else events


def test_eight_staggered_streams_equal_their_solo_runs(tiny_engine, solo_results):
    before = tiny_engine.metrics()
    batched = run_staggered(tiny_engine)
    after = tiny_engine.metrics()

    assert batched == solo_results
    assert after.max_batch_size >= 4
    assert after.streams_stepped - before.streams_stepped > after.steps - before.steps  # real batches
    # every stream-step's result had its latency counted
    assert after.results - before.results == after.streams_stepped - before.streams_stepped


def test_batches_cut_to_max_batch_are_pipelined_and_exact(tiny_model, solo_results):
    """With more ready streams than ``max_batch``, each batch's encoder step is issued before the previous batch's
    per-stream work, and every stream still gets its solo result."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=16,
                                                              max_batch=3, lanes=1))
    sched = engine._scheduler
    calls: list[tuple[str, int]] = []  # (what, first slot of the batch)

    def record(name, slots_of):
        real = getattr(sched, name)

        def wrapper(*args):
            calls.append((name, slots_of(*args)))
            return real(*args)
        setattr(sched, name, wrapper)

    record("_issue", lambda items, drop, is_last: items[0][0].slot)
    record("_read", lambda issued: issued.states[0].slot)
    record("_deliver", lambda issued, *rest: issued.states[0].slot)
    try:
        batched = run_staggered(engine)
        m = engine.metrics()
    finally:
        engine.close()

    assert batched == solo_results
    assert m.max_batch_size == 3
    # within each step: issue(a) read(a) issue(b) deliver(a) read(b) issue(c) deliver(b) ... deliver(last)
    pipelined = 0
    for i, (what, slot) in enumerate(calls):
        if what == "_read" and i + 2 < len(calls) and calls[i + 1][0] == "_issue":
            assert calls[i + 2] == ("_deliver", slot)
            pipelined += 1
        elif what == "_deliver":
            assert calls[i - 1][0] in ("_read", "_issue")
    assert pipelined >= 5
    assert [w for w, _ in calls].count("_deliver") == [w for w, _ in calls].count("_issue") == m.steps


@pytest.mark.parametrize("where", ["encoder", "decoder"])
def test_a_failed_batch_fails_its_own_streams_and_no_other(tiny_model, solo_results, where):
    """A model call that raises (say, out of GPU memory) while other batches of the same step are in flight fails
    the streams of its batch with the error, and every other stream still gets its solo result."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=16,
                                                              max_batch=2, lanes=1))
    sched = engine._scheduler
    owner, name = (sched.slots, "gather") if where == "encoder" else (sched.decoder, "decode")
    real, seen, failed = getattr(owner, name), [], []

    def faulty(*args):
        index = args[0] if where == "encoder" else args[2]
        seen.append(index.tolist())
        if not failed and len(seen) > 30 and len(index) == 2:  # mid-run, a batch cut by max_batch
            failed.extend(index.tolist())
            raise RuntimeError("CUDA out of memory (injected)")
        return real(*args)
    setattr(owner, name, faulty)
    try:
        streams = run_staggered(engine, results=False)
        results = [final_text_and_words(events) for events in streams]
    finally:
        engine.close()

    assert len(failed) == 2
    failures = [events[-1] for events in streams if isinstance(events[-1], ps.StreamFailed)]
    assert len(failures) == 2
    assert {f.message for f in failures} == {"inference failed: RuntimeError: CUDA out of memory (injected)"}
    survivors = [(r, solo) for events, r, solo in zip(streams, results, solo_results)
                 if not isinstance(events[-1], ps.StreamFailed)]
    assert len(survivors) == len(AUDIOS) - 2
    assert all(r == solo for r, solo in survivors)
    assert engine.active_streams == 0


def test_real_time_audio_wakes_the_thread_for_decisions_and_polls_not_for_every_packet(demo_engine):
    """Eight streams fed in real time, their 20 ms packets at eight different phases (400 packets a second): the
    inference thread wakes when chunks complete, at ticks, every POLL_S and for commands, not once per packet,
    and every stream's transcript is the offline one. (The demo model: a random model's text can flip on the last
    bits that batching other streams' features together changes.)"""
    from parakeet_stream.runtime.loop import POLL_S
    from tests.support import RELIABLE_SENTENCES

    audios = [speech(sentence, voice=voice) for sentence, voice in zip(RELIABLE_SENTENCES, ["en-us", "en-gb"] * 4)]
    offline = [demo_engine.transcribe(a).text for a in audios]
    streams = [demo_engine.open_stream(endpointing=NO_ENDPOINTS) for _ in audios]
    feeds = [list(packets(a)) for a in audios]
    due = sorted((0.02 * k + 0.0025 * i, i, k) for i, f in enumerate(feeds) for k in range(len(f) + 1))
    before, t0 = demo_engine.metrics(), time.monotonic()
    for at, i, k in due:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        streams[i].push(feeds[i][k]) if k < len(feeds[i]) else streams[i].finish()
    texts = [" ".join(e.text for e in collect(s) if isinstance(e, ps.Final)) for s in streams]
    wall, m = time.monotonic() - t0, demo_engine.metrics()

    assert texts == offline == list(RELIABLE_SENTENCES)
    wakeups, steps = m.wakeups - before.wakeups, m.steps - before.steps
    chunks = m.streams_stepped - before.streams_stepped
    n_packets = sum(len(f) for f in feeds)
    # polls, plus at most one wake-up per completed chunk and two per step (the decision, the tick), plus the
    # finish commands: far fewer than one per packet
    assert wakeups <= wall / POLL_S + chunks + 2 * steps + len(streams)
    assert wakeups < n_packets / 2


def test_a_fault_outside_any_stream_fails_the_live_streams_and_the_engine_serves_on(tiny_model):
    """An exception in the thread's shared work (here the batched featurizer, failing once) ends the live streams
    with StreamFailed naming it; the thread lives, and the next stream is served."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=4, lanes=1))
    sched = engine._scheduler
    real, calls = sched._before_step, []

    def faulty(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("injected")
        return real(*args, **kwargs)
    sched._before_step = faulty
    try:
        broken = [engine.open_stream(endpointing=NO_ENDPOINTS) for _ in range(2)]
        for s in broken:
            s.push(speech("one two three"))
        ends = [collect(s)[-1] for s in broken]
        assert ends == [ps.StreamFailed("engine error: MemoryError: injected")] * 2
        assert engine.active_streams == 0
        after = engine.open_stream(endpointing=NO_ENDPOINTS)
        after.push(speech("one two three"))
        after.finish()
        assert isinstance(collect(after)[-1], ps.StreamEnded)
    finally:
        engine.close()


def test_between_decisions_the_thread_polls_every_20_ms_or_four_times_the_polls_cost():
    import threading
    import types

    from parakeet_stream.runtime.clock import ChunkClock
    from parakeet_stream.runtime.loop import InferenceLoop

    now = time.monotonic()
    receiving = types.SimpleNamespace(closed=False, finalizing=None, ready=lambda: False, last_audio_at=now,
                                      samples_until_ready=lambda: None, seconds_until_ready=lambda: 0.0,
                                      packet_s=0.02)
    loop = types.SimpleNamespace(_states=[receiving], _cond=threading.Condition(), _features_s=0.001,
                                 clock=ChunkClock(0.08), tracks_readiness=False, _last_audio_at=now)
    assert InferenceLoop._plan_sleep(loop, None) == pytest.approx(now + 0.02, abs=0.005)
    loop._features_s = 0.05  # features and VAD of one wake-up took 50 ms: poll every 200 ms
    assert InferenceLoop._plan_sleep(loop, None) == pytest.approx(now + 0.2, abs=0.005)
    assert InferenceLoop._plan_sleep(loop, now + 0.01) == pytest.approx(now + 0.01)  # a tick comes first
    loop._last_audio_at = receiving.last_audio_at = now - 1.0  # no audio for a second: no polls, commands wake it
    assert InferenceLoop._plan_sleep(loop, None) is None


def test_result_latency_counts_the_wait_from_push_to_result():
    from parakeet_stream.runtime.metrics import EngineMetrics

    m = EngineMetrics()
    for ms in range(1, 101):
        m.record_result_latency(ms / 1000 + 0.0004)
    m.record_result_latency(99.0)  # beyond the last bin: counted there
    assert m.results == 101
    assert [m.result_latency_percentile(q) for q in (0, 50, 95, 100)] == [1.0, 51.0, 96.0, 10000.0]
    assert EngineMetrics().result_latency_percentile(50) is None


def test_results_held_back_by_a_busy_inference_thread_show_the_wait(tiny_model):
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=1, lanes=1))
    try:
        stream = engine.open_stream(endpointing=NO_ENDPOINTS)
        with engine._scheduler._cond:  # the inference thread cannot take the audio while we hold its lock
            for p in packets(speech("one two three four")):
                stream.push(p)
            time.sleep(0.3)
        stream.finish()
        collect(stream)
        m = engine.metrics()
    finally:
        engine.close()
    assert m.results == m.streams_stepped > 5
    assert m.result_latency_percentile(0) >= 300.0


def test_five_hundred_streams_reuse_slots_without_growth(tiny_engine):
    audio = speech("one two three")[:8000]
    slots = tiny_engine._scheduler.slots
    for wave in range(63):  # 504 streams, 8 open at a time, half finished and half abandoned
        streams = [tiny_engine.open_stream() for _ in range(8)]
        for i, s in enumerate(streams):
            s.push(audio)
            s.finish() if i % 2 else s.close()
        for s in streams:
            collect(s)
    assert tiny_engine.active_streams == 0
    assert tiny_engine._scheduler._states == []
    assert slots.in_use == 0
    assert slots.capacity == 8  # the peak number of concurrent streams in this module
    assert slots.channel.shape[1] == 8
    assert tiny_engine.metrics().streams_opened >= 504


def test_open_stream_does_not_wait_for_the_inference_thread(tiny_engine):
    """open_stream returns before the inference thread has attached the stream (it may be mid-step)."""
    scheduler = tiny_engine._scheduler
    with scheduler._cond:  # hold the loop: it cannot take new arrivals while we hold its lock
        s = tiny_engine.open_stream()
        assert s in [state.handle for state in scheduler._arrivals]
    s.push(speech("four five six"))
    s.finish()
    assert isinstance(collect(s)[-1], ps.StreamEnded)


def test_shared_engine_raises_capacity_for_a_later_caller():
    first = ps.shared_engine(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=2))
    base = first.capacity  # other tests of this session may have shared it already
    again = ps.shared_engine(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=base + 3))
    assert again is first and first.capacity == base + 3
    assert ps.shared_engine(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=1)).capacity == base + 3


def test_a_closed_shared_engine_is_replaced_for_its_next_user():
    """One user closing the shared engine must not leave every later user of the process a dead one ("engine is
    closed" on their first stream)."""
    config = ps.EngineConfig(model="espeak-demo-en", device="cpu", lanes=1, max_streams=2)  # a key of its own
    first = ps.shared_engine(config)
    first.close()
    assert first.closed
    again = ps.shared_engine(config)
    try:
        assert again is not first and not again.closed
        assert again.transcribe(speech("turn on the lights")).text == "turn on the lights"
        assert ps.shared_engine(config) is again
    finally:
        again.close()


def test_steps_follow_a_chunk_clock_stretched_under_load_waiting_only_for_streams_due_by_the_tick():
    import types

    from parakeet_stream.runtime.clock import ChunkClock

    def stream(ready: bool, receiving: bool, finalizing: str | None = None, ready_in: float = 0.0,
               pushed_ago: float = 0.015):
        """A stream whose last 20 ms packet was pushed ``pushed_ago`` seconds ago and that needs ``ready_in``
        seconds more audio to complete its chunk."""
        return types.SimpleNamespace(ready=lambda: ready, finalizing=finalizing, seconds_until_ready=lambda: ready_in,
                                     last_audio_at=time.monotonic() - pushed_ago if receiving else 0.0,
                                     packet_s=0.02)

    a, b = stream(True, True), stream(False, True)  # b is still receiving the rest of its chunk
    now = time.monotonic()
    clock, streams = ChunkClock(0.08), [a, b]
    clock.stepped(now - 0.03, 0.02)
    # the next tick: 80 ms after the previous step began
    assert clock.next_step([a], streams) == pytest.approx(now + 0.05, abs=1e-9)
    clock.last_step_at = now - 0.1  # that tick has passed: step now
    assert clock.next_step([a], streams) is None
    clock.last_step_at, clock.last_step_s = now - 0.1, 0.2  # steps take longer than a tick: it stretches
    assert clock.next_step([a], streams) == pytest.approx(now - 0.1 + 1.25 * 0.2, abs=1e-9)
    # a flush/finish, no other stream receiving audio, or no window at all: step now
    assert clock.next_step([stream(True, True, "finish")], streams) is None
    streams = [a]
    assert clock.next_step([a], streams) is None
    # b receives its chunk's last 40 ms by the tick with a packet to spare (its next packet in 5 ms, then 40 ms
    # missing, done 45 ms from now, the tick in 50): worth waiting for; 60 ms: it would miss the tick, step now
    clock.last_step_at, clock.last_step_s = now - 0.03, 0.02
    streams = [a, stream(False, True, ready_in=0.04)]
    assert clock.next_step([a], streams) == pytest.approx(now + 0.05, abs=1e-9)
    streams = [a, stream(False, True, ready_in=0.06)]
    assert clock.next_step([a], streams) is None
    # its packet just came: the next is 20 ms away, and 20 + 40 ms is past the tick; no spare packet, step now
    streams = [a, stream(False, True, ready_in=0.04, pushed_ago=0.0)]
    assert clock.next_step([a], streams) is None
    streams, clock.window_s = [a, b], 0.0
    assert clock.next_step([a], streams) is None


def test_a_thread_count_changing_at_every_step_keeps_every_stream_exact(tiny_model, solo_results):
    """The thread governor may move between one thread and all cores at any step (threads.py): a step's bits do
    not depend on the count (pointwise.py), so staggered streams stepped alternately on one and two threads give
    their solo results."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=16, lanes=1))
    governor = engine._scheduler.threads
    counts: list[int] = []

    def alternate() -> None:  # runs on the inference thread, before each step
        governor._apply(1 if len(counts) % 2 else 2)
        counts.append(governor._applied)
    governor.before_step = alternate
    try:
        assert run_staggered(engine) == solo_results
    finally:
        engine.close()
    assert {1, 2} <= set(counts) and len(counts) > 20


def test_a_run_of_slots_in_order_is_read_as_a_view_and_any_other_batch_as_a_copy(tiny_model):
    """A batch whose slots are consecutive and ascending (a step sorts its streams by slot) reads the caches as
    views of the slot tensors; the step's new caches are written back after it has read them."""
    import torch
    from parakeet_stream.streaming.slots import CacheSlots

    assert CacheSlots.span_of([3, 4, 5]) == slice(3, 6)
    assert CacheSlots.span_of([3, 5]) is None and CacheSlots.span_of([4, 3]) is None
    slots = CacheSlots(tiny_model.encoder, 8, torch.float32, "cpu", keys_values=True)
    taken = [slots.acquire() for _ in range(4)]
    assert taken == [0, 1, 2, 3]
    for cache in (slots.channel, slots.time, slots.keys, slots.values):
        cache.normal_()
    index = torch.tensor([1, 2, 3])
    views, copies = slots.gather(index, CacheSlots.span_of([1, 2, 3])), slots.gather(index)
    assert all(torch.equal(v, c) for v, c in zip(views, copies))
    assert views[0].data_ptr() == slots.channel[:, 1].data_ptr() and copies[0].data_ptr() != views[0].data_ptr()
    kv_views = slots.gather_keys_values(index, CacheSlots.span_of([1, 2, 3]))
    kv_copies = slots.gather_keys_values(index)
    assert all(torch.equal(v, c) for v, c in zip(kv_views, kv_copies))
    assert kv_views[0].data_ptr() == slots.keys[:, 1].data_ptr() != kv_copies[0].data_ptr()
    assert kv_views[1].data_ptr() == slots.values[:, 1].data_ptr() != kv_copies[1].data_ptr()
