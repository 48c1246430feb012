"""``parakeet-stream captions``: a LiveKit worker that publishes live captions for the rooms it joins."""
from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    from parakeet_stream.models import DEFAULT_MODEL

    from .transcribe_cmd import add_model_arguments
    from .viewer_cmd import add_viewer_arguments

    p = sub.add_parser(
        "captions", help="LiveKit worker: live captions (lk.transcription) for every microphone in a room",
        description="Registers with a LiveKit server as an agent worker. Each room it is dispatched to gets "
                    "one engine stream per microphone track and captions on the lk.transcription topic, "
                    "sent in the speaker's name. All rooms share one model; the worker reports live "
                    "streams / --max-streams as its load, so LiveKit stops dispatching to it when full. "
                    "SIGTERM drains: no new rooms, running ones finish. With --viewer-port it also serves the "
                    "captions page, where people read a room's captions in a browser (docs/captions-page.md).")
    p.add_argument("--url", default=os.environ.get("LIVEKIT_URL"),
                   help="LiveKit server URL, e.g. ws://127.0.0.1:7880 (default $LIVEKIT_URL)")
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY"), help="default $LIVEKIT_API_KEY")
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET"), help="default $LIVEKIT_API_SECRET")
    p.add_argument("--agent-name", default=os.environ.get("LIVEKIT_AGENT_NAME", ""),
                   help="explicit dispatch under this name; empty (default) joins every new room")
    add_model_arguments(p, DEFAULT_MODEL)
    p.add_argument("--server", default=os.environ.get("PARAKEET_URL"),
                   help="ws://HOST:PORT of a `parakeet-stream serve` worker: every microphone is a session there and "
                        "this worker loads no model (--model/--device/--dtype/--chunk-ms/--threads/--lanes are then "
                        "the server's); rooms run in a process each, LiveKit's default executor, and load is "
                        "rooms / --max-rooms (default $PARAKEET_URL; unset: in process)")
    p.add_argument("--server-api-key", default=os.environ.get("PARAKEET_API_KEY"),
                   help="the server's --api-key (default $PARAKEET_API_KEY)")
    p.add_argument("--max-streams", type=int, default=64, help="microphones captioned at once (default 64)")
    p.add_argument("--max-rooms", type=int, default=32,
                   help="with --server: rooms captioned at once, a process each (default 32)")
    p.add_argument("--load-threshold", type=float, default=0.9,
                   help="share of --max-streams (with --server: of --max-rooms) above which no new rooms are "
                        "accepted (default 0.9)")
    p.add_argument("--vad", action="store_true", help="segment with Silero VAD")
    p.add_argument("--trailing-blank-ms", type=int, default=800,
                   help="end a caption segment after this much audio with no new token (0 = off; default 800)")
    p.add_argument("--end-timeout", type=float, default=10.0,
                   help="seconds a leaving speaker's pending audio may take to be captioned (default 10; past it "
                        "a warning names the audio not captioned)")
    p.add_argument("--drain-timeout", type=int, default=3600, help="seconds to wait for rooms on SIGTERM")
    p.add_argument("--http-host", default="", help="health check bind address (default: all interfaces)")
    p.add_argument("--http-port", type=int, default=8081, help="health check port (GET /; 0 = any free port)")
    add_viewer_arguments(p.add_argument_group("captions page (off unless --viewer-port is given)"), prefix="viewer-")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    import parakeet_stream as ps

    from . import logs
    from .captions import CaptionsConfig, build_server
    from .shutdown import exit_skipping_native_teardown
    from .viewer import start_viewer
    from .viewer_cmd import missing_credentials, viewer_config

    logs.configure(args.log_level)
    log = logging.getLogger("parakeet_services.captions")
    missing = missing_credentials(args)
    if missing:
        log.error("missing %s (or LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET)", ", ".join(missing))
        return 2
    if args.max_rooms < 1:
        log.error("--max-rooms must be at least 1, got %d", args.max_rooms)
        return 2
    try:
        endpointing = ps.EndpointingOptions(vad=args.vad, trailing_blank_ms=args.trailing_blank_ms or None)
        page = viewer_config(args, prefix="viewer-") if args.viewer_port is not None else None
    except ValueError as e:
        log.error("%s", e)
        return 2
    config = CaptionsConfig(url=args.url, api_key=args.api_key, api_secret=args.api_secret,
                            agent_name=args.agent_name, model=args.model, device=args.device, dtype=args.dtype,
                            chunk_ms=args.chunk_ms, max_streams=args.max_streams, endpointing=endpointing,
                            load_threshold=args.load_threshold, drain_timeout=args.drain_timeout,
                            http_host=args.http_host, http_port=args.http_port, end_timeout=args.end_timeout,
                            num_threads=args.threads, lanes=args.lanes, server=args.server or None,
                            server_api_key=args.server_api_key or None, max_rooms=args.max_rooms)
    engine = None
    if config.remote:
        try:
            config.stt()  # a malformed --server is an error now, not at the first room
        except ValueError as e:
            log.error("%s", e)
            return 2
        log.info("remote mode: streams run on the parakeet-stream server", extra={"server": config.server})
    else:
        try:
            engine = config.engine()  # before registering: never accept a room we cannot caption yet
        except ps.ParakeetStreamError as e:
            log.error("%s", e)
            return 1
        log.info("model loaded", extra={"model": engine.info.name, "device": engine.info.device,
                                        "chunk_ms": engine.info.chunk_ms, "capacity": engine.capacity})

    async def serve() -> int:
        try:
            site = await start_viewer(page) if page is not None else None
        except OSError as e:  # the port is taken or the address is not this machine's: before joining any room
            log.error("cannot serve the captions page on %s:%d: %s", page.host, page.port, e)
            return 1
        server = build_server(config)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(server.run())
        await asyncio.wait({runner, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            log.info("draining: no new rooms; waiting for running ones")
            try:
                await server.drain()
            finally:
                await server.aclose()
        await runner
        if site is not None:
            await site.aclose()
        return 0

    rc = asyncio.run(serve())
    if engine is not None:
        engine.close()
    if rc == 0:
        log.info("stopped")
    exit_skipping_native_teardown(rc)

