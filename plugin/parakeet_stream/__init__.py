"""parakeet_stream: a framework-free realtime engine over NeMo cache-aware streaming ASR models.

Importing this package is cheap; torch and NeMo load when a model is loaded. See ``docs/engine-api.md``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runtime.threads import prefer_cpu_runtime_env

prefer_cpu_runtime_env()  # before torch loads OpenMP and MKL: sleeping pool threads, shape-independent results

from .audio import MODEL_SAMPLE_RATE
from .config import EngineConfig
from .endpointing import EndpointingOptions
from .errors import (AudioFormatError, CapacityError, ChunkSizeError, ModelLoadError, ParakeetStreamError,
                     StreamClosedError)
from .events import Event, Final, Partial, SpeechEnded, SpeechStarted, StreamEnded, StreamFailed, Word
from .models import DEFAULT_MODEL, KNOWN_MODELS, ModelInfo

if TYPE_CHECKING:
    from .engine import Engine, Transcript, shared_engine
    from .stream import Stream

__version__ = "0.1.0"

_LAZY = {"Engine": "engine", "Transcript": "engine", "shared_engine": "engine", "Stream": "stream",
         "testing": None}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'parakeet_stream' has no attribute {name!r}")
    if _LAZY[name] is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


__all__ = ["Engine", "EngineConfig", "Stream", "Transcript", "shared_engine", "EndpointingOptions", "ModelInfo",
           "KNOWN_MODELS", "MODEL_SAMPLE_RATE",
           "DEFAULT_MODEL", "Event", "SpeechStarted", "Partial", "Final", "SpeechEnded", "StreamEnded",
           "StreamFailed", "Word", "ParakeetStreamError", "AudioFormatError", "StreamClosedError",
           "ModelLoadError", "ChunkSizeError", "CapacityError", "__version__"]
