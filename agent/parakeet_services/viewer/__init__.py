"""The captions page: a static page that joins a LiveKit room with a subscribe-only token and shows every
speaker's ``lk.transcription`` captions, plus the small HTTP server that hands out those tokens."""
from __future__ import annotations

from .server import ViewerConfig, start_viewer
from .tokens import RoomNotAllowed, RoomPolicy, subscribe_only_token

__all__ = ["RoomNotAllowed", "RoomPolicy", "ViewerConfig", "start_viewer", "subscribe_only_token"]
