"""Which rooms the captions page may open, and the only kind of token it hands out: join one room, subscribe,
publish nothing (no tracks, no data, no metadata). The API secret signs tokens here and never leaves the server."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from livekit import api

ANY_ROOM = ".+"
MAX_ROOM_NAME = 256  # longer names are refused before the pattern runs: no regex work on arbitrary input sizes
TOKEN_TTL = timedelta(minutes=10)  # only the join needs it: a connected participant's token is refreshed by LiveKit
VIEWER_IDENTITY_PREFIX = "captions-viewer-"
VIEWER_NAME = "captions viewer"


class RoomNotAllowed(ValueError):
    """A room name the page may not open; the message is what the HTTP client is told."""


@dataclass(frozen=True)
class RoomPolicy:
    """Rooms the page may open: names that match ``pattern`` in full (a list is ``a|b|c``)."""

    pattern: re.Pattern[str]

    @classmethod
    def from_regex(cls, regex: str = ANY_ROOM) -> RoomPolicy:
        """``regex`` compiled once; a bad one is a configuration error (``re.error``) at start-up, not per request."""
        return cls(re.compile(regex))

    def allows(self, room: str) -> bool:
        return 0 < len(room) <= MAX_ROOM_NAME and self.pattern.fullmatch(room) is not None

    def check(self, room: str) -> str:
        """``room`` itself when allowed; else ``RoomNotAllowed`` naming it (shortened: it is untrusted input)."""
        if not room:
            raise RoomNotAllowed("no room given")
        if not self.allows(room):
            shown = room if len(room) <= 64 else room[:64] + "..."
            raise RoomNotAllowed(f"room {shown!r} is not allowed on this captions page")
        return room


def subscribe_only_grants(room: str) -> api.VideoGrants:
    """Join ``room`` hidden (other participants do not see a viewer) and subscribe; publish nothing at all."""
    return api.VideoGrants(room_join=True, room=room, can_subscribe=True, can_publish=False,
                           can_publish_data=False, can_publish_sources=[], can_update_own_metadata=False,
                           hidden=True)


def subscribe_only_token(api_key: str, api_secret: str, room: str, *, ttl: timedelta = TOKEN_TTL) -> tuple[str, str]:
    """(JWT, identity) for one viewer of ``room``; each call is a new identity, so two tabs never kick each other."""
    identity = VIEWER_IDENTITY_PREFIX + secrets.token_hex(4)
    token = (api.AccessToken(api_key, api_secret).with_identity(identity).with_name(VIEWER_NAME)
             .with_grants(subscribe_only_grants(room)).with_ttl(ttl))
    return token.to_jwt(), identity
