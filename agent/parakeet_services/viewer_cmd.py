"""``parakeet-stream viewer``: the captions page on its own (``captions --viewer-port`` serves the same page from
the captions worker). It shows any captioner's ``lk.transcription`` captions, not only this project's."""
from __future__ import annotations

import argparse
import os

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "viewer", help="captions page: a web page showing a LiveKit room's live captions",
        description="Serves a page that joins a LiveKit room with a subscribe-only token from this server and "
                    "shows every speaker's captions (the lk.transcription topic, as published by "
                    "`parakeet-stream captions` or any LiveKit agent). The API secret stays on this server.")
    p.add_argument("--url", default=os.environ.get("LIVEKIT_URL"),
                   help="LiveKit server URL, e.g. ws://127.0.0.1:7880 (default $LIVEKIT_URL)")
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY"), help="default $LIVEKIT_API_KEY")
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET"), help="default $LIVEKIT_API_SECRET")
    add_viewer_arguments(p, prefix="")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(run=run)


def add_viewer_arguments(p: argparse.ArgumentParser, prefix: str) -> None:
    """The page's options; ``prefix`` is ``"viewer-"`` on ``captions``, where they share a parser with the worker's."""
    port_help = ("serve the captions page on this port (0 = any free port; default: no page)" if prefix
                 else f"port of the captions page (0 = any free port; default {DEFAULT_PORT})")
    p.add_argument(f"--{prefix}port", type=int, default=None if prefix else DEFAULT_PORT, help=port_help)
    p.add_argument(f"--{prefix}host", default=DEFAULT_HOST,
                   help=f"address the captions page binds (default {DEFAULT_HOST}: this machine only)")
    p.add_argument(f"--{prefix}rooms", default=".+", metavar="REGEX",
                   help="rooms the page may open: names matching this regular expression in full, e.g. "
                        "'standup|all-hands' or 'class-[0-9]+' (default: any room)")
    p.add_argument(f"--{prefix}public-url", default=os.environ.get("LIVEKIT_PUBLIC_URL"),
                   help="LiveKit server URL as browsers reach it, when it differs from --url "
                        "(default $LIVEKIT_PUBLIC_URL, else --url)")


def viewer_config(args: argparse.Namespace, prefix: str):
    """The page's ``ViewerConfig`` from parsed arguments; ``ValueError`` names a bad --rooms pattern."""
    import re

    from .viewer import RoomPolicy, ViewerConfig

    attr = prefix.replace("-", "_")
    pattern = getattr(args, f"{attr}rooms")
    try:
        rooms = RoomPolicy.from_regex(pattern)
    except re.error as e:
        raise ValueError(f"--{prefix}rooms {pattern!r} is not a regular expression: {e}") from None
    return ViewerConfig(url=args.url, api_key=args.api_key, api_secret=args.api_secret, rooms=rooms,
                        public_url=getattr(args, f"{attr}public_url"), host=getattr(args, f"{attr}host"),
                        port=getattr(args, f"{attr}port"))


def missing_credentials(args: argparse.Namespace) -> list[str]:
    return [flag for flag, value in (("--url", args.url), ("--api-key", args.api_key),
                                     ("--api-secret", args.api_secret)) if not value]


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from . import logs
    from .viewer import start_viewer

    logs.configure(args.log_level)
    log = logging.getLogger("parakeet_services.viewer")
    missing = missing_credentials(args)
    if missing:
        log.error("missing %s (or LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET)", ", ".join(missing))
        return 2
    try:
        config = viewer_config(args, prefix="")
    except ValueError as e:
        log.error("%s", e)
        return 2

    async def serve() -> int:
        try:
            site = await start_viewer(config)
        except OSError as e:
            log.error("cannot serve the captions page on %s:%d: %s", config.host, config.port, e)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await site.aclose()
        log.info("stopped")
        return 0

    return asyncio.run(serve())
