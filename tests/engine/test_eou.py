"""A model whose vocabulary has <EOU> ends a segment wherever the decoder emits it (never shown as text)."""
from __future__ import annotations

import numpy as np
import pytest

import parakeet_stream as ps
from parakeet_stream.streaming.transcript import Vocabulary
from tests.support import collect, packets, silence, speech


@pytest.fixture(scope="module")
def eou_engine():
    from parakeet_stream.testing import build_random_model

    engine = ps.Engine.from_model(build_random_model("tiny", eou=True, seed=0), ps.EngineConfig(model="tiny-eou",
                                                                                                chunk_ms=160))
    yield engine
    engine.close()


def test_segments_are_the_token_runs_between_eou_tokens(eou_engine):
    audio = np.concatenate([speech("call me at seven thirty tomorrow morning"), speech("four five six")])
    vocab: Vocabulary = eou_engine._scheduler.vocab
    (eou_id,) = vocab.eou_ids
    offline = eou_engine._scheduler.call(lambda: eou_engine._scheduler.decode_batch([audio])[0])
    runs, run = [], []
    for tok in offline:
        if tok.id == eou_id:
            runs.append(run)
            run = []
        else:
            run.append(tok)
    runs.append(run)
    expected = [vocab.text([t.id for t in r]) for r in runs if r]

    s = eou_engine.open_stream(endpointing=ps.EndpointingOptions(trailing_blank_ms=None))
    for p in packets(audio):
        s.push(p)
    s.finish()
    finals = [e for e in collect(s) if isinstance(e, ps.Final)]

    assert eou_engine.info.has_eou
    assert sum(t.id == eou_id for t in offline) >= 3
    assert [f.text for f in finals] == expected
    assert [f.reason for f in finals[:-1]] == ["eou"] * (len(finals) - 1)
    assert all("<EOU>" not in f.text for f in finals)


def test_eou_endpointing_can_be_switched_off(eou_engine):
    audio = speech("call me at seven thirty tomorrow morning")
    s = eou_engine.open_stream(endpointing=ps.EndpointingOptions(trailing_blank_ms=None, eou=False))
    for p in packets(audio):
        s.push(p)
    s.finish()
    finals = [e for e in collect(s) if isinstance(e, ps.Final)]
    assert [f.reason for f in finals] == ["finish"]
    assert "<EOU>" not in finals[0].text


def test_the_demo_model_ends_each_sentence_with_eou_and_hears_what_follows(demo_engine):
    """Three sentences with 0.4 s pauses (half what the trailing-blank rule needs): each is a segment ended by the
    model's own ``<EOU>`` well before the 800 ms rule would (within its chunk, look-ahead and a chunk more), and the
    words after each ``<EOU>`` are heard, as offline decoding hears them."""
    sentences = ("call me at seven thirty", "set a timer for ten minutes", "turn on the lights")
    parts, ends, t = [silence(0.3)], [], 0.3
    for sentence in sentences:
        voice = speech(sentence)
        ends.append(t + (np.flatnonzero(np.abs(voice) > 1e-3)[-1] + 1) / 16000)  # the last voiced sample
        parts += [voice, silence(0.4)]
        t += len(voice) / 16000 + 0.4
    audio = np.concatenate(parts)
    s = demo_engine.open_stream()
    for p in packets(audio):
        s.push(p)
    s.finish()
    finals = [e for e in collect(s) if isinstance(e, ps.Final)]

    assert demo_engine.info.has_eou
    assert [(f.text, f.reason) for f in finals] == [(sentence, "eou") for sentence in sentences]
    assert demo_engine.transcribe(audio).text == " ".join(sentences)
    for final, end in zip(finals, ends):
        assert 0 <= final.audio_end - end <= 0.5, (final.audio_end, end)
