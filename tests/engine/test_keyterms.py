"""Per-stream keyterm boosting (``parakeet_stream.streaming.keyterms``): limits, a term recognized only when boosted,
exactness of boosted and plain streams stepped in one batch, live updates, and slots handed on clean."""
from __future__ import annotations

import pytest

import parakeet_stream as ps
from parakeet_stream.streaming.keyterms import MAX_KEYTERM_CHARS, MAX_KEYTERMS
from tests.support import KEYTERM, KEYTERM_MISHEARD, collect, keyterm_speech, packets, speech

NO_ENDPOINTS = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)
CALL = ("call doctor brown at seven", "en-us")
TIMER = ("set a timer for ten minutes", "en-sc")


def finals(events) -> list[tuple[str, tuple]]:
    return [(e.text, e.words) for e in events if isinstance(e, ps.Final)]


def stream_all(engine, audios_and_keyterms) -> list[list[tuple[str, tuple]]]:
    """The audios on concurrent streams (each with its keyterms), pushed packet by packet in lock step and far
    faster than real time, so that the engine steps them in shared batches."""
    streams = [engine.open_stream(endpointing=NO_ENDPOINTS, keyterms=kt) for _, kt in audios_and_keyterms]
    feeds = [list(packets(audio)) for audio, _ in audios_and_keyterms]
    for i in range(max(len(f) for f in feeds)):
        for s, f in zip(streams, feeds):
            if i < len(f):
                s.push(f[i])
    for s in streams:
        s.finish()
    return [finals(collect(s)) for s in streams]


def offline(engine, audio, keyterms=None) -> list[tuple[str, tuple]]:
    t = engine.transcribe(audio, keyterms=keyterms)
    return [(t.text, t.words)]


def test_a_boosted_name_is_recognized_where_it_is_not_without_boosting(demo_engine):
    audio = keyterm_speech()
    assert demo_engine.transcribe(audio).text == KEYTERM_MISHEARD
    [(text, _)] = stream_all(demo_engine, [(audio, [KEYTERM.capitalize()])])[0]  # the model spells lower case
    assert KEYTERM in text.split()


def test_boosted_and_plain_streams_in_one_batch_each_equal_their_offline_decoding(demo_engine):
    """Plain streams decode exactly as without boosting, though batched with boosted ones; each boosted stream's
    streamed text and word times equal offline decoding with the same keyterms. New streams take the two lanes in
    turn, so each lane steps one boosted and one plain stream together."""
    song, call, timer = keyterm_speech(), speech(*CALL), speech(*TIMER)
    assert len(demo_engine._lanes) == 2
    results = stream_all(demo_engine, [(song, [KEYTERM]), (timer, ["timer", "minutes"]), (call, None),
                                       (song, None)])
    assert demo_engine.metrics().max_batch_size >= 2
    assert results == [offline(demo_engine, song, [KEYTERM]), offline(demo_engine, timer, ["timer", "minutes"]),
                       offline(demo_engine, call), offline(demo_engine, song)]
    assert results[0] != results[3]  # the boost did change the boosted stream


def test_keyterms_updated_in_stream_order_and_removed(demo_engine):
    song = keyterm_speech()
    s = demo_engine.open_stream(endpointing=NO_ENDPOINTS)
    s.update_keyterms([KEYTERM])  # before any audio: as if opened with them
    for p in packets(song):
        s.push(p)
    s.finish()
    assert finals(collect(s)) == offline(demo_engine, song, [KEYTERM])
    t = demo_engine.open_stream(endpointing=NO_ENDPOINTS, keyterms=[KEYTERM])
    t.update_keyterms(None)
    for p in packets(song):
        t.push(p)
    t.finish()
    assert finals(collect(t)) == offline(demo_engine, song)


def test_a_slot_freed_by_a_boosted_stream_serves_the_next_stream_plain(demo_engine):
    song = keyterm_speech()
    for _ in range(3):  # the boosted streams' slots are handed on to the plain ones
        assert stream_all(demo_engine, [(song, [KEYTERM]), (song, [KEYTERM])])[0] == \
            offline(demo_engine, song, [KEYTERM])
        assert stream_all(demo_engine, [(song, None), (song, None)]) == [offline(demo_engine, song)] * 2


@pytest.mark.parametrize("keyterms, weight, message", [
    (["a"] * (MAX_KEYTERMS + 1), None, f"too many keyterms: {MAX_KEYTERMS + 1}; at most {MAX_KEYTERMS} per stream"),
    (["x" * (MAX_KEYTERM_CHARS + 1)], None,
     f"keyterm too long: 'xxxxxxxxxxxxxxxxxxxx'... has {MAX_KEYTERM_CHARS + 1} characters; at most "
     f"{MAX_KEYTERM_CHARS}"),
    (["radiohead", "  "], None, "empty keyterm: every keyterm needs at least one word"),
    ("radiohead", None, "keyterms must be a list of phrases, not one string"),
    ([42], None, "keyterms must be strings, got 42"),
    (["radiohead"], 0, "keyterm weight must be a number in (0, 10], got 0"),
    (["radiohead"], 11.5, "keyterm weight must be a number in (0, 10], got 11.5"),
    (["café zürich"], None, "keyterm 'café zürich': the model cannot spell 'éü'"),
])
def test_bad_keyterms_are_refused_with_the_limit_and_nothing_opened(demo_engine, keyterms, weight, message):
    opened = demo_engine.metrics().streams_opened
    with pytest.raises(ValueError) as e:
        demo_engine.open_stream(keyterms=keyterms, keyterm_weight=weight)
    assert str(e.value) == message
    assert demo_engine.metrics().streams_opened == opened
