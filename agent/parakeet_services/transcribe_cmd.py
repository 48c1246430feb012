"""``parakeet-stream transcribe FILE``: stream an audio file through the engine and show what a live user sees."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    from parakeet_stream.models import DEFAULT_MODEL

    p = sub.add_parser("transcribe", help="stream a WAV/FLAC file through the engine (live partials, timed finals)",
                       description="Streams FILE in 20 ms packets through the engine, as a live source would, "
                                   "showing partials as they grow and each final with its word times.")
    p.add_argument("file", help="WAV or FLAC audio (any rate 8-48 kHz; channels are mixed down)")
    add_model_arguments(p, DEFAULT_MODEL)
    p.add_argument("--realtime", action="store_true", help="pace the packets at real time instead of as fast as possible")
    p.add_argument("--json", action="store_true", help="print one JSON object per event instead of the live view")
    p.add_argument("--vad", action="store_true", help="segment with Silero VAD")
    p.add_argument("--trailing-blank-ms", type=int, default=800,
                   help="end a segment after this much audio with no new token (0 = off; default 800)")
    p.add_argument("--keyterm", action="append", default=None, metavar="PHRASE",
                   help="a name, product or term to boost in decoding (repeatable)")
    p.add_argument("--keyterm-weight", type=float, default=None,
                   help="how strongly keyterms are boosted (default 6.0, at most 10)")
    p.set_defaults(run=run)


def add_model_arguments(p: argparse.ArgumentParser, default_model: str) -> None:
    """The model options every engine-backed command shares."""
    from parakeet_stream.runtime.threads import LANES_HELP, THREADS_HELP, lanes_argument, threads_argument

    p.add_argument("--model", default=default_model,
                   help=f"known model name, hub id or .nemo path (default {default_model}; see `parakeet-stream models`)")
    p.add_argument("--chunk-ms", type=int, default=None, help="chunk size in ms (model default if omitted)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--dtype", default="auto", help="auto, fp32, bf16 or fp16 (default auto: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--threads", type=threads_argument, default=None, help=THREADS_HELP)
    p.add_argument("--lanes", type=lanes_argument, default=None, help=LANES_HELP)


def read_audio(path: str):
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.mean(axis=1), dtype=np.float32), int(rate)


def event_json(event) -> str:
    return json.dumps({"type": type(event).__name__, **dataclasses.asdict(event)}, default=str)


class LiveView:
    """Partials rewrite one terminal line; finals are printed for good with their word times."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()

    def show(self, event) -> None:
        import parakeet_stream as ps

        if isinstance(event, ps.Partial) and self.tty:
            self.out.write(f"\r\033[K… {event.text}")
        elif isinstance(event, ps.Final):
            words = " ".join(f"{w.text}[{w.start:.2f}-{w.end:.2f}]" for w in event.words)
            prefix = "\r\033[K" if self.tty else ""
            self.out.write(f"{prefix}[{event.start:6.2f}-{event.end:6.2f}] {event.text}\n")
            if words:
                self.out.write(f"    words: {words}\n")
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    import parakeet_stream as ps

    try:
        audio, rate = read_audio(args.file)
    except Exception as e:  # soundfile's errors name neither the file nor what is accepted
        print(f"error: cannot read {args.file!r} as audio ({e}); accepted: WAV or FLAC files", file=sys.stderr)
        return 2
    print(f"loading {args.model} …", file=sys.stderr)
    try:
        engine = ps.Engine.load(ps.EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                                chunk_ms=args.chunk_ms, num_threads=args.threads,
                                                lanes=args.lanes))
    except ps.ParakeetStreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = engine.info
    print(f"model {info.name}: {info.num_params / 1e6:.2f} M params, {info.chunk_ms} ms chunks, {info.device} "
          f"{info.dtype}", file=sys.stderr)
    opts = ps.EndpointingOptions(vad=args.vad, trailing_blank_ms=args.trailing_blank_ms or None)
    try:
        stream = engine.open_stream(sample_rate=rate, endpointing=opts, keyterms=args.keyterm,
                                    keyterm_weight=args.keyterm_weight)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    view = LiveView()
    step = rate // 50
    t0 = time.monotonic()
    for i in range(0, len(audio), step):
        if args.realtime:
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        stream.push(audio[i:i + step])
        _drain(stream, view, args.json)
    stream.finish()
    while (event := stream.next_event(timeout=60)) is not None:
        _print(event, view, args.json)
    engine.close()
    return 0


def _drain(stream, view: LiveView, as_json: bool) -> None:
    while (event := stream.next_event(timeout=0)) is not None:
        _print(event, view, as_json)


def _print(event, view: LiveView, as_json: bool) -> None:
    if as_json:
        print(event_json(event), flush=True)
    else:
        view.show(event)
