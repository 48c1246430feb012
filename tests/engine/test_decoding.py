"""The batched greedy decode read straight from NeMo's label-looping result (decoding.py): the same tokens,
frames and probabilities as NeMo's Hypothesis path, across steps that carry the decoder state."""
from __future__ import annotations

import torch

import parakeet_stream as ps
from parakeet_stream.decoding import BatchedGreedyDecoder
from parakeet_stream.inference_loop import tokens_of
from parakeet_stream.scheduler import _carry
from tests.support import collect, packets, speech

SENTENCES = ("set a timer for ten minutes", "call me at seven thirty tomorrow morning", "turn on the radio")


def _encode(model, audios):
    x = torch.zeros(len(audios), max(len(a) for a in audios))
    for i, a in enumerate(audios):
        x[i, : len(a)] = torch.from_numpy(a)
    feats, flen = model.preprocessor(input_signal=x, length=torch.tensor([len(a) for a in audios]))
    return model.encoder(audio_signal=feats, length=flen)


def test_steps_decoded_in_batch_equal_nemos_hypotheses_step_by_step(demo_engine):
    """Same steps through both paths: identical tokens, frames and probabilities; and the ids and frames of the
    whole utterance decoded at once (its probabilities differ in the last bits: other product shapes)."""
    model = demo_engine._scheduler.model
    decoder = BatchedGreedyDecoder(model)
    assert decoder.available

    def run():
        with torch.inference_mode():
            enc, enc_len = _encode(model, [speech(s) for s in SENTENCES])
            whole = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=enc_len,
                                                                   return_hypotheses=True)
            ours: list[list] = [[] for _ in SENTENCES]
            nemos: list[list] = [[] for _ in SENTENCES]
            states, hyps = [None] * len(SENTENCES), [None] * len(SENTENCES)
            for start in range(0, enc.shape[2], 2):  # 2 frames a step, as at 160 ms; rows end at their length
                x = enc[:, :, start:start + 2].contiguous()
                n = torch.clamp(enc_len - start, min=0, max=2)
                tokens, states = decoder.decode(x, n, states)
                prev = [_carry(h) for h in hyps]
                hyps = model.decoding.rnnt_decoder_predictions_tensor(
                    encoder_output=x, encoded_lengths=n, return_hypotheses=True,
                    partial_hypotheses=None if start == 0 else prev)
                for row, t in zip(ours, tokens):
                    row.extend(t)
                for row, h in zip(nemos, hyps):
                    row.extend(tokens_of(h))
        return ours, nemos, [tokens_of(h) for h in whole]

    ours, nemos, whole = demo_engine._scheduler.call(run)
    assert ours == nemos and all(ours)
    assert [[(t.id, t.frame) for t in row] for row in ours] == [[(t.id, t.frame) for t in row] for row in whole]


def test_nemos_hypothesis_path_streams_the_same_text(demo_engine):
    """Where the batched read is not available (another decoding strategy), NeMo's own path decodes."""
    engine = ps.Engine.load("espeak-demo-en", device="cpu", max_streams=2)
    try:
        engine._scheduler.decoder.computer = None  # the fallback, as for a model without label looping
        opts = ps.EndpointingOptions(trailing_blank_ms=None, eou=False, vad=False)
        audio = speech(SENTENCES[1])
        stream = engine.open_stream(endpointing=opts)
        for p in packets(audio):
            stream.push(p)
        stream.finish()
        finals = [e.text for e in collect(stream) if isinstance(e, ps.Final)]
        assert finals == [demo_engine.transcribe(audio).text] == [SENTENCES[1]]
    finally:
        engine.close()
