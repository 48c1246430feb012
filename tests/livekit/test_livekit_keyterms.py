"""Keyterms through the LiveKit plugin, in process and against a real ``parakeet-stream serve``: the
constructor's keyterms, ``update_options(keyterms=...)`` on a live stream, the ``AgentSession``'s own keyterms
(LiveKit's ``_update_session_keyterms``) merged with the user's, and the advertised capability."""
from __future__ import annotations

import numpy as np
import pytest

from livekit.agents import stt as lkstt
from livekit.plugins import parakeet
from tests.livekit.livekit_testkit import MODEL, collect, frames, run_stream, silence
from tests.serve_process import ServeProcess
from tests.support import KEYTERM, KEYTERM_MISHEARD, keyterm_speech

pytestmark = pytest.mark.asyncio(loop_scope="session")

T = lkstt.SpeechEventType
KEY = "keyterms-test-key-0123456789"
ROOMY = {"lag_warning_seconds": "60", "lag_hard_seconds": "120"}


@pytest.fixture(scope="module")
def server():
    with ServeProcess(max_sessions=4, api_key=KEY) as process:
        yield process


@pytest.fixture(params=["in-process", "remote"])
def make_stt(request, server, engine):
    def make(**kwargs):
        if request.param == "remote":
            return parakeet.STT(model=MODEL, base_url=server.url, api_key=KEY, session_params=ROOMY, **kwargs)
        return parakeet.STT(engine=engine, **kwargs)
    return make


def song() -> np.ndarray:
    return np.concatenate([keyterm_speech(), silence(1.5)])


def final_texts(events) -> list[str]:
    return [e.alternatives[0].text for e in events if e.type == T.FINAL_TRANSCRIPT]


async def test_constructor_keyterms_are_boosted_and_advertised(make_stt):
    plain, boosted = make_stt(), make_stt(keyterms=[KEYTERM.capitalize()], keyterm_weight=2.0)
    assert boosted.capabilities.keyterms is True
    assert final_texts(await run_stream(plain, frames(song()))) == [KEYTERM_MISHEARD]
    [text] = final_texts(await run_stream(boosted, frames(song())))
    assert KEYTERM in text.split()


async def test_keyterms_updated_on_a_live_stream_and_from_the_session(make_stt):
    stt = make_stt()
    stream = stt.stream()
    stream.push_frame(frames(silence(0.2))[0])  # the stream is open before the update
    stt.update_options(keyterms=[KEYTERM])
    for f in frames(song()):
        stream.push_frame(f)
    stream.end_input()
    [text] = final_texts(await collect(stream))
    assert KEYTERM in text.split()
    stt.update_options(keyterms=None)  # the user's gone; the AgentSession's own keyterms still apply
    stt._update_session_keyterms([KEYTERM])
    [text] = final_texts(await run_stream(stt, frames(song())))
    assert KEYTERM in text.split()
    stt._update_session_keyterms([])
    assert final_texts(await run_stream(stt, frames(song()))) == [KEYTERM_MISHEARD]


async def test_bad_keyterms_are_refused_by_the_constructor():
    with pytest.raises(ValueError) as e:
        parakeet.STT(model=MODEL, keyterms=["x" * 51])
    assert str(e.value) == "keyterm too long: 'xxxxxxxxxxxxxxxxxxxx'... has 51 characters; at most 50"
