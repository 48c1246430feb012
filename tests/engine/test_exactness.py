"""Streamed tokens equal offline decoding of the same audio with the same att_context_size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import parakeet_stream as ps
from parakeet_stream.streaming.transcript import SegmentTranscript, Token, Vocabulary
from tests.support import collect, packets, speech

NO_ENDPOINTS = ps.EndpointingOptions(trailing_blank_ms=None, eou=False)


def offline_decode(model, audio: np.ndarray) -> list[Token]:
    """Tokens (id, frame, confidence) from NeMo's offline path (whole-utterance encoder, greedy RNNT)."""
    with torch.inference_mode():
        f, fl = model.preprocessor(input_signal=torch.from_numpy(audio)[None], length=torch.tensor([len(audio)]))
        enc, el = model.encoder(audio_signal=f, length=fl)
        hyps = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=el,
                                                              return_hypotheses=True)
    hyp = (hyps[0] if isinstance(hyps, tuple) else hyps)[0]
    return [Token(int(i), int(t), float(c)) for i, t, c in zip(hyp.y_sequence, hyp.timestamp, hyp.token_confidence)]


def stream_final(engine, audio: np.ndarray, packet_ms: int = 20) -> ps.Final:
    stream = engine.open_stream(endpointing=NO_ENDPOINTS)
    for p in packets(audio, packet_ms):
        stream.push(p)
    stream.finish()
    finals = [e for e in collect(stream) if isinstance(e, ps.Final)]
    assert len(finals) == 1
    return finals[0]


@pytest.fixture(scope="module")
def utterance():
    return np.concatenate([speech("one two three four five six seven eight nine ten please call me at home"),
                           speech("the quick brown fox jumps over the lazy dog", voice="en-gb")])


@pytest.mark.parametrize("chunk_ms,right_context", [(80, 0), (160, 1), (560, 6), (1120, 13)])
def test_streamed_tokens_equal_offline(tiny_model, utterance, chunk_ms, right_context):
    engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=chunk_ms))
    try:
        assert list(tiny_model.encoder.att_context_size) == [70, right_context]
        tokens = offline_decode(tiny_model, utterance)
        final = stream_final(engine, utterance)
    finally:
        engine.close()
    assert len(tokens) >= 50
    # the same tokens on the same frames give the same timed words; confidences are softmax outputs of features
    # that equal offline to ~2e-6 (BLAS blocking differs with segment length), so they agree to float noise
    expected = SegmentTranscript(Vocabulary(tiny_model.tokenizer), 0.08, 0.0)
    expected.extend(tokens)
    assert [(w.text, w.start, w.end) for w in final.words] == [(w.text, w.start, w.end) for w in expected.words()]
    assert [w.confidence for w in final.words] == pytest.approx([w.confidence for w in expected.words()], abs=1e-3)
    assert final.text == expected.text() == " ".join(w.text for w in final.words)


def test_demo_model_streams_exactly_what_it_decodes_offline(demo_engine):
    audio = speech("set a timer for ten minutes")
    final = stream_final(demo_engine, audio)
    offline = demo_engine.transcribe(audio)
    assert final.text == "set a timer for ten minutes"
    assert final.text == offline.text
    assert final.words == offline.words
