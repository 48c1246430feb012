"""What the inference thread spends per stream-step outside the model: the Python that scales with the number of
live streams (features bookkeeping, chunk assembly, reading the decode, transcripts, events). On a GPU the model
step of 1 000 streams takes ~100 ms (0.6 B model, H200), so every microsecond per stream-step here is a
millisecond of latency there. The bundled demo model runs N streams on the CPU in rounds of 160 ms of audio per
stream; each round is stepped as one batch. Prints a markdown table and writes JSON.

    .venv/bin/python bench/stream_overhead.py [--streams 64,256,1024] [--rounds 20] [--threads 2]
        [--device cpu|cuda] [--vad] [--async-readers] [--pcm16] [--keep-freed-memory] [--baseline GIT_REF]
        [--repeats 3] [--out PATH]

``--baseline`` runs the engine of another commit (a temporary git worktree) interleaved with this checkout's,
each level in a fresh process, and reports the ratio of their medians.

The thread's time (each wake-up's work once its commands are taken) is split by timing its calls: the model
(preprocessor, encoder steps and the label-looping decoder), the slot copies (caches gathered and written back),
Silero VAD with ``--vad`` (its network and its per-stream Python, together), and the rest, reported per
stream-step and split by phase (``PHASES``, a second table); the JSON also gives the preprocessor's own time
(``model_features_s``: on the model's device by default, ``EngineConfig.features_device``). On the CPU the issue
phase also holds freeing the step's large output tensors (glibc returns them with munmap; CUDA's caching
allocator keeps them). A round's packets are pushed from a job on the inference thread itself (timed apart:
``push_us_per_packet``, what each of a server's 50 pushes a second per stream costs under the GIL; ``--pcm16``
pushes 16-bit PCM bytes as a WebSocket server receives them), so no other thread holds the GIL while the thread
works, and the streams' events are read between rounds; with
``--async-readers`` they are read as a server reads them, by one asyncio task per stream on one event loop in
another thread (which then shares the GIL, as it does in a server).

``--keep-freed-memory`` runs the children with glibc's malloc keeping freed memory for reuse (``KEEP_FREED_MEMORY``),
as CUDA's caching allocator does on a GPU. With glibc's defaults, tensors above 32 MB are mapped and unmapped on
every use: at 1 024 streams each step's output caches are unmapped in the issue phase (~10 us per stream-step on
the 2-core VM), a cost of the CPU's allocator that a GPU host does not pay. An engine with
``EngineConfig.keep_freed_memory`` (the default since ``d7a5484``) sets the same itself; the flag is for baseline
engines from before.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from interleaved import child_result, engine_module, load_engine, run_interleaved, write_result

ROUND_S = 0.16
# glibc tunables (read at process start): blocks of any size come from the heap and stay there once freed
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296",
                     "MALLOC_ARENA_MAX": "1"}
SENTENCES = ("set a timer for ten minutes", "call me at seven thirty tomorrow morning", "turn on the radio")


class Timed:
    """A callable (or an object's method) whose calls add their wall time to ``clock[key]``."""

    def __init__(self, fn, clock: dict, key: str) -> None:
        self._fn, self._clock, self._key = fn, clock, key

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._fn(*args, **kwargs)
        finally:
            self._clock[self._key] += time.perf_counter() - t0

    def __getattr__(self, name):
        return getattr(self._fn, name)


# Where the thread's time outside the model goes, per stream-step (each phase less the model and copies in it):
# received audio applied, features (bookkeeping around the preprocessor), a batch's encoder step issued (chunks
# assembled, caches gathered, the step's outputs freed), its decode read (tokens), its streams' results delivered
# (transcripts, events, latency).
PHASES = {"backlog": "_apply_backlog", "features": "_before_step", "issue": "_issue", "read": "_read",
          "deliver": "_deliver"}


def instrument(sched, clock: dict) -> None:
    """Time the thread's work per wake-up (received audio applied, features, steps), its phases, and inside them
    the model (preprocessor, encoder, decoder) and the slot copies."""
    for name in ("_apply_backlog", "_round"):  # (a wake-up's work once its commands are taken)
        setattr(sched, name, Timed(getattr(sched, name), clock, "thread"))
    for phase, name in PHASES.items():
        setattr(sched, name, Timed(getattr(sched, name), clock, phase))
    pre = sched.model.preprocessor
    pre.forward = Timed(pre.forward, clock, "model_features")
    enc = sched.model.encoder
    enc.cache_aware_stream_step = Timed(enc.cache_aware_stream_step, clock, "model_issue")
    if sched.steady_step is not None:
        sched.steady_step = Timed(sched.steady_step, clock, "model_issue")
    if sched.decoder.computer is not None:
        sched.decoder.computer = Timed(sched.decoder.computer, clock, "model_read")
    for name in ("gather", "scatter", "gather_keys_values", "scatter_keys_values"):
        setattr(sched.slots, name, Timed(getattr(sched.slots, name), clock, "copies"))
    scheduler = engine_module("streaming.cache_aware", "scheduler")
    scheduler.detect = Timed(scheduler.detect, clock, "vad")  # Silero for all streams (network and its Python)


def speech_audio(seconds: float) -> np.ndarray:
    """The demo model's sentences with pauses, repeated to ``seconds``."""
    from parakeet_services.speech import espeak

    pause = np.zeros(8000, dtype=np.float32)
    one = np.concatenate([part for s in SENTENCES for part in (espeak(s, "en-us", 160, trim=True), pause)])
    return np.tile(one, int(np.ceil(seconds * 16000 / one.shape[0])))[: int(seconds * 16000)]


def read_on_event_loop(streams: list) -> threading.Thread:
    """Every stream's events read to their end by its own asyncio task, all on one event loop in a new thread."""

    async def read(stream) -> None:
        async for _ in stream:
            pass

    async def read_all() -> None:
        await asyncio.gather(*(read(s) for s in streams))

    thread = threading.Thread(target=asyncio.run, args=(read_all(),), daemon=True)
    thread.start()
    return thread


def run_level(n: int, rounds: int, audio: np.ndarray, device: str = "cpu", vad: bool = False,
              boosted_share: float = 0.0, keyterms: tuple[str, ...] = (), async_readers: bool = False,
              pcm16: bool = False) -> dict:
    """``boosted_share`` of the streams (every other one for 0.5) carry ``keyterms`` (``bench/keyterms.py``);
    ``pcm16``: packets pushed as 16-bit PCM bytes, as a WebSocket server receives them (else float32 arrays)."""
    import parakeet_stream as ps

    # one lane: the cost measured is one inference thread's per stream-step
    engine = load_engine(model="espeak-demo-en", device=device, dtype="auto", max_streams=n, lanes=1)
    try:
        sched = engine._scheduler
        clock = dict.fromkeys(("thread", "copies", "vad", "model_features", "model_issue", "model_read", *PHASES),
                              0.0)
        opts = ps.EndpointingOptions(vad=vad)
        boosted = set(range(0, n, round(1 / boosted_share))) if boosted_share else set()
        streams = [engine.open_stream(endpointing=opts, keyterms=keyterms if i in boosted else None)
                   for i in range(n)]
        readers = read_on_event_loop(streams) if async_readers else None
        per_round = int(ROUND_S * 16000)
        pushes = {"s": 0.0, "packets": 0}  # the counted rounds' pushes (on the inference thread, not in its clock)
        warm = 3  # the first steps (first chunk, R=0 second step) are not the steady state: not counted
        stepped = 0
        for r in range(rounds + warm):
            if r == warm:
                # on the inference thread, between two wake-ups: installed from here, the clocks would also catch
                # the end of the round in flight (its features and VAD) without the thread's clock around it
                sched.call(lambda: instrument(sched, clock))
                stepped, calls = engine.metrics().streams_stepped, engine.metrics().steps
            block = audio[(r * per_round) % (audio.shape[0] - per_round):][:per_round]
            packets = [block[k:k + 320] for k in range(0, per_round, 320)]
            if pcm16:
                packets = [(p * 32767).astype("<i2").tobytes() for p in packets]
            target = engine.metrics().streams_stepped + n

            def push_round(counted: bool = r >= warm) -> None:  # on the inference thread: no other thread
                t0 = time.perf_counter()                       # contends for the GIL meanwhile
                for s in streams:
                    for packet in packets:
                        s.push(packet)
                if counted:
                    pushes["s"] += time.perf_counter() - t0
                    pushes["packets"] += len(streams) * len(packets)

            sched.call(push_round)
            while engine.metrics().streams_stepped < target:
                time.sleep(0.005)
            for s in streams if readers is None else ():  # consumers keep up, as an adapter would
                while s.next_event(timeout=0) is not None:
                    pass
        steps = engine.metrics().streams_stepped - stepped
        calls = engine.metrics().steps - calls
        for s in streams:
            s.close()
        if readers is not None:
            readers.join(timeout=30)
    finally:
        engine.close()
    model = clock["model_features"] + clock["model_issue"] + clock["model_read"]
    other = clock["thread"] - model - clock["copies"] - clock["vad"]
    inside = {"features": clock["model_features"] + clock["vad"], "issue": clock["model_issue"] + clock["copies"],
              "read": clock["model_read"]}  # (the copies are all in the issue; VAD is in the features' call)
    phases = {f"{phase}_us_per_stream_step": round((clock[phase] - inside.get(phase, 0.0)) / steps * 1e6, 2)
              for phase in PHASES}
    # the wake-ups' scans of every stream (readiness, the clock, the next wake-up), the lag check, batching
    phases["rest_us_per_stream_step"] = round(other / steps * 1e6 - sum(phases.values()), 2)
    return {"streams": n, "device": engine.info.device, "stream_steps": steps,
            "mean_batch": round(steps / calls, 1), "thread_s": round(clock["thread"], 4),
            "model_s": round(model, 4), "model_features_s": round(clock["model_features"], 4),
            "copies_s": round(clock["copies"], 4),
            "vad_s": round(clock["vad"], 4), "other_s": round(other, 4),
            "other_us_per_stream_step": round(other / steps * 1e6, 2),
            "thread_us_per_stream_step": round(clock["thread"] / steps * 1e6, 2),
            "other_ms_per_round": round(other / rounds * 1e3, 3),
            "push_us_per_packet": round(pushes["s"] / pushes["packets"] * 1e6, 2), **phases}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="64,256,1024")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", default=None, help="a git ref whose engine runs interleaved with this one")
    p.add_argument("--repeats", type=int, default=3, help="runs of each level and side (medians reported)")
    p.add_argument("--out", default="bench/results/stream-overhead-cpu.json")
    p.add_argument("--device", default="cpu", help="where the demo model runs (cpu, cuda)")
    p.add_argument("--vad", action="store_true", help="streams with Silero VAD (its time is reported apart)")
    p.add_argument("--async-readers", action="store_true",
                   help="events read by an asyncio task per stream on one event loop, as a server reads them")
    p.add_argument("--pcm16", action="store_true",
                   help="packets pushed as 16-bit PCM bytes, as a WebSocket server receives them")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="children run with glibc keeping freed memory (KEEP_FREED_MEMORY), as CUDA's allocator does")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        import torch
        from parakeet_services import logs

        logs.configure("INFO", quiet_root=True)

        torch.set_num_threads(args.threads)
        audio = speech_audio(ROUND_S * (args.rounds + 4) + 1.0)
        print(json.dumps(run_level(args.child, args.rounds, audio, args.device, args.vad,
                                   async_readers=args.async_readers, pcm16=args.pcm16)))
        return 0
    if args.keep_freed_memory:
        os.environ.update(KEEP_FREED_MEMORY)  # (the children inherit it)

    levels = [int(x) for x in args.streams.split(",")]
    child = ["--rounds", str(args.rounds), "--threads", str(args.threads), "--device", args.device] + \
        (["--vad"] if args.vad else []) + (["--async-readers"] if args.async_readers else []) + \
        (["--pcm16"] if args.pcm16 else [])
    script = str(Path(__file__).resolve())
    commits, runs = run_interleaved(
        args.baseline, levels, args.repeats, lambda code, n: child_result(code, script, ["--child", str(n), *child]),
        lambda n: f"{n} streams, {args.rounds} rounds of {ROUND_S * 1000:.0f} ms")
    sides = list(commits)

    def med(side: str, n: int, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[side][n]), 3)

    head = "| streams | " + " | ".join(f"{side}: model s | {side}: VAD s | {side}: other µs / stream-step"
                                      for side in sides)
    print(head + (" | baseline / this (other) |" if args.baseline else " |"))
    print("|---" * (1 + 3 * len(sides) + bool(args.baseline)) + "|")
    rows = []
    for n in levels:
        row = {"streams": n, **{f"{side}_{key}": med(side, n, key) for side in sides
                                for key in ("model_s", "copies_s", "vad_s", "other_s", "other_us_per_stream_step")}}
        cells = [f"{row[f'{side}_model_s']:.2f} | {row[f'{side}_vad_s']:.2f} | "
                 f"{row[f'{side}_other_us_per_stream_step']:.1f}" for side in sides]
        if args.baseline:
            row["ratio_other"] = round(row["baseline_other_us_per_stream_step"]
                                       / row["this_other_us_per_stream_step"], 2)
            cells.append(f"{row['ratio_other']:.2f}x")
        print(f"| {n} | " + " | ".join(cells) + " |")
        rows.append(row)
    print()
    print("| streams | side | " + " | ".join(f"{phase} µs" for phase in (*PHASES, "rest")) + " | push µs / packet |")
    print("|---|---" + "|---" * (len(PHASES) + 2) + "|")
    for n in levels:
        for side in sides:
            cells = [med(side, n, f"{phase}_us_per_stream_step") for phase in (*PHASES, "rest")]
            push = med(side, n, "push_us_per_packet")
            print(f"| {n} | {side} | " + " | ".join(f"{c:.1f}" for c in (*cells, push)) + " |")
            rows[levels.index(n)].update({f"{side}_{phase}_us_per_stream_step": c
                                          for phase, c in zip((*PHASES, "rest"), cells)})
            rows[levels.index(n)][f"{side}_push_us_per_packet"] = push
    write_result(args.out, "stream_overhead", commits, runs, rows, args.device, vad=args.vad, threads=args.threads,
                 rounds=args.rounds, repeats=args.repeats, async_readers=args.async_readers, pcm16=args.pcm16,
                 keep_freed_memory=args.keep_freed_memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
