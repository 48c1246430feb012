"""The ``parakeet-stream`` command.

Each subcommand lives in its own module and registers itself through ``add_parser(subparsers)``; its
``run(args)`` imports the heavy parts (NeMo, torch, frameworks) only when it is actually executed, so
``parakeet-stream --help`` and ``parakeet-stream models`` answer instantly.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import sys

# module names under parakeet_services that contribute a subcommand, in --help order
SUBCOMMAND_MODULES = (
    "transcribe_cmd",
    "models_cmd",
    "serve_cmd",
    "bench_cmd",
    "captions_cmd",
    "viewer_cmd",
    "download_cmd",
    "train_demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parakeet-stream",
        description="Realtime speech-to-text with NVIDIA NeMo cache-aware streaming models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"parakeet_services.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _print_stacks_on_native_crash()
    return int(args.run(args) or 0)


def _print_stacks_on_native_crash() -> None:
    """A native crash (torch, WebRTC) first prints every thread's Python stack to the process's stderr."""
    try:
        faulthandler.enable(file=sys.__stderr__)
    except (AttributeError, ValueError, OSError):  # no real stderr (embedded, closed): nothing to print to
        pass


if __name__ == "__main__":
    sys.exit(main())
