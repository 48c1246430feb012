"""A client of ``parakeet-stream serve``: one ``/session`` per stream, yielding the engine's own events.

Shared by the LiveKit plugin, the Pipecat service and the captions worker in remote mode. It needs only
``websockets`` and the engine's event and option dataclasses (no torch, no NeMo), so an agent process that talks
to a GPU server never loads a model.
"""
from __future__ import annotations

from .errors import RemoteSessionError, ServerUnreachable, SessionClosed
from .session import RemoteSession, SessionParams, session_url
from .stream import RemoteStream

__all__ = ["RemoteSession", "RemoteStream", "SessionParams", "session_url", "RemoteSessionError", "ServerUnreachable",
           "SessionClosed"]
