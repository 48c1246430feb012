"""``parakeet-stream download-files``: fetch a hub checkpoint into the local cache so later loads work offline.

Container images run it at build time (see the Dockerfile), so a worker starts without network access and
without a multi-GB download on its first call. It uses NeMo's own ``from_pretrained`` cache logic (Hugging Face
hub cache under ``HF_HOME`` for ``org/name`` ids, ``NEMO_CACHE_DIR`` for NGC names), so the file lands exactly
where ``Engine.load`` looks for it.
"""
from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    from parakeet_stream.models import DEFAULT_MODEL

    p = sub.add_parser(
        "download-files", help="download a model into the local cache (for offline start-up)",
        description="Download a hub/NGC checkpoint into the NeMo / Hugging Face cache so that a later "
                    "--model NAME loads without network. Bundled models and local .nemo files need nothing.")
    p.add_argument("--model", default=os.environ.get("PARAKEET_MODEL", DEFAULT_MODEL),
                   help=f"known model name, hub id or .nemo path (env PARAKEET_MODEL; default {DEFAULT_MODEL})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import logging
    import sys

    from parakeet_stream.errors import ModelLoadError, ModelNotFoundError
    from parakeet_stream.models import download_model

    log = logging.getLogger("parakeet_services.download")
    name = args.model
    log.info("download.start model=%s", name)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NeMo prints on import; stdout carries the result only
            found = download_model(name)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ModelNotFoundError) else 1
    if found.source == "bundled":
        print(f"{name} is bundled with parakeet-stream ({found.path}): nothing to download")
    elif found.source == "local":
        print(f"{found.path} is a local file: nothing to download")
    else:
        path = found.path
        size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file())
        print(f"{name}: {path} ({size / 1e6:.1f} MB) is in the cache; later loads of --model {name} work offline")
    return 0
