"""Which checkpoints the engine knows, and how a name, hub id or path becomes a ready NeMo model.

Loading is the only place that imports NeMo; everything heavy stays out of ``import parakeet_stream``.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ChunkSizeError, ModelLoadError, ModelNotFoundError

logger = logging.getLogger("parakeet_stream")

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class KnownModel:
    name: str
    description: str
    chunk_sizes_ms: tuple[int, ...]  # empty: offline-only (VAD-segmented mode)
    default_chunk_ms: int | None
    device: str  # where it is meant to run well
    local_path: Path | None = None


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel("espeak-demo-en", "bundled 3.35 M demo model trained by `parakeet-stream train-demo`: "
                   "espeak-ng English voices, closed ~720-word vocabulary (numbers, times, dates, commands, "
                   "names); ends each utterance with <EOU>; no download", (160,), 160, "cpu",
                   ASSETS / "espeak-demo-en.nemo"),
        KnownModel("nvidia/nemotron-speech-streaming-en-0.6b", "0.6 B RNNT, punctuation and capitalisation; "
                   "GPU default", (80, 160, 560, 1120), 160, "cuda"),
        KnownModel("nvidia/stt_en_fastconformer_hybrid_large_streaming_multi", "114 M hybrid RNNT/CTC, no "
                   "punctuation; CPU default", (80, 160, 560, 1120), 160, "cpu"),
        KnownModel("nvidia/parakeet_realtime_eou_120m-v1", "120 M RNNT that emits <EOU> at end of utterance",
                   (160,), 160, "cpu"),
        KnownModel("nvidia/parakeet-rnnt-0.6b", "0.6 B offline RNNT (not cache-aware): VAD-segmented mode",
                   (), None, "cuda"),
    )
}
# Every entry point's default model is named here. The bundled demo works offline everywhere (CLI, serve, captions,
# Pipecat, the engine); a LiveKit voice agent defaults to NVIDIA's 120 M model because a voice agent needs real
# speech recognised and the model's own end-of-utterance token for ``turn_detection="stt"``.
DEFAULT_MODEL = "espeak-demo-en"
DEFAULT_VOICE_AGENT_MODEL = "nvidia/parakeet_realtime_eou_120m-v1"


@dataclass(frozen=True)
class ModelInfo:
    """What an adapter may want to know about the loaded model."""

    name: str
    path: str | None
    chunk_ms: int
    chunk_sizes_ms: tuple[int, ...]
    device: str
    dtype: str
    frame_seconds: float
    has_eou: bool
    num_params: int
    offline_only: bool = False
    sample_rate: int = 16000
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def quiet_nemo() -> None:
    """NeMo logs at INFO and its telemetry prints to stdout on import; keep stdout for our own output."""
    with contextlib.redirect_stdout(sys.stderr):
        from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.ERROR)


def _import_asr():
    with contextlib.redirect_stdout(sys.stderr):
        import nemo.collections.asr as nemo_asr
    quiet_nemo()
    return nemo_asr


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ModelLoadError(f"unknown device {device!r}; accepted: auto, cpu, cuda, cuda:N")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; accepted: auto, fp32, bf16, fp16")
    return table[dtype]


def is_local_path(name: str) -> bool:
    """A local file rather than a hub id (hub ids look like ``org/name``)."""
    return name.endswith(".nemo") or name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _restore_file(path: Path, device: str):
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist; pass a .nemo file or a known model name "
                             f"(parakeet-stream models lists them)")
    if not tarfile.is_tarfile(path):
        raise ModelLoadError(f"{str(path)!r} is not a NeMo model: a .nemo file is a tar archive holding "
                             f"model_config.yaml and model_weights.ckpt")
    nemo_asr = _import_asr()
    try:
        return nemo_asr.models.ASRModel.restore_from(str(path), map_location=device)
    except Exception as e:  # NeMo raises many kinds here; the caller needs one clear message
        raise ModelLoadError(f"{str(path)!r} could not be restored as a NeMo ASR model: "
                             f"{type(e).__name__}: {e}") from e


def _fetch_pretrained(name: str, device: str):
    nemo_asr = _import_asr()
    try:
        return nemo_asr.models.ASRModel.from_pretrained(name, map_location=device)
    except Exception as e:
        raise ModelLoadError(
            f"could not fetch model {name!r} from the Hugging Face hub / NGC ({type(e).__name__}: {e}). "
            f"If this machine has no network access, download the .nemo file on one that has "
            f"(e.g. `huggingface-cli download {name}`) and pass its local path instead, "
            f"e.g. --model /models/{name.split('/')[-1]}.nemo"
        ) from e


@dataclass(frozen=True)
class Download:
    """Where ``download_model`` found or put a model: ``source`` is ``"bundled"``, ``"local"`` or ``"cache"``."""

    source: str
    path: Path


def download_model(name: str) -> Download:
    """Put ``name``'s checkpoint where ``load_nemo_model`` looks for it, so that later loads work offline: hub ids
    (``org/name``) in the Hugging Face cache (``HF_HOME``), NGC names in ``NEMO_CACHE_DIR``, by NeMo's own
    ``from_pretrained``. Bundled names and local files need nothing. Raises ModelLoadError with what to check."""
    known = KNOWN_MODELS.get(name)
    if known is not None and known.local_path is not None:
        return Download("bundled", known.local_path)
    if known is None and is_local_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"{name} is neither a known model, a hub id (org/name) nor an existing .nemo "
                                     f"file; `parakeet-stream models` lists the known ones")
        return Download("local", path)
    nemo_asr = _import_asr()
    try:
        return Download("cache", Path(nemo_asr.models.ASRModel.from_pretrained(name, return_model_file=True)))
    except Exception as e:  # hub/NGC/network errors come in many types; one clear line for the operator
        raise ModelLoadError(f"could not download {name} ({type(e).__name__}: {e}). Check the name (`parakeet-stream "
                             f"models`), network access and, for gated models, HF_TOKEN") from e


def load_nemo_model(name: str, device: str):
    """A NeMo ASR model in eval mode from a known short name, a local .nemo path, or a hub/NGC name."""
    quiet_nemo_telemetry()
    known = KNOWN_MODELS.get(name)
    if known is not None and known.local_path is not None:
        model = _restore_file(known.local_path, device)
    elif known is None and is_local_path(name):
        model = _restore_file(Path(name).expanduser(), device)
    else:
        model = _fetch_pretrained(name, device)
    return model.eval()


def quiet_nemo_telemetry() -> None:
    """NeMo's telemetry library logs two warnings on import ("OneLogger: Setting error_handling_strategy ...", "No
    exporters were provided ...") that say nothing to a user of a model; shown only when asked for (DEBUG)."""
    import logging

    telemetry = logging.getLogger("nv_one_logger")
    if telemetry.level == logging.NOTSET:
        telemetry.setLevel(logging.ERROR)


def is_cache_aware(model) -> bool:
    enc = getattr(model, "encoder", None)
    return getattr(enc, "att_context_style", None) == "chunked_limited" and hasattr(enc, "streaming_cfg")


def frame_seconds(model) -> float:
    stride = float(model.cfg.preprocessor.get("window_stride", 0.01))
    return round(stride * model.encoder.subsampling_factor, 6)


def chunk_sizes_ms(model) -> dict[int, list[int]]:
    """Chunk size in ms → the att_context_size [left, right] that gives it (right context R: (R+1) frames)."""
    frame_ms = round(frame_seconds(model) * 1000)
    return {(ctx[1] + 1) * frame_ms: list(ctx) for ctx in model.encoder.att_context_size_all}


def select_chunk(model, chunk_ms: int | None) -> tuple[int, list[int]]:
    sizes = chunk_sizes_ms(model)
    if chunk_ms is None:
        current = list(model.encoder.att_context_size)
        chunk_ms = next((ms for ms, ctx in sizes.items() if ctx == current), min(sizes))
    if chunk_ms not in sizes:
        raise ChunkSizeError(f"chunk size {chunk_ms} ms is not supported by this model; "
                             f"valid sizes: {', '.join(str(s) for s in sorted(sizes))} ms")
    return chunk_ms, sizes[chunk_ms]
