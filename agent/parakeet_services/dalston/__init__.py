"""dalston-compatible realtime worker: dalston's ``/session`` WebSocket protocol and Redis registration over
the shared parakeet_stream engine. ``parakeet-stream serve`` runs it (see ``serve_cmd``)."""
from .protocol import SessionConfig, parse_session_params
from .server import DalstonWorker, WorkerOptions

__all__ = ["DalstonWorker", "SessionConfig", "WorkerOptions", "parse_session_params"]
