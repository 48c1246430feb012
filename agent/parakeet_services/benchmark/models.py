"""The model under test: random weights at a real layout or a checkpoint, in the requested dtype and device; its
copy with NeMo's own layers for the baselines that stand for NeMo's code; both built off the main thread."""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable

from .config import RANDOM_ARCHS, BenchConfig
from .workload import speech_workload

RANDOM_TOKENS_PER_FRAME = 0.3  # English speech on Parakeet's 80 ms frames (tokens / frame of real checkpoints)


def build_off_main_thread(build: Callable[[], Any]) -> Any:
    """Run ``build`` on a short-lived thread. Each thread that runs torch ops keeps an OpenMP pool until it
    exits, and with more pool threads than cores every engine step slows down ~1.8x (see ``Engine._start``):
    so the main thread of the benchmark never runs torch ops itself, and each engine's thread is the only one."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(_capture(build)), name="bench-build")
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _capture(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as e:  # re-raised on the calling thread
        return False, e


def load_model(cfg: BenchConfig):
    """The NeMo model for ``cfg.model``: random weights at a real layout, or a checkpoint; on the device in
    the requested dtype (the engine puts the preprocessor where ``features_device`` says)."""
    from parakeet_stream.models import select_chunk

    model = _build_model(cfg)
    if cfg.model in RANDOM_ARCHS:
        from parakeet_stream.testing import calibrate_token_rate

        # random joints emit up to max_symbols tokens a frame; speech gives ~0.3, and the decoder's cost follows.
        # Calibrated in the dtype and on the device it runs in: a blank bias tuned in fp32 rounds differently in
        # bf16, and the random joint's rate is a steep function of it.
        # And in the look-ahead the engine will stream with: each attention context gives other random outputs.
        model.encoder.set_default_att_context_size(select_chunk(model, cfg.chunk_ms)[1])
        rate = calibrate_token_rate(model, speech_workload(4.0, seed=cfg.seed).audio[0], RANDOM_TOKENS_PER_FRAME)
        print(f"bench: random joint calibrated to {rate:.3f} tokens per encoder frame", file=sys.stderr, flush=True)
    return model


def _build_model(cfg: BenchConfig):
    from parakeet_stream.engine import prepare_model
    from parakeet_stream.models import load_nemo_model, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    if cfg.model in RANDOM_ARCHS:
        from parakeet_stream.testing import build_random_model

        model = build_random_model(cfg.model, seed=cfg.seed)
    else:
        model = load_nemo_model(cfg.model, "cpu")
    model = prepare_model(model, resolve_dtype(cfg.dtype, device))
    if device != "cpu":
        model.to(device)
    return model


def plain_copy(model, cfg: BenchConfig):
    """The same weights in a model no engine has changed: the engine keeps projections and packs weights in the
    layers of the model it serves, and the baselines that stand for NeMo's code must run NeMo's layers (a NeMo
    model cannot be ``deepcopy``-ed: the architecture is built again and the weights copied)."""
    copy = _build_model(cfg)
    copy.load_state_dict(model.state_dict())
    copy.encoder.set_default_att_context_size(list(model.encoder.att_context_size))
    return copy
