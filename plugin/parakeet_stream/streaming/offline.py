"""Offline decoding: whole buffers through the preprocessor, the encoder and NeMo's greedy RNNT in one batch.

What ``Engine.transcribe`` and the segmented mode run, and what streamed text is compared with.
"""
from __future__ import annotations

import numpy as np
import torch

from .features import log_mel
from .transcript import Token


def decode_whole(model, audios: list[np.ndarray]) -> list[list[Token]]:
    """Each 16 kHz signal's tokens, decoded at once with the look-ahead the encoder is set to."""
    param = next(model.encoder.parameters())
    lengths = torch.tensor([len(a) for a in audios])
    x = torch.zeros(len(audios), int(lengths.max()))
    for i, a in enumerate(audios):
        x[i, : len(a)] = torch.from_numpy(a)
    with torch.inference_mode():
        feats, flen = log_mel(model.preprocessor, x, lengths)
        enc, enc_len = model.encoder(audio_signal=feats.to(param.device, param.dtype), length=flen.to(param.device))
        hyps = model.decoding.rnnt_decoder_predictions_tensor(
            encoder_output=enc, encoded_lengths=enc_len, return_hypotheses=True)
    hyps = hyps[0] if isinstance(hyps, tuple) else hyps
    return [tokens_of(h) for h in hyps]


def tokens_of(hyp) -> list[Token]:
    """A hypothesis' tokens with their frames and the decoder's probability for each."""
    ids, stamps = _as_list(hyp.y_sequence), _as_list(hyp.timestamp)
    conf = _as_list(hyp.token_confidence) if hyp.token_confidence is not None else []
    if len(conf) != len(ids):
        raise RuntimeError(f"decoder returned {len(conf)} confidences for {len(ids)} tokens")
    return [Token(int(i), int(t), float(c)) for i, t, c in zip(ids, stamps, conf)]


def _as_list(x) -> list:
    if x is None:
        return []
    return x.tolist() if torch.is_tensor(x) else list(x)
