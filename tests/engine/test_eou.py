"""A model whose vocabulary has <EOU> ends a segment wherever the decoder emits it (never shown as text)."""
from __future__ import annotations

import numpy as np
import pytest

import parakeet_stream as ps
from parakeet_stream.streaming.transcript import Vocabulary
from tests.support import collect, packets, speech


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
