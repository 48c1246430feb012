"""One tiny end-to-end ``train-demo`` run shared by the tests of this package (about 30 s of CPU).

It synthesizes 8 training and 2 x 5 test utterances, trains 2 steps, then runs the same command again with
``--max-steps 3`` from the pre-synthesized data and no espeak-ng on PATH: that run must resume at step 2.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

SMOKE_ARGS = ["--n-train", "8", "--n-test", "2", "--procs", "2", "--batch-size", "4", "--workers", "0",
              "--threads", "1", "--device", "cpu", "--log-every", "1", "--eval-every-min", "0"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict:
    import torch

    from parakeet_services.cli import main

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("train-demo") / "run"
    assert main(["train-demo", "--out", str(out), *SMOKE_ARGS, "--max-steps", "2"]) == 0
    first_state = json.loads((out / "train_state.json").read_text())
    first_ckpt = (out / "checkpoints" / "last.ckpt").read_bytes()
    # the second run: data made elsewhere (here: by the first run), a host without espeak-ng
    no_espeak = tmp_path_factory.mktemp("bin")
    os.symlink(shutil.which("python3") or "/usr/bin/python3", no_espeak / "python3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(no_espeak))
        assert shutil.which("espeak-ng") is None
        rc = main(["train-demo", "--out", str(out), "--data", str(out / "data"), *SMOKE_ARGS, "--max-steps", "3",
                   "--eval-every-min", "0.000001"])
    assert rc == 0
    run = dict(out=out, data=out / "data", first_state=first_state, first_ckpt=first_ckpt,
               state=json.loads((out / "train_state.json").read_text()),
               report=json.loads((out / "eval.json").read_text()),
               card=(out / "MODEL_CARD.md").read_text(), threads=(threads, torch.get_num_threads()))
    run["second_ckpt"] = (out / "checkpoints" / "last.ckpt").read_bytes()
    run["second_model"] = (out / "model.nemo").read_bytes()
    # the third: a decay session from model.nemo alone, as after a GPU run whose checkpoint stayed on the host,
    # on new data: the same sentences, half of the training ones with pronunciation noise; without SpecAugment
    shutil.rmtree(out / "checkpoints")
    shutil.rmtree(out / "tokenizer")
    assert main(["train-demo", "--out", str(out), "--data", str(out / "data-pn"), *SMOKE_ARGS, "--stages",
                 "synth,train,card", "--pron-noise", "0.5", "--decay-steps", "4", "--decay-lr", "0.001",
                 "--no-spec-augment"]) == 0
    run.update(decay_state=json.loads((out / "train_state.json").read_text()), pn_data=out / "data-pn",
               decay_card=(out / "MODEL_CARD.md").read_text())
    return run

