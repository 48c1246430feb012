"""Errors the engine raises to its callers. Each message says what was wrong and what is accepted."""
from __future__ import annotations


class ParakeetStreamError(Exception):
    """Base class of every error the engine raises on purpose."""


class AudioFormatError(ParakeetStreamError, ValueError):
    """Pushed audio cannot be used (wrong dtype, shape, byte count, rate, non-finite samples)."""


class StreamClosedError(ParakeetStreamError, RuntimeError):
    """The stream was finished or closed and takes no more audio or commands."""


class ModelLoadError(ParakeetStreamError, RuntimeError):
    """A model could not be loaded: unknown name, no network, not a NeMo file, not cache-aware."""


class ModelNotFoundError(ModelLoadError):
    """The name is neither a known model, a hub id nor an existing local file."""


class ChunkSizeError(ParakeetStreamError, ValueError):
    """The requested chunk size is not one the model was trained for."""


class CapacityError(ParakeetStreamError, RuntimeError):
    """The engine already serves as many streams as it was configured for."""
