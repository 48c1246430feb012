"""dalston's ``vocabulary`` over real WebSocket sessions: boosted in the engine's decoding, updated by
``config``, refused with a reason when the model cannot spell it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import websockets

from tests.dalston.kit import collect, frames, pcm16, run_session, session_url
from tests.support import KEYTERM, KEYTERM_MISHEARD, keyterm_speech

pytestmark = pytest.mark.asyncio(loop_scope="session")

SONG = np.concatenate([keyterm_speech(), np.zeros(8000, np.float32)])


async def test_the_vocabulary_parameter_boosts_the_sessions_keyterms(worker) -> None:
    plain = await run_session(session_url(worker, enable_vad=False), frames(pcm16(SONG), 3200))
    boosted = await run_session(session_url(worker, enable_vad=False, vocabulary=json.dumps(["Radiohead"])),
                                frames(pcm16(SONG), 3200))
    assert plain.final_text == KEYTERM_MISHEARD
    assert KEYTERM in boosted.final_text.split()
    assert boosted.types[-1] == "session.end"


async def test_a_config_message_sets_and_clears_the_vocabulary_in_stream_order(worker) -> None:
    audio = frames(pcm16(SONG), 3200)
    on = await run_session(session_url(worker, enable_vad=False),
                           [json.dumps({"type": "config", "vocabulary": [KEYTERM]}), *audio])
    off = await run_session(session_url(worker, enable_vad=False, vocabulary=json.dumps([KEYTERM])),
                            [json.dumps({"type": "config", "vocabulary": None}), *audio])
    assert KEYTERM in on.final_text.split()
    assert off.final_text == KEYTERM_MISHEARD


async def test_a_vocabulary_the_model_cannot_spell_is_refused_at_the_handshake(worker) -> None:
    async with websockets.connect(session_url(worker, vocabulary=json.dumps(["zürich"]))) as ws:
        t = await collect(ws)
    assert (t.close_code, t.messages) == (1002, [])
    assert t.close_reason == "Invalid parameter: vocabulary: keyterm 'zürich': the model cannot spell 'ü'"


async def test_a_bad_vocabulary_in_config_is_an_error_and_the_session_goes_on(worker) -> None:
    t = await run_session(session_url(worker, enable_vad=False),
                          [json.dumps({"type": "config", "vocabulary": "radiohead"}),
                           json.dumps({"type": "config", "vocabulary": ["x" * 51]}),
                           *frames(pcm16(SONG), 3200)])
    errors = [(m["message"], m["recoverable"]) for m in t.of("error")]
    assert errors == [
        ("Invalid config: vocabulary='radiohead' (accepted: a JSON array of phrases, or null for none)", True),
        ("Invalid config: vocabulary: keyterm too long: 'xxxxxxxxxxxxxxxxxxxx'... has 51 characters; at most 50",
         True)]
    assert t.final_text == KEYTERM_MISHEARD
