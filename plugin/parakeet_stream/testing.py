"""Cache-aware models with random weights, built from config in seconds (no download).

The config follows NeMo's ``fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml``; ``ARCHS`` holds the real
layouts of the public checkpoints so benchmarks can measure true costs without their weights. Random weights
make greedy RNNT emit nothing (or max_symbols every frame), so ``sharpen_joint`` rescales the joint's output
layer until it emits about one token per frame: a demanding input for streamed == offline token checks.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Any

ARCHS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, sub_channels=64, pred_hidden=64, joint_hidden=64,
                 features=80, hybrid=True, pred_rnn_layers=1, vocab=128),
    # nvidia/stt_en_fastconformer_hybrid_large_streaming_multi (114.8 M)
    "large": dict(d_model=512, n_layers=17, n_heads=8, sub_channels=256, pred_hidden=640, joint_hidden=640,
                  features=80, hybrid=True, pred_rnn_layers=1, vocab=1024),
    # nvidia/nemotron-speech-streaming-en-0.6b (618.5 M): 24 x 1024, 2-layer LSTM prediction net, 128 mels
    "xl": dict(d_model=1024, n_layers=24, n_heads=8, sub_channels=256, pred_hidden=640, joint_hidden=640,
               features=128, hybrid=False, pred_rnn_layers=2, vocab=1024),
}
ALL_CONTEXTS = ((70, 13), (70, 6), (70, 1), (70, 0))

_WORDS = (
    "the a one two three four five six seven eight nine ten hello world please call me at home office today "
    "tomorrow morning evening night weather rain sun wind speech model stream audio voice text number meeting "
    "project report system server client message quick brown fox jumps over lazy dog stop start open close "
    "window door green red blue big small long short fast slow good new old first last next time day week"
).split()


def _cache_dir() -> str:
    path = os.path.join(os.environ.get("PARAKEET_STREAM_CACHE", tempfile.gettempdir()), "parakeet-stream-tok")
    os.makedirs(path, exist_ok=True)
    return path


def write_nemo_tokenizer(texts: list[str], tok_dir: str, vocab_size: int, symbols: tuple[str, ...] = ()) -> str:
    """Train a SentencePiece BPE on ``texts`` into ``tok_dir``, laid out as NeMo's
    ``process_asr_text_tokenizer.py`` does (tokenizer.model, tokenizer.vocab, vocab.txt). Kept if ``tok_dir``
    already has one (a resumed training run must see the same token ids)."""
    import sentencepiece as spm

    if os.path.exists(os.path.join(tok_dir, "vocab.txt")):
        return tok_dir
    os.makedirs(tok_dir, exist_ok=True)
    text = os.path.join(tok_dir, "text.txt")
    with open(text, "w") as f:
        f.write("\n".join(texts) + "\n")
    spm.SentencePieceTrainer.train(input=text, model_prefix=os.path.join(tok_dir, "tokenizer"),
                                   vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
                                   bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2, user_defined_symbols=list(symbols))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tok_dir, "tokenizer.model"))
    tmp = os.path.join(tok_dir, "vocab.txt.tmp")
    with open(tmp, "w") as f:
        f.writelines(sp.id_to_piece(i) + "\n" for i in range(sp.get_piece_size()))
    os.remove(text)
    os.replace(tmp, os.path.join(tok_dir, "vocab.txt"))  # last: its presence marks a complete tokenizer
    return tok_dir


def train_tokenizer(vocab_size: int, eou: bool = False) -> str:
    """A tokenizer for random-weight models, cached per vocab size. ``eou`` adds an ``<EOU>`` piece, as
    nvidia/parakeet_realtime_eou_120m-v1 has."""
    tok_dir = os.path.join(_cache_dir(), f"bpe{vocab_size}" + ("-eou" if eou else ""))
    rng = random.Random(vocab_size)
    if vocab_size <= 256:
        words = _WORDS
    else:  # enough distinct words for a large vocabulary to be learnable
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(6000)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
             for _ in range(8000 if vocab_size > 256 else 600)]
    return write_nemo_tokenizer(texts, tok_dir, vocab_size, ("<EOU>",) if eou else ())


def streaming_config(tok_dir: str, *, d_model: int, n_layers: int, n_heads: int, sub_channels: int,
                     pred_hidden: int, joint_hidden: int, features: int, hybrid: bool, pred_rnn_layers: int,
                     att_context_size=ALL_CONTEXTS, offline: bool = False):
    """The model config; ``offline=True`` gives a full-context, non-causal model (like parakeet-rnnt-0.6b)."""
    from omegaconf import OmegaConf

    encoder = dict(
        _target_="nemo.collections.asr.modules.ConformerEncoder", feat_in=features, feat_out=-1,
        n_layers=n_layers, d_model=d_model, use_bias=True, subsampling="dw_striding", subsampling_factor=8,
        subsampling_conv_channels=sub_channels, causal_downsampling=True, ff_expansion_factor=4,
        self_attention_model="rel_pos", n_heads=n_heads, att_context_size=[list(c) for c in att_context_size],
        att_context_style="chunked_limited", xscaling=True, pos_emb_max_len=5000, conv_kernel_size=9,
        conv_norm_type="layer_norm", conv_context_size="causal", dropout=0.1, dropout_pre_encoder=0.1,
        dropout_emb=0.0, dropout_att=0.1,
    )
    if offline:
        encoder.update(att_context_size=[-1, -1], att_context_style="regular", causal_downsampling=False,
                       conv_context_size=None)
    cfg = dict(
        sample_rate=16000, compute_eval_loss=False, log_prediction=False, skip_nan_grad=False,
        model_defaults=dict(enc_hidden=d_model, pred_hidden=pred_hidden, joint_hidden=joint_hidden),
        train_ds=None, validation_ds=None, test_ds=None,
        tokenizer=dict(dir=tok_dir, type="bpe"),
        preprocessor=dict(
            _target_="nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor", sample_rate=16000,
            normalize="per_feature" if offline else "NA", window_size=0.025, window_stride=0.01, window="hann", features=features,
            n_fft=512, frame_splicing=1, dither=0.00001, pad_to=0,
        ),
        spec_augment=None,
        encoder=encoder,
        decoder=dict(_target_="nemo.collections.asr.modules.RNNTDecoder", normalization_mode=None,
                     random_state_sampling=False, blank_as_pad=True,
                     prednet=dict(pred_hidden=pred_hidden, pred_rnn_layers=pred_rnn_layers, t_max=None,
                                  dropout=0.2)),
        joint=dict(_target_="nemo.collections.asr.modules.RNNTJoint", log_softmax=None, preserve_memory=False,
                   fuse_loss_wer=True, fused_batch_size=4,
                   jointnet=dict(joint_hidden=joint_hidden, activation="relu", dropout=0.2)),
        decoding=dict(strategy="greedy_batch", greedy=dict(max_symbols=10)),
        loss=dict(loss_name="default", warprnnt_numba_kwargs=dict(fastemit_lambda=5e-3, clamp=-1.0)),
        optim=dict(name="adamw", lr=1e-3),
    )
    if hybrid:
        cfg["aux_ctc"] = dict(
            ctc_loss_weight=0.3, use_cer=False, ctc_reduction="mean_batch",
            decoder=dict(_target_="nemo.collections.asr.modules.ConvASRDecoder", feat_in=None, num_classes=-1,
                         vocabulary=[]),
            decoding=dict(strategy="greedy"),
        )
    return OmegaConf.create(cfg)


def sharpen_joint(model, scale: float = 20.0, blank_bias: float = 9.0) -> None:
    """Make random-weight greedy RNNT emit about one token per frame (blank is NeMo's last index)."""
    import torch

    with torch.no_grad():
        last = model.joint.joint_net[-1]
        last.weight.mul_(scale)
        last.bias.mul_(scale)
        last.bias[-1] += blank_bias


def build_random_model(arch: str = "tiny", *, seed: int = 0, sharpen: bool = True,
                       att_context_size=ALL_CONTEXTS, offline: bool = False, eou: bool = False, **overrides):
    """A cache-aware (or, with ``offline=True``, full-context) FastConformer with random weights, in eval mode."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel, EncDecRNNTBPEModel

    from .models import quiet_nemo

    quiet_nemo()
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    layout = {**ARCHS[arch], **overrides}
    vocab = layout.pop("vocab")
    cfg = streaming_config(train_tokenizer(vocab, eou=eou), att_context_size=att_context_size, offline=offline, **layout)
    torch.manual_seed(seed)
    cls = EncDecHybridRNNTCTCBPEModel if layout["hybrid"] else EncDecRNNTBPEModel
    model = cls(cfg=cfg).eval()
    if sharpen:
        sharpen_joint(model)
        if eou:  # make the random decoder end utterances now and then
            eou_id = model.tokenizer.token_to_id("<EOU>")
            with torch.no_grad():
                model.joint.joint_net[-1].bias[eou_id] += 1.0
    return model


def calibrate_token_rate(model, audio, tokens_per_frame: float = 0.3, iterations: int = 12) -> float:
    """Shift the blank logit of a random-weight model until offline greedy decoding of ``audio`` (16 kHz float32)
    emits about ``tokens_per_frame`` tokens per encoder frame (English speech: ~0.3 per 80 ms frame), so that
    benchmarks pay a realistic decoder cost. Returns the rate reached."""
    import torch

    from .streaming.features import log_mel

    bias = model.joint.joint_net[-1].bias
    x = torch.from_numpy(audio)[None]

    def rate() -> float:
        with torch.inference_mode():
            feats, flen = log_mel(model.preprocessor, x, torch.tensor([x.shape[1]]))
            enc, enc_len = model.encoder(audio_signal=feats.to(bias.device, bias.dtype),
                                         length=flen.to(bias.device))
            hyps = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=enc_len,
                                                                  return_hypotheses=True)
        hyp = (hyps[0] if isinstance(hyps, tuple) else hyps)[0]
        return len(hyp.y_sequence) / max(int(enc_len[0]), 1)

    lo, hi = -50.0, 50.0  # added to the blank logit: higher = fewer tokens
    base = bias[-1].item()

    def set_shift(shift: float) -> None:
        with torch.no_grad():
            bias[-1] = base + shift

    def rate_at(shift: float) -> float:
        set_shift(shift)
        return rate()

    for _ in range(iterations):
        mid = (lo + hi) / 2
        if rate_at(mid) > tokens_per_frame:
            lo = mid
        else:
            hi = mid
    # A random joint sees nearly the same frames throughout, so its rate can jump across the target within one
    # step of the bias (or one bf16 rounding step): keep whichever side lands closer (as a ratio).
    r_lo, r_hi = rate_at(lo), rate_at(hi)
    closer_lo = r_hi <= 0 or r_lo / tokens_per_frame <= tokens_per_frame / r_hi
    set_shift(lo if closer_lo else hi)
    return r_lo if closer_lo else r_hi
