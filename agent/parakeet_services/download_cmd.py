"""``parakeet-stream download-files``: fetch a hub checkpoint into the local cache so later loads work offline.

Container images run it at build time (see the Dockerfile), so a worker starts without network access and
without a multi-GB download on its first call. It uses NeMo's own ``from_pretrained`` cache logic (Hugging Face
hub cache under ``HF_HOME`` for ``org/name`` ids, ``NEMO_CACHE_DIR`` for NGC names), so the file lands exactly
where ``Engine.load`` looks for it.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


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

    from parakeet_stream.models import KNOWN_MODELS, is_local_path

    log = logging.getLogger("parakeet_services.download")
    name = args.model
    known = KNOWN_MODELS.get(name)
    if known is not None and known.local_path is not None:
        print(f"{name} is bundled with parakeet-stream ({known.local_path}): nothing to download")
        return 0
    if known is None and is_local_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            print(f"error: {name} is neither a known model, a hub id (org/name) nor an existing .nemo file; "
                  f"`parakeet-stream models` lists the known ones", file=sys.stderr)
            return 2
        print(f"{path} is a local file: nothing to download")
        return 0

    with contextlib.redirect_stdout(sys.stderr):  # NeMo prints on import; stdout carries the result only
        from parakeet_stream.models import quiet_nemo

        quiet_nemo()
        from nemo.collections.asr.models import ASRModel

    log.info("download.start model=%s", name)
    try:
        cached = Path(ASRModel.from_pretrained(name, return_model_file=True))
    except Exception as e:  # hub/NGC/network errors come in many types; one clear line for the operator
        print(f"error: could not download {name} ({type(e).__name__}: {e}). Check the name (`parakeet-stream "
              f"models`), network access and, for gated models, HF_TOKEN", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in ([cached] if cached.is_file() else cached.rglob("*")) if f.is_file())
    print(f"{name}: {cached} ({size / 1e6:.1f} MB) is in the cache; later loads of --model {name} work offline")
    return 0
