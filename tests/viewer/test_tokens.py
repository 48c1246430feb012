"""Which rooms the captions page may open, and what its tokens allow: join and subscribe, never publish."""
from __future__ import annotations

import re

import jwt
import pytest
from livekit import api

from parakeet_services.viewer.tokens import RoomNotAllowed, RoomPolicy, subscribe_only_token

KEY = "devkey"
SECRET = "parakeet-stream-test-secret-0123456789"


def test_policy_matches_whole_names_only():
    policy = RoomPolicy.from_regex("standup|class-[0-9]+")
    assert [policy.allows(r) for r in ("standup", "class-7", "class-7b", "standup2", "my-standup", "")] == \
           [True, True, False, False, False, False]


def test_default_policy_allows_any_name_up_to_256_characters():
    policy = RoomPolicy.from_regex()
    assert (policy.allows("a"), policy.allows("any room / name"), policy.allows("x" * 256),
            policy.allows("x" * 257), policy.allows("")) == (True, True, True, False, False)


def test_refusal_names_the_room_shortened():
    policy = RoomPolicy.from_regex("standup")
    with pytest.raises(RoomNotAllowed) as refused:
        policy.check("secret-board-meeting")
    assert str(refused.value) == "room 'secret-board-meeting' is not allowed on this captions page"
    with pytest.raises(RoomNotAllowed) as refused:
        policy.check("y" * 300)
    assert str(refused.value) == f"room '{'y' * 64}...' is not allowed on this captions page"
    with pytest.raises(RoomNotAllowed, match="^no room given$"):
        policy.check("")
    assert policy.check("standup") == "standup"


def test_bad_pattern_is_a_startup_error():
    with pytest.raises(re.error):
        RoomPolicy.from_regex("class-[0-9")


def test_token_grants_subscribe_only_in_one_room():
    token, identity = subscribe_only_token(KEY, SECRET, "standup")
    claims = api.TokenVerifier(KEY, SECRET).verify(token)  # signed with the server's secret
    assert (claims.identity, claims.name) == (identity, "captions viewer")
    assert re.fullmatch(r"captions-viewer-[0-9a-f]{8}", identity)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["video"] == {"roomJoin": True, "room": "standup", "canPublish": False, "canSubscribe": True,
                                "canPublishData": False, "canPublishSources": [], "canUpdateOwnMetadata": False,
                                "hidden": True}
    assert payload["exp"] - payload["nbf"] == 600
    assert SECRET not in token


def test_each_token_is_a_new_viewer():
    (_, first), (_, second) = subscribe_only_token(KEY, SECRET, "r"), subscribe_only_token(KEY, SECRET, "r")
    assert first != second
