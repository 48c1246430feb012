"""The batched greedy decode read straight from NeMo's label-looping result (decoding.py): the same tokens,
frames and probabilities as NeMo's Hypothesis path, across steps that carry the decoder state."""
from __future__ import annotations

from types import SimpleNamespace

import torch

import parakeet_stream as ps
from parakeet_stream.streaming.decoding import BatchedGreedyDecoder
from parakeet_stream.streaming.offline import tokens_of
from parakeet_stream.streaming.cache_aware import _carry
from tests.support import collect, packets, speech

SENTENCES = ("set a timer for ten minutes", "call me at seven thirty tomorrow morning", "turn on the radio")


def _encode(model, audios):
    x = torch.zeros(len(audios), max(len(a) for a in audios))
    for i, a in enumerate(audios):
        x[i, : len(a)] = torch.from_numpy(a)
    feats, flen = model.preprocessor(input_signal=x, length=torch.tensor([len(a) for a in audios]))
    return model.encoder(audio_signal=feats, length=flen)


def _step_by_step(model, decoder, slots: list[int], enc, enc_len):
    """Decode 2 frames a step (as at 160 ms) through both paths: ours with the decoder states in ``slots``,
    NeMo's with hypotheses carried between steps, from the state NeMo gives a hypothesis that has decoded nothing
    (its one-row state after <SOS>, which ours starts from too)."""
    ours: list[list] = [[] for _ in slots]
    nemos: list[list] = [[] for _ in slots]
    start_state = decoder.computer._get_decoding_state_item_after_sos(device=enc.device)
    hyps = [SimpleNamespace(dec_state=start_state, last_token=None)] * len(slots)
    index = torch.tensor(slots)
    for slot in slots:
        decoder.reset(slot)
    for start in range(0, enc.shape[2], 2):  # rows end at their length
        x = enc[:, :, start:start + 2].contiguous()
        n = torch.clamp(enc_len - start, min=0, max=2)
        tokens = decoder.decode(x, n, index)
        prev = [_carry(h) for h in hyps]
        hyps = model.decoding.rnnt_decoder_predictions_tensor(
            encoder_output=x, encoded_lengths=n, return_hypotheses=True,
            partial_hypotheses=prev)
        for row, t in zip(ours, tokens):
            row.extend(t)
        for row, h in zip(nemos, hyps):
            row.extend(tokens_of(h))
    return ours, nemos


def test_steps_decoded_in_batch_equal_nemos_hypotheses_step_by_step(demo_engine):
    """Same steps through both paths: identical tokens, frames and probabilities; and the ids and frames of the
    whole utterance decoded at once (its probabilities differ in the last bits: other product shapes). The
    decoder states live in slot rows given in any order."""
    model = demo_engine._scheduler.model
    decoder = BatchedGreedyDecoder(model)
    assert decoder.available

    def run():
        with torch.inference_mode():
            enc, enc_len = _encode(model, [speech(s) for s in SENTENCES])
            whole = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=enc_len,
                                                                   return_hypotheses=True)
            ours, nemos = _step_by_step(model, decoder, [5, 0, 2], enc, enc_len)
        return ours, nemos, [tokens_of(h) for h in whole], decoder.states.capacity

    ours, nemos, whole, capacity = demo_engine._scheduler.call(run)
    assert ours == nemos and all(ours)
    assert [[(t.id, t.frame) for t in row] for row in ours] == [[(t.id, t.frame) for t in row] for row in whole]
    assert capacity == 6  # grown to the highest slot used


def test_a_reset_slot_decodes_a_new_utterance_as_a_fresh_decoder_would(demo_engine):
    """A slot reused after ``reset`` (a new stream, or a flush) keeps nothing of its last utterance: the same
    tokens and frames as a decoder that never saw it."""
    model = demo_engine._scheduler.model
    used, fresh = BatchedGreedyDecoder(model), BatchedGreedyDecoder(model)

    def run():
        with torch.inference_mode():
            first = _encode(model, [speech(SENTENCES[0]), speech(SENTENCES[1])])
            second = _encode(model, [speech(SENTENCES[2])])
            _step_by_step(model, used, [1, 0], *first)
            return _step_by_step(model, used, [1], *second)[0], _step_by_step(model, fresh, [1], *second)[0]

    again, new = demo_engine._scheduler.call(run)
    assert again == new and [t.id for t in again[0]]


def test_nemos_hypothesis_path_streams_the_same_text(demo_engine):
    """Where the batched read is not available (another decoding strategy), NeMo's own path decodes."""
    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=2))
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
