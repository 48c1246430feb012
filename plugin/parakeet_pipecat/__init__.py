"""Pipecat speech-to-text over the ``parakeet_stream`` engine: ``ParakeetSTTService``.

Importing this package imports Pipecat but not NeMo/torch; the model loads when a service starts.
"""
from __future__ import annotations

from .stt import ParakeetSTTService, ParakeetSTTSettings

__version__ = "0.1.0"

__all__ = ["ParakeetSTTService", "ParakeetSTTSettings", "__version__"]
