"""What crosses between a caller's thread and the inference thread: packets joined while they wait, a stream's
events handed to its reader, and the one number the thread reads to know when a stream's next chunk is complete."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import parakeet_stream as ps
from parakeet_stream.events import Partial, SpeechStarted, StreamEnded
from parakeet_stream.runtime.commands import QueuedAudio
from parakeet_stream.stream import EventChannel


def test_packets_joined_while_waiting_are_one_copy_the_caller_cannot_change():
    first, second, third = (np.full(n, v, np.float32) for n, v in ((320, 1.0), (320, 2.0), (7, 3.0)))
    queued = QueuedAudio(first, 10.0)
    np.testing.assert_array_equal(queued.samples(), first)  # a lone packet is taken as it came
    queued.join(second, 10.02)
    queued.join(third, 10.04)
    first[:] = second[:] = third[:] = -1.0  # the caller reuses its buffers once push() returned
    expected = np.concatenate([np.full(320, 1.0), np.full(320, 2.0), np.full(7, 3.0)]).astype(np.float32)
    np.testing.assert_array_equal(queued.samples(), expected)
    assert queued.ends == [320, 640, 647]
    assert queued.pushed_at == [10.0, 10.02, 10.04]
    assert queued.last_size == 7
    for _ in range(100):  # ... and the buffer grows as more come
        queued.join(np.full(320, 4.0, np.float32), 11.0)
    assert queued.samples().shape == (647 + 32000,)
    assert queued.samples()[-1] == 4.0 and queued.samples()[646] == 3.0


def test_a_step_s_events_reach_the_reader_together_and_none_ends_the_channel():
    channel = EventChannel()
    started, partial = SpeechStarted(0, 0.1), Partial(0, "hi", "hi", (), 0.3, 1.0)
    channel.put_all([started, partial])
    assert [channel.get(timeout=0), channel.get(timeout=0)] == [started, partial]
    channel.put_all([StreamEnded(1.0, 1), None, partial])  # nothing comes after the end
    assert channel.get(timeout=0) == StreamEnded(1.0, 1)
    assert channel.get(timeout=0) is None and channel.get(timeout=0) is None


def test_an_empty_channel_answers_a_zero_timeout_at_once_and_wakes_a_blocked_reader():
    channel = EventChannel()
    t0 = time.perf_counter()
    assert channel.get(timeout=0) is False
    assert time.perf_counter() - t0 < 0.01
    got = []
    reader = threading.Thread(target=lambda: got.append(channel.get(timeout=5)))
    reader.start()
    time.sleep(0.05)  # the reader blocks in get()
    channel.put(SpeechStarted(3, 1.5))
    reader.join(timeout=2)
    assert got == [SpeechStarted(3, 1.5)]
    assert channel.get(timeout=0.01) is False  # timed out: False, not None (None is the end)


def test_the_next_chunk_is_complete_once_the_window_of_its_last_frame_is_heard(tiny_model):
    """The tiny model: 10 ms hop, a 512-sample window (256 after a frame's centre). Its first chunk at 160 ms
    (``first_chunk`` frames) is complete at sample (first_chunk - 1) * 160 + 256; each later one 16 frames on."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=2, lanes=1,
                                                              batch_window_ms=0))
    try:
        sched = engine._scheduler
        geometry = sched.chunk_geometry
        stream = engine.open_stream()
        first_at = (geometry.first_chunk - 1) * 160 + 256
        until = lambda: sched.call(lambda: sched._states[0].samples_until_ready())  # noqa: E731
        stream.push(np.zeros(first_at - 100, np.float32))
        assert _eventually(lambda: until() == 100)
        stream.push(np.zeros(100, np.float32))  # the first chunk is complete: stepped at once
        assert _eventually(lambda: engine.metrics().streams_stepped == 1)
        assert until() == geometry.chunk * 160
        stream.push(np.zeros(geometry.chunk * 160 - 1, np.float32))
        assert _eventually(lambda: until() == 1)
        assert engine.metrics().streams_stepped == 1
        stream.close()
    finally:
        engine.close()


def _eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("zeroed", [False, True])
def test_a_batch_is_assembled_in_one_reused_buffer(zeroed):
    from parakeet_stream.streaming.features import Staging

    staging = Staging()
    a = staging.array((4, 80, 25), zeroed=zeroed)
    a.fill(7.0)
    b = staging.array((2, 80, 25), zeroed=zeroed)
    assert np.shares_memory(a, b)  # the same memory, round after round
    assert b.shape == (2, 80, 25) and b.dtype == np.float32
    assert (b == 0.0).all() if zeroed else (b == 7.0).all()
    c = staging.array((8, 80, 25))  # larger: a new buffer
    assert not np.shares_memory(a, c) and c.shape == (8, 80, 25)


def test_asyncio_readers_of_a_batch_are_woken_with_one_call_per_event_loop():
    """Six streams read on one event loop and stepped together: every reader gets its stream's words, and the
    inference thread wakes the loop once per batch it hands over (``Wakeups``), not once per stream."""
    import asyncio

    from tests.support import RELIABLE_SENTENCES, speech

    sentences = RELIABLE_SENTENCES[:6]
    audios = [speech(s) for s in sentences]
    calls = []
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=8, lanes=1))

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: (calls.append(args), real(*args))[1]
        streams = [engine.open_stream(endpointing=ps.EndpointingOptions(vad=False, trailing_blank_ms=None))
                   for _ in audios]

        async def read(stream) -> str:
            return " ".join([e.text async for e in stream if isinstance(e, ps.Final)])

        readers = [asyncio.create_task(read(s)) for s in streams]
        await asyncio.sleep(0.05)  # every reader waits

        def push_all() -> None:  # (on the inference thread: every stream's audio comes in one wake-up)
            for stream, audio in zip(streams, audios):
                stream.push(audio)
                stream.finish()
        await asyncio.to_thread(engine._scheduler.call, push_all)
        return await asyncio.wait_for(asyncio.gather(*readers), 60)

    try:
        texts = asyncio.run(main())
        m = engine.metrics()
    finally:
        engine.close()
    assert texts == list(sentences)
    assert m.streams_stepped / m.steps > 3  # stepped together
    assert 0 < len(calls) <= m.steps + m.wakeups < m.streams_stepped


def test_a_wake_up_looks_only_at_the_streams_that_changed(tiny_model):
    """Thirty streams open and silent mid-chunk, one fed chunk after chunk: the thread steps the fed one and never
    asks the silent ones whether they are ready (at a thousand streams those scans were a tenth of its time)."""
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=32, lanes=1,
                                                              batch_window_ms=0))
    try:
        sched = engine._scheduler
        silent = [engine.open_stream() for _ in range(30)]
        for s in silent:
            s.push(np.zeros(800, np.float32))  # 50 ms: mid-chunk
        fed = engine.open_stream()
        assert _eventually(lambda: sched.call(lambda: len(sched._states)) == 31)
        asked = []

        def count_calls(state):
            for name in ("ready", "samples_until_ready"):
                method = getattr(state, name)
                setattr(state, name, lambda method=method: (asked.append(state), method())[1])
        sched.call(lambda: [count_calls(s._state) for s in silent])
        for _ in range(10):
            fed.push(np.zeros(2560, np.float32))
            time.sleep(0.02)
        assert _eventually(lambda: engine.metrics().streams_stepped >= 9)
        assert asked == []
        for s in silent + [fed]:
            s.close()
    finally:
        engine.close()


def test_readers_on_two_event_loops_are_woken_with_one_call_each():
    """A batch's readers may wait on several event loops (two servers in one process): each loop gets one
    call for all of its readers, and a loop closed meanwhile is skipped (its readers are gone)."""
    import asyncio

    from parakeet_stream.stream import Wakeups

    loops = [asyncio.new_event_loop() for _ in range(3)]
    calls = []
    for i, loop in enumerate(loops):
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args, i=i, real=real: (calls.append(i), real(*args))[1]
    futures = {i: [loops[i].create_future() for _ in range(4)] for i in range(3)}
    wakeups = Wakeups()
    for k in range(4):
        wakeups.add([(loops[i], futures[i][k]) for i in range(3)])
    loops[2].close()
    wakeups.send()
    for i in (0, 1):
        loops[i].run_until_complete(asyncio.sleep(0))
    assert sorted(calls) == [0, 1, 2]  # one each (the closed loop's call raised and was skipped)
    assert all(f.done() for i in (0, 1) for f in futures[i])
    assert not any(f.done() for f in futures[2])
    wakeups.send()  # sent once: nothing left
    assert sorted(calls) == [0, 1, 2]
    for loop in loops[:2]:
        loop.close()
