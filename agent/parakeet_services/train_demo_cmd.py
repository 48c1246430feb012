"""``parakeet-stream train-demo``: synthesize espeak-ng speech, train the demo model, evaluate it, write its card.

Arguments only here; the work lives in ``train_demo/`` and imports torch/NeMo when it runs. Re-running the same
command with the same ``--out`` reuses the data and resumes training from the last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

STAGES = ("synth", "train", "eval", "card")


def _stages(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; known: {', '.join(STAGES)}")
    return names


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-demo", help="train the bundled espeak-ng demo model (synthesize, train, evaluate, model card)",
        description="Synthesizes espeak-ng speech (held-out voices kept for the test set), trains the small "
                    "cache-aware FastConformer recipe with NeMo + Lightning (GPU when available), checkpoints and "
                    "resumes when re-run with the same --out, evaluates streamed (160 ms) and offline WER per "
                    "voice group through the engine, and writes OUT/MODEL_CARD.md next to OUT/model.nemo.")
    p.add_argument("--out", default="train-runs/espeak-demo-en", help="run directory (resumes when it exists)")
    p.add_argument("--data", default=None,
                   help="data directory (default OUT/data); pre-synthesized data there is used as is, so a host "
                        "without espeak-ng can train from data made elsewhere")
    p.add_argument("--stages", type=_stages, default=STAGES, help=f"comma list of {','.join(STAGES)}")
    p.add_argument("--n-train", type=int, default=16000, help="training utterances to synthesize")
    p.add_argument("--n-test", type=int, default=100, help="held-out sentences (each spoken once per voice group)")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="synthesis processes")
    p.add_argument("--seed", type=int, default=1234, help="data seed")
    p.add_argument("--pron-noise", type=float, default=0.0,
                   help="fraction of training utterances spoken with pronunciation noise (see "
                        "train_demo/pronunciation.py)")
    p.add_argument("--flite-share", type=float, default=None,
                   help="fraction of training utterances spoken by flite instead of espeak-ng (default: "
                        "voices.FLITE_SHARE, 0.3)")
    p.add_argument("--opus-share", type=float, default=None,
                   help="fraction of training files heard through Opus as a WebRTC call carries them (default: "
                        "synth.OPUS_SHARE, 0.25)")
    p.add_argument("--max-steps", type=int, default=5000, help="train until the global step reaches this")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this training session")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (32)")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers (default: 8 on GPU, 1 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--checkpoint-every-steps", type=int, default=500)
    p.add_argument("--checkpoint-every-min", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=25, help="progress line every N steps")
    p.add_argument("--eval-every-min", type=float, default=2.0,
                   help="offline WER of a few held-out-voice utterances during training (0: off)")
    p.add_argument("--eval-device", default="cpu",
                   help="device of the final evaluation through the engine (cpu: the device the model ships for)")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="final session: continue from OUT/model.nemo and decay the learning rate to the recipe's "
                        "floor over this many more steps (not resumable: re-run it from the model it wrote)")
    p.add_argument("--decay-lr", type=float, default=None, help="the decay session's starting lr (default: the "
                                                                  "recipe's)")
    p.add_argument("--init-from", default=None,
                   help="a fresh run starts from this .nemo's weights (same recipe; token pieces matched by name, "
                        "so a tokenizer with new pieces such as <EOU> is fine)")
    p.add_argument("--layers", type=int, default=None,
                   help="encoder layers (default: the run's, else the recipe's 4); more than the model a session "
                        "starts from (--init-from, or OUT/model.nemo with --decay-steps) adds layers on top that "
                        "start as near-identities")
    p.add_argument("--no-spec-augment", dest="spec_augment", action="store_false",
                   help="train this session without SpecAugment (the recipe's masks of mel channels and frames)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N test utterances")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .speech import SynthesizerMissingError
    from .train_demo import card, evaluate, synth, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out / "data"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if "synth" in args.stages:
        shares = {k: v for k, v in (("flite_share", args.flite_share), ("opus_share", args.opus_share))
                  if v is not None}
        if args.data and synth.has_data(data):
            log(f"data: using pre-synthesized {data}")
        else:
            try:
                synth.synthesize(data, args.n_train, args.n_test, procs=args.procs, seed=args.seed,
                                 pron_noise=args.pron_noise, log=log, **shares)
            except SynthesizerMissingError as e:
                log(f"error: {e}")
                return 2
    if not synth.has_data(data):
        log(f"error: no data in {data} (train_manifest.json, test_manifest.json); run the synth stage")
        return 2
    if "train" in args.stages:
        import torch

        workers = args.workers if args.workers is not None else (8 if torch.cuda.is_available()
                                                                  and args.device != "cpu" else 1)
        opts = train.TrainOptions(out=str(out), data=str(data), max_steps=args.max_steps, minutes=args.minutes,
                                  device=args.device, batch_size=args.batch_size, num_workers=workers,
                                  threads=args.threads, checkpoint_every_steps=args.checkpoint_every_steps,
                                  checkpoint_every_min=args.checkpoint_every_min, log_every_steps=args.log_every,
                                  eval_every_min=args.eval_every_min, decay_steps=args.decay_steps,
                                  decay_lr=args.decay_lr, init_from=args.init_from,
                                  spec_augment=args.spec_augment, layers=args.layers)
        result = train.train(opts, log=log)
        print(json.dumps(dict(stage="train", start_step=result.start_step, global_step=result.global_step,
                              resumed=result.resumed, seconds=round(result.seconds, 1), device=result.device,
                              stopped_by=result.stopped_by, model=result.model_path)), flush=True)
        if result.stopped_by == "interrupted":  # checkpoint saved; evaluating a half-run would only mislead
            return 1
    model_path = out / "model.nemo"
    if "eval" in args.stages:
        if not model_path.exists():
            log(f"error: no {model_path} to evaluate; run the train stage")
            return 2
        report = evaluate.evaluate(str(model_path), str(data), device=args.eval_device, limit=args.eval_limit,
                                   log=log)
        (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(dict(stage="eval", held_out=report["held_out"],
                              groups={g: s["wer_stream"] for g, s in report["groups"].items()})), flush=True)
    if "card" in args.stages:
        if not (out / "train_state.json").exists():
            log(f"error: no {out / 'train_state.json'}; run the train stage")
            return 2
        path = card.write_card(out, data)
        print(json.dumps(dict(stage="card", card=str(path))), flush=True)
    return 0


if __name__ == "__main__":  # `python -m parakeet_services.train_demo_cmd ...` (GPU hosts: no console script)
    parser = argparse.ArgumentParser(prog="parakeet-stream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["train-demo", *sys.argv[1:]])
    sys.exit(ns.run(ns))
