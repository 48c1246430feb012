"""Train the recipe with NeMo's model class and a Lightning Trainer: GPU when there is one, progress lines,
periodic checkpoints, and resume.

Everything lives in one ``--out`` directory; running the same command again continues where it stopped::

    OUT/tokenizer/               BPE trained on the training transcripts (kept: token ids must not change)
    OUT/train_bucketed.json      training manifest, duration-sorted groups of one batch, groups shuffled
    OUT/checkpoints/last.ckpt    Lightning checkpoint (weights, optimizer, scheduler, global step)
    OUT/train_state.json         recipe, options and one entry per training session (device, steps, seconds)
    OUT/curve.csv                step, loss, lr and (when enabled) offline WER on held-out voices
    OUT/model.nemo               the trained model, exported after each session
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from . import sentences as sentences_mod
from .recipe import EOU, Recipe, build_config, train_tokenizer, training_text
from .rnnt_loss import use_batched_rnnt_loss
from .synth import data_settings, load_manifest
from .voices import SEEN_GROUPS

TOKENIZER_MIN_LINES = 2000  # BPE 128 needs more text than a smoke run's handful of transcripts


@dataclass
class TrainOptions:
    out: str
    data: str
    max_steps: int = 5000  # stop when the global step reaches this (the schedule is the recipe's)
    minutes: float | None = None  # wall-clock budget of this session (training loop only)
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int | None = None  # None: the recipe's
    num_workers: int = 1
    threads: int | None = None  # torch CPU threads (None: torch's default)
    checkpoint_every_steps: int = 500
    checkpoint_every_min: float = 10.0
    log_every_steps: int = 25
    eval_every_min: float = 0.0  # offline WER of a few held-out-voice utterances during training; 0: off
    eval_utterances: int = 60
    seed: int = 0
    # A final session that anneals: start from OUT/model.nemo's weights (a fresh AdamW: the checkpoint may have
    # stayed on the GPU host) and take the learning rate from ``decay_lr`` down to the recipe's floor over
    # ``decay_steps`` more steps. The constant-rate phase learns fast; the decay is where WER settles.
    decay_steps: int | None = None
    decay_lr: float | None = None  # None: the recipe's lr
    # SpecAugment (the recipe's masks) in this session; off, the model hears every frame and channel. A session
    # records it, so the card's command repeats it.
    spec_augment: bool = True
    # A fresh run (no checkpoint yet) may start from another trained model's weights instead of random ones;
    # rows of the vocabulary-sized layers are matched by token piece, so the tokenizers may differ (a new piece
    # such as <EOU> starts from the blank's row, a little less likely).
    init_from: str | None = None
    # Encoder layers of the model (None: the run's, else the recipe's). More than the model this session starts
    # from has (``init_from``, or OUT/model.nemo in a decay session) grows it: the layers added on top start as
    # near-identities (``grow_layers``), so training continues from what the model already does.
    layers: int | None = None


@dataclass
class TrainResult:
    start_step: int
    global_step: int
    resumed: bool
    seconds: float
    device: str
    model_path: str | None
    stopped_by: str  # "max_steps" | "minutes" | "already_done" | "interrupted"


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_accelerator(device: str) -> str:
    import torch

    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device}: CUDA is not available")
        return "gpu"
    if device != "cpu":
        raise ValueError(f"unknown device {device!r}; accepted: auto, cpu, cuda")
    return "cpu"


def machine_description(accelerator: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(Exception):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    desc = f"{os.cpu_count()} CPU cores ({cpu})"
    if accelerator == "gpu":
        desc = f"1 x {torch.cuda.get_device_name(0)}, " + desc
    return desc + f", torch {torch.__version__}"


def bucketed_manifest(rows: list[dict], batch_size: int, path: Path, seed: int, recipe: Recipe = Recipe()) -> None:
    """Rows sorted by duration, cut into batch-size groups, groups shuffled: little padding per batch. Texts are
    those the model is trained to say (``recipe.training_text``)."""
    rows = sorted(rows, key=lambda r: r["duration"])
    groups = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    random.Random(seed).shuffle(groups)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for g in groups:
            for r in g:
                f.write(json.dumps(dict(audio_filepath=r["audio_filepath"], duration=r["duration"],
                                        text=training_text(r["text"], recipe, r.get("eou_after", ())))) + "\n")
    os.replace(tmp, path)


def tokenizer_texts(train_texts: list[str], test_texts: set[str], seed: int) -> list[str]:
    texts = list(train_texts)
    rng = random.Random(seed)
    while len(texts) < TOKENIZER_MIN_LINES:
        s = sentences_mod.sentence(rng)
        if s not in test_texts:
            texts.append(s)
    return texts


def last_checkpoint(out: str | os.PathLike) -> Path | None:
    p = Path(out) / "checkpoints" / "last.ckpt"
    return p if p.is_file() else None


def checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def read_state(out: str | os.PathLike) -> dict:
    p = Path(out) / "train_state.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def evaluate_offline(model, rows: list[dict], batch: int = 32) -> float:
    """Greedy RNNT WER (%) of ``rows`` decoded offline at the recipe's look-ahead; the model's mode is kept."""
    import numpy as np
    import soundfile as sf
    import torch

    from .evaluate import word_error_rate

    was_training = model.training
    model.eval()
    hyps: dict[int, str] = {}
    audio = [sf.read(r["audio_filepath"], dtype="float32")[0] for r in rows]
    order = np.argsort([len(a) for a in audio])
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            lens = torch.tensor([len(audio[j]) for j in idx])
            x = torch.zeros(len(idx), int(lens.max()))
            for k, j in enumerate(idx):
                x[k, :lens[k]] = torch.from_numpy(audio[j])
            f, fl = model.preprocessor(input_signal=x.to(dev), length=lens.to(dev))
            enc, el = model.encoder(audio_signal=f, length=fl)
            out = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=el,
                                                                 return_hypotheses=False)
            out = out[0] if isinstance(out, tuple) else out
            for k, j in enumerate(idx):
                h = out[k]
                hyps[int(j)] = " ".join((h.text if hasattr(h, "text") else h).replace(EOU, " ").split())
    if was_training:
        model.train()
    return 100.0 * word_error_rate([r["text"] for r in rows], [hyps[i] for i in range(len(rows))])


def in_training_eval_rows(test_rows: list[dict], n: int) -> list[dict]:
    """``n`` held-out-voice test utterances for the curve, an equal share from each held-out group (the first of
    each), so that a regression on any of them (the other accent, the other synthesizer) shows while training."""
    by_group: dict[str, list[dict]] = {}
    for r in test_rows:
        if r.get("group") not in SEEN_GROUPS:
            by_group.setdefault(r.get("group"), []).append(r)
    share = -(-n // max(1, len(by_group)))
    return [r for rows in by_group.values() for r in rows[:share]][:n]


def _progress_callback(opts: TrainOptions, start_step: int, eval_rows: list[dict], log: Callable[[str], None],
                       offset: int = 0):
    import lightning.pytorch as pl

    class TrainProgress(pl.Callback):
        """Progress lines, periodic checkpoints, the step/time budget, and a checkpoint on interruption."""

        def __init__(self):
            self.t0 = self.last_ckpt_t = self.last_eval_t = time.time()
            self.losses: list[float] = []
            self.audio_s = 0.0
            self.stopped_by = "max_steps"
            self.curve_path = Path(opts.out) / "curve.csv"
            new = not self.curve_path.exists()
            self.curve = open(self.curve_path, "a", newline="")
            self.writer = csv.writer(self.curve)
            if new:
                self.writer.writerow(["step", "session_seconds", "loss", "lr", "wer_offline"])

        def save(self, trainer):
            ckpt = Path(opts.out) / "checkpoints" / "last.ckpt"
            tmp = ckpt.with_name("last.ckpt.tmp")
            trainer.save_checkpoint(str(tmp))
            os.replace(tmp, ckpt)
            self.last_ckpt_t = time.time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = offset + trainer.global_step  # offset: steps of the run before a decay session
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss))
            self.audio_s += float(batch[1].sum()) / 16000.0
            now = time.time()
            done_steps = step - start_step
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            if step % opts.log_every_steps == 0 or step >= opts.max_steps:
                per_step = (now - self.t0) / max(done_steps, 1)
                recent = self.losses[-opts.log_every_steps:]
                log(f"step {step}/{opts.max_steps} loss {sum(recent) / len(recent):.3f} lr {lr:.2e} "
                    f"{per_step:.2f} s/step, {self.audio_s / max(now - self.t0, 1e-9):.0f}x real time, "
                    f"eta {per_step * (opts.max_steps - step) / 60:.1f} min")
            wer = ""
            if opts.eval_every_min > 0 and (now - self.last_eval_t) / 60 >= opts.eval_every_min and eval_rows:
                wer = round(evaluate_offline(pl_module, eval_rows), 2)
                self.last_eval_t = time.time()
                log(f"step {step}: offline WER {wer} % on {len(eval_rows)} held-out-voice utterances")
            self.writer.writerow([step, round(now - self.t0, 1), round(float(loss), 4), f"{lr:.3e}", wer])
            if step >= opts.max_steps:
                self.stopped_by = "max_steps"
                trainer.should_stop = True
            elif opts.minutes is not None and (now - self.t0) / 60 >= opts.minutes:
                self.stopped_by = "minutes"
                trainer.should_stop = True
            elif not offset and (step % opts.checkpoint_every_steps == 0
                  or (now - self.last_ckpt_t) / 60 >= opts.checkpoint_every_min):
                self.save(trainer)
                log(f"step {step}: checkpoint saved")

        def on_exception(self, trainer, pl_module, exception):
            self.stopped_by = "interrupted"
            if offset or trainer.global_step <= start_step:  # never replace a good checkpoint with an unrestored model
                return
            with contextlib.suppress(Exception):
                self.save(trainer)
                log(f"interrupted at step {trainer.global_step}: checkpoint saved; re-run the same command "
                    f"to resume")

        def on_train_end(self, trainer, pl_module):
            self.curve.close()

    return TrainProgress()


def _decay_schedule(cfg, recipe: Recipe, opts: TrainOptions) -> None:
    """The decay session's optimizer: a short warm-up (AdamW starts without moments) to ``decay_lr``, then a
    cosine to the recipe's floor over ``decay_steps`` (NeMo sizes the schedule by the trainer's max_steps)."""
    from omegaconf import open_dict

    lr = opts.decay_lr or recipe.lr
    with open_dict(cfg):
        cfg.optim.lr = lr
        cfg.optim.sched.warmup_steps = min(50, opts.decay_steps // 10)
        cfg.optim.sched.min_lr = recipe.lr * recipe.min_lr_ratio


def _tokenizer_from_nemo(path: Path, tok_dir: Path) -> None:
    """The tokenizer files saved inside a .nemo, in ``tok_dir`` (kept if it has one): a run directory brought
    back from a GPU host may hold only model.nemo, and the decay session must see the same token ids."""
    import tarfile

    if (tok_dir / "vocab.txt").exists():
        return
    tok_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            for suffix in ("tokenizer.model", "tokenizer.vocab", "vocab.txt"):  # saved as <hash>_<name>
                if member.name.endswith("_" + suffix):
                    (tok_dir / suffix).write_bytes(tar.extractfile(member).read())
    if not (tok_dir / "vocab.txt").exists():
        raise ValueError(f"{path} holds no SentencePiece tokenizer")


def _load_weights(model, path: Path, log: Callable[[str], None]) -> None:
    """Weights of a saved run (same recipe but perhaps fewer layers, same tokenizer directory) into a freshly
    built model."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel

    saved = EncDecHybridRNNTCTCBPEModel.restore_from(str(path), map_location="cpu")
    if saved.tokenizer.vocab != model.tokenizer.vocab:
        raise ValueError(f"{path} was trained with another tokenizer than {model.cfg.tokenizer.dir}")
    new_state, old_state = model.state_dict(), saved.state_dict()
    with torch.no_grad():
        for key, value in new_state.items():
            if key in old_state:
                value.copy_(old_state[key])
        _log_growth(grow_layers(new_state, old_state), path, log)
    model.load_state_dict(new_state)


# the last projection of each residual branch of a conformer layer: zeroed, the branch adds nothing
BRANCH_OUTPUTS = ("feed_forward1.linear2.", "self_attn.linear_out.", "conv.pointwise_conv2.", "feed_forward2.linear2.")


def encoder_layers(state: dict) -> int:
    return len({key.split(".")[2] for key in state if key.startswith("encoder.layers.")})


def grow_layers(new_state: dict, old_state: dict) -> int:
    """Make the encoder layers of ``new_state`` beyond those of ``old_state`` (already copied into it) start as
    near-identities, and return how many there are. Each conformer layer adds four residual branches to its input
    and ends with a LayerNorm: with the branches' last projections zeroed a new layer only normalises. So the old
    last layer's output LayerNorm moves to the new last layer and the layers from the old last on normalise
    without scale or shift: the input of the new last norm is then already normalised, and the model computes
    what the old one did (up to LayerNorm's epsilon). The new layers' other weights keep their random
    initialisation, so their branches learn from the first step."""
    old_n, new_n = encoder_layers(old_state), encoder_layers(new_state)
    if new_n <= old_n:
        return 0
    for key, value in new_state.items():
        parts = key.split(".", 3)
        if key.startswith("encoder.layers.") and int(parts[2]) >= old_n and parts[3].startswith(BRANCH_OUTPUTS):
            value.zero_()
    last = f"encoder.layers.{old_n - 1}.norm_out."
    for i in range(old_n - 1, new_n - 1):
        new_state[f"encoder.layers.{i}.norm_out.weight"].fill_(1.0)
        new_state[f"encoder.layers.{i}.norm_out.bias"].zero_()
    new_state[f"encoder.layers.{new_n - 1}.norm_out.weight"].copy_(old_state[last + "weight"])
    new_state[f"encoder.layers.{new_n - 1}.norm_out.bias"].copy_(old_state[last + "bias"])
    return new_n - old_n


def _log_growth(added: int, path: Path, log: Callable[[str], None]) -> None:
    if added:
        log(f"train: {added} encoder layers added on top of the {path.name}'s, starting as near-identities")


VOCAB_LAYERS = ("decoder.prediction.embed.", "joint.joint_net.2.", "ctc_decoder.decoder_layers.0.")


def _init_weights(model, path: Path, log: Callable[[str], None]) -> None:
    """Weights of the model at ``path`` into a freshly built ``model`` of the same recipe: the encoder as it is,
    the vocabulary-sized layers row by row for the pieces both tokenizers have (RNNT and CTC put the blank last)."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel

    saved = EncDecHybridRNNTCTCBPEModel.restore_from(str(path), map_location="cpu")
    old_pieces, new_pieces = list(saved.tokenizer.vocab), list(model.tokenizer.vocab)
    old_index = {p: i for i, p in enumerate(old_pieces)}
    source = [old_index.get(p, -1) for p in new_pieces] + [len(old_pieces)]  # the blank, last in both
    new_state, old_state = model.state_dict(), saved.state_dict()
    with torch.no_grad():
        for key, value in new_state.items():
            if key not in old_state:  # a layer the old model lacks (``grow_layers``)
                continue
            old = old_state[key]
            if key.startswith(VOCAB_LAYERS):
                rows = torch.stack([old[i] if i >= 0 else old[-1] for i in source])
                if key.endswith("bias"):
                    rows[[j for j, i in enumerate(source) if i < 0]] -= 3.0  # a new piece: rarer than blank
                value.copy_(rows)
            else:
                value.copy_(old)
        added = grow_layers(new_state, old_state)
    model.load_state_dict(new_state)
    _log_growth(added, path, log)
    new = [p for p, i in zip(new_pieces, source) if i < 0]
    log(f"train: initialised from {path} ({len(new_pieces) - len(new)} of {len(new_pieces)} pieces shared; "
        f"new: {', '.join(new) or 'none'})")


def _numpy_compat_for_numba_cuda() -> None:
    """NeMo's GPU RNNT loss is compiled by numba-cuda, whose import (0.30.4 and older) registers an overload of
    ``np.row_stack``; NumPy 2.4 removed that alias of ``vstack``, so on a CUDA host with a new NumPy the first
    training step fails with AttributeError. Restore the alias (same function) before numba-cuda is imported."""
    import numpy as np

    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def train(opts: TrainOptions, recipe: Recipe = Recipe(), log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or continue training) the recipe on ``opts.data`` into ``opts.out``; blocks for the whole run."""
    log = log or _log_default
    if not opts.spec_augment:
        recipe = dataclasses.replace(recipe, spec_augment=None)
    out = Path(opts.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    import torch

    threads_before = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _train(opts, recipe, log, out, t_start, accelerator=resolve_accelerator(opts.device))
    finally:  # the caller's process (a test session, an engine) keeps its own thread count
        torch.set_num_threads(threads_before)


def _with_layers(recipe: Recipe, opts: TrainOptions, state: dict, *, resuming: bool) -> Recipe:
    """The recipe with the run's encoder layers: those recorded, or ``opts.layers`` where a session asks for
    more (a fresh run, or a decay session, which grows OUT/model.nemo); never fewer, and not while resuming a
    checkpoint (its optimizer state is for the layers it has)."""
    recorded = state.get("recipe", {}).get("n_layers")
    layers = opts.layers or recorded or recipe.n_layers
    if recorded is not None and layers != recorded:
        if layers < recorded:
            raise ValueError(f"--layers {layers}: this run's model has {recorded} encoder layers; layers can be "
                             "added, not removed")
        if resuming:
            raise ValueError(f"--layers {layers}: the checkpoint being resumed has {recorded} encoder layers; grow "
                             "the model in a --decay-steps session (it starts from OUT/model.nemo)")
    return dataclasses.replace(recipe, n_layers=layers)


def _train(opts: TrainOptions, recipe: Recipe, log: Callable[[str], None], out: Path, t_start: float, *,
           accelerator: str) -> TrainResult:
    import torch

    state = read_state(out)
    decay = opts.decay_steps is not None
    if decay and not (out / "model.nemo").exists():
        raise FileNotFoundError(f"--decay-steps continues from {out / 'model.nemo'}, which does not exist")
    ckpt = None if decay else last_checkpoint(out)
    recipe = _with_layers(recipe, opts, state, resuming=ckpt is not None)
    start_step = int(state.get("global_step", 0)) if decay else checkpoint_step(ckpt) if ckpt else 0
    if decay:
        opts.max_steps = start_step + opts.decay_steps
    if ckpt and start_step >= opts.max_steps:
        log(f"train: {ckpt} is at step {start_step} >= --max-steps {opts.max_steps}; nothing to train")
        model_path = out / "model.nemo"
        return TrainResult(start_step, start_step, True, 0.0, accelerator, str(model_path) if model_path.exists()
                           else None, "already_done")

    train_rows = load_manifest(opts.data, "train")
    test_rows = load_manifest(opts.data, "test")
    bs = opts.batch_size or recipe.batch_size
    if decay:
        _tokenizer_from_nemo(out / "model.nemo", out / "tokenizer")
    tok_dir = train_tokenizer(tokenizer_texts([r["text"] for r in train_rows], {r["text"] for r in test_rows},
                                              opts.seed), str(out / "tokenizer"), recipe.vocab_size, recipe.eou)
    manifest = out / "train_bucketed.json"
    if not manifest.exists() or not ckpt:
        bucketed_manifest(train_rows, bs, manifest, opts.seed, recipe)
    cfg = build_config(recipe, tok_dir, str(manifest.resolve()), batch_size=bs, num_workers=opts.num_workers)
    if decay:
        _decay_schedule(cfg, recipe, opts)
    eval_rows = in_training_eval_rows(test_rows, opts.eval_utterances)

    import lightning.pytorch as pl
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel
    from parakeet_stream.models import quiet_nemo

    quiet_nemo()
    _numpy_compat_for_numba_cuda()
    torch.manual_seed(opts.seed + start_step)  # a resumed session does not replay the first session's dropout
    random.seed(opts.seed)
    progress = _progress_callback(opts, start_step, eval_rows, log, offset=start_step if decay else 0)
    trainer = pl.Trainer(accelerator=accelerator, devices=1,
                         max_steps=opts.decay_steps if decay else recipe.schedule_steps, max_epochs=-1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         gradient_clip_val=recipe.grad_clip, precision="32-true", callbacks=[progress],
                         log_every_n_steps=max(opts.log_every_steps, 1))
    with contextlib.redirect_stdout(sys.stderr):  # NeMo prints dataset summaries to stdout
        model = EncDecHybridRNNTCTCBPEModel(cfg=cfg, trainer=trainer)
        if accelerator == "cpu":  # NeMo's CPU RNNT loss is Python per lattice cell: ~8x slower steps
            use_batched_rnnt_loss(model)
        if decay:
            _load_weights(model, out / "model.nemo", log)
        elif opts.init_from and not ckpt:
            _init_weights(model, Path(opts.init_from), log)
    n_params = sum(p.numel() for p in model.parameters())
    machine = machine_description(accelerator)
    log(f"train: {n_params / 1e6:.2f} M params, {len(train_rows)} utterances "
        f"({sum(r['duration'] for r in train_rows) / 3600:.2f} h), batch {bs}, {accelerator} ({machine}); "
        + (f"decaying the lr from {cfg.optim.lr:.2e} over {opts.decay_steps} steps from model.nemo (step "
           f"{start_step})" if decay else f"resuming from step {start_step}" if ckpt
           else f"from the weights of {opts.init_from}" if opts.init_from else "from scratch")
        + f", target step {opts.max_steps}")
    state.setdefault("recipe", recipe.as_dict())
    state["recipe"]["n_layers"] = recipe.n_layers  # (a session may have grown the model)
    state.setdefault("sessions", [])
    state.update(num_params=n_params, train_utterances=len(train_rows), data=str(Path(opts.data).resolve()),
                 train_hours=round(sum(r["duration"] for r in train_rows) / 3600, 3), batch_size=bs)
    t_fit = time.time()
    try:
        trainer.fit(model, ckpt_path=str(ckpt) if ckpt else None)
    finally:
        seconds = time.time() - t_fit
        if not decay and progress.stopped_by != "interrupted" and trainer.global_step > start_step:
            progress.save(trainer)
        end_step = (start_step if decay else 0) + int(trainer.global_step)
        state["sessions"].append(dict(started=dt.datetime.fromtimestamp(t_start).isoformat(timespec="seconds"),
                                      accelerator=accelerator, machine=machine, from_step=start_step,
                                      to_step=end_step, seconds=round(seconds, 1),
                                      setup_seconds=round(t_fit - t_start, 1),
                                      audio_hours=round(progress.audio_s / 3600, 3), stopped_by=progress.stopped_by,
                                      options=asdict(opts), data_settings=data_settings(
                                          json.loads((Path(opts.data) / "data.json").read_text()))))
        state["global_step"] = end_step
        state["train_seconds"] = round(sum(s["seconds"] for s in state["sessions"]), 1)
        _write_json(out / "train_state.json", state)
    model_path = out / "model.nemo"
    model.cpu()
    model.save_to(str(model_path))
    log(f"train: step {end_step} after {seconds / 60:.1f} min ({progress.stopped_by}); "
        f"saved {model_path} ({model_path.stat().st_size / 1e6:.1f} MB)")
    return TrainResult(start_step, end_step, ckpt is not None or decay, seconds, accelerator,
                       str(model_path), progress.stopped_by)
