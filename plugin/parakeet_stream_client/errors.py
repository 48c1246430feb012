"""Why a remote session could not open or ended early, and whether trying again can help."""
from __future__ import annotations

# close codes of ``parakeet-stream serve`` (dalston's worker codes; see parakeet_services/dalston/protocol.py)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_PARAMETER = 1002
CLOSE_ABNORMAL = 1006  # no close frame: the server process died or the network dropped
CLOSE_POLICY_VIOLATION = 1008  # invalid path, or "unauthorized"
CLOSE_INTERNAL_ERROR = 1011
CLOSE_AT_CAPACITY = 1013
CLOSE_LAG_EXCEEDED = 4010

# what each close code means to a client, and whether another attempt may succeed
_CLOSE_MEANING: dict[int, tuple[str, bool]] = {
    CLOSE_GOING_AWAY: ("the server is shutting down", True),
    CLOSE_ABNORMAL: ("the connection dropped without a close frame (server stopped or network lost)", True),
    CLOSE_INTERNAL_ERROR: ("the server failed transcribing this session", True),
    CLOSE_AT_CAPACITY: ("the server is full or draining", True),
    CLOSE_INVALID_PARAMETER: ("the server refused a session parameter", False),
    CLOSE_POLICY_VIOLATION: ("the server refused the request (wrong path or API key)", False),
    CLOSE_LAG_EXCEEDED: ("the server fell too far behind this session's audio and ended it; a new session would "
                         "start as far behind", False),
}


class RemoteSessionError(Exception):
    """A session could not open or ended before ``session.end``.

    ``retryable`` says whether opening a new session may work (server down, restarting, full); ``close_code`` and
    ``reason`` are the server's close frame when there was one.
    """

    def __init__(self, message: str, *, retryable: bool, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.close_code = close_code
        self.reason = reason


class ServerUnreachable(RemoteSessionError):
    """No WebSocket could be opened (refused, timed out, reset): always retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class SessionClosed(RemoteSessionError):
    """The server closed the session (before ``session.begin``, or mid-stream) with ``close_code``."""


def session_closed(url: str, code: int | None, reason: str, detail: str = "") -> SessionClosed:
    """The error for a close with ``code``: its meaning, the server's reason and any error message it sent."""
    code = CLOSE_ABNORMAL if code is None else code
    meaning, retryable = _CLOSE_MEANING.get(code, ("the server closed the session unexpectedly", True))
    text = f"{url} closed the session with {code}"
    if reason:
        text += f" {reason!r}"
    text += f": {meaning}"
    if detail:
        text += f" ({detail})"
    return SessionClosed(text, retryable=retryable, close_code=code, reason=reason)
