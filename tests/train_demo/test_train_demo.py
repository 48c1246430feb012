"""``parakeet-stream train-demo``: data split, resume, evaluation per voice group, model card."""
from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import torch

from parakeet_services.train_demo import sentences, voices
from parakeet_services.train_demo.evaluate import word_error_rate


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_vocabulary_has_at_least_600_words():
    words = sentences.vocabulary(20000)
    assert len(words) >= 600
    assert {"monday", "december", "twenty", "first", "thirtieth", "thousand", "olivia", "thermostat",
            "unlock"} <= words


def test_numbers_dates_and_years_are_spelled_out():
    assert sentences.num2words(1234) == "one thousand two hundred thirty four"
    assert sentences.ordinal(21) == "twenty first"
    assert sentences.ordinal(30) == "thirtieth"
    assert sentences.year(1999) == "nineteen ninety nine"
    assert sentences.year(2007) == "two thousand seven"
    assert sentences.year(2024) == "twenty twenty four"
    assert sentences.year(1905) == "nineteen oh five"


def test_at_least_four_voices_are_held_out_and_none_can_be_drawn_for_training():
    held_out = {v for group in voices.HELD_OUT_VOICES.values() for v in group}
    assert len(held_out) >= 4
    assert held_out.isdisjoint(voices.TRAINING_VOICES)
    rng = random.Random(0)
    drawn = {voices.draw_delivery(rng, voices.TRAINING_VOICES).voice for _ in range(5000)}
    assert drawn == set(voices.TRAINING_VOICES)


def test_held_out_voices_never_appear_in_the_training_manifest(demo_run):
    train = _manifest(demo_run["data"] / "train_manifest.json")
    test = _manifest(demo_run["data"] / "test_manifest.json")
    held_out = {v for group in voices.HELD_OUT_VOICES.values() for v in group}
    assert len(train) == 8 and len(test) == 6
    assert all(voices.is_training_voice(r["voice"]) for r in train)
    assert {r["voice"] for r in train}.isdisjoint(held_out)
    assert {r["voice"] for r in test if r["group"] != voices.SEEN_GROUP} <= held_out
    # every held-out sentence is spoken once per group, and none of them is a training sentence
    assert sorted(r["group"] for r in test) == sorted(voices.GROUPS * 2)
    assert {r["text"] for r in test}.isdisjoint(r["text"] for r in train)
    assert all(not Path(r["audio_filepath"]).is_absolute() for r in train + test)


def test_second_run_resumes_from_the_last_checkpoint(demo_run):
    first, state = demo_run["first_state"], demo_run["state"]
    assert [(s["from_step"], s["to_step"], s["stopped_by"]) for s in first["sessions"]] == [(0, 2, "max_steps")]
    assert [(s["from_step"], s["to_step"], s["stopped_by"]) for s in state["sessions"]] == [
        (0, 2, "max_steps"), (2, 3, "max_steps")]
    assert state["global_step"] == 3
    before, after = demo_run["threads"]
    assert after == before  # --threads 1 applied to training only
    ckpt = torch.load(io.BytesIO(demo_run["second_ckpt"]), map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    first = torch.load(io.BytesIO(demo_run["first_ckpt"]), map_location="cpu", weights_only=False)
    assert first["global_step"] == 2
    # the scheduler continued the warm-up instead of restarting it
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 3
    with open(demo_run["out"] / "curve.csv") as f:
        rows = list(csv.DictReader(f))[:3]  # (the decay session appends more)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert rows[2]["wer_offline"] != "" and rows[0]["wer_offline"] == ""


def test_evaluation_reports_streamed_and_offline_wer_per_voice_group(demo_run):
    report = demo_run["report"]
    assert list(report["groups"]) == list(voices.GROUPS)
    for summary in report["groups"].values():
        assert summary["utterances"] == 2
        assert isinstance(summary["wer_stream"], float) and isinstance(summary["wer_offline"], float)
        assert 0 <= summary["identical"] <= 2
    assert report["held_out"]["utterances"] == 4
    assert report["chunk_ms"] == 160
    assert report["num_params"] == demo_run["state"]["num_params"]
    assert set(report["per_voice"]) <= {v for g in voices.HELD_OUT_VOICES.values() for v in g}


def test_model_card_names_machine_data_and_wer_per_group(demo_run):
    card = demo_run["card"]
    assert card.startswith("# Model card: espeak-demo-en\n")
    assert "- train: 8 utterances" in card
    assert "steps 0 -> 2" in card and "steps 2 -> 3" in card
    assert "CPU cores" in card
    for group in voices.GROUPS:
        assert f"| {group} | 2 |" in card
    assert "| **all held-out voices** | 4 |" in card
    assert "en-gb-x-gbcwmd" in card and "does NOT meet" in card
    assert ("  2. `parakeet-stream train-demo --out OUT --n-train 8 --n-test 2 --seed 1234 --stages synth,train "
            "--max-steps 3 --batch-size 4 --device cpu`") in card


def test_decay_session_continues_from_the_saved_model_and_anneals_the_learning_rate(demo_run):
    sessions = demo_run["decay_state"]["sessions"]
    assert [(s["from_step"], s["to_step"], s["stopped_by"]) for s in sessions] == [
        (0, 2, "max_steps"), (2, 3, "max_steps"), (3, 7, "max_steps")]
    assert demo_run["decay_state"]["global_step"] == 7
    with open(demo_run["out"] / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    # warm-up of max(0, 4 // 10) = 0 steps, then a cosine from 1e-3 to the recipe's floor 3e-3 * 0.02
    lrs = [float(r["lr"]) for r in rows[3:]]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == 6e-05
    assert not (demo_run["out"] / "checkpoints" / "last.ckpt").exists()  # a decay session is not resumable
    assert "steps 3 -> 7" in demo_run["decay_card"]
    card = demo_run["decay_card"]
    assert ("  3. `parakeet-stream train-demo --out OUT --n-train 8 --n-test 2 --seed 1234 --pron-noise 0.5 --stages "
            "synth,train --decay-steps 4 --decay-lr 0.001 --batch-size 4 --device cpu`") in card
    # the earlier sessions trained on the clean data, and their commands say so
    assert ("  2. `parakeet-stream train-demo --out OUT --n-train 8 --n-test 2 --seed 1234 --stages synth,train "
            "--max-steps 3 --batch-size 4 --device cpu`") in card
    noisy = [json.loads(line) for line in (demo_run["pn_data"] / "train_manifest.json").read_text().splitlines()]
    clean = [json.loads(line) for line in (demo_run["data"] / "train_manifest.json").read_text().splitlines()]
    assert [r["text"] for r in noisy] == [r["text"] for r in clean]
    n_noisy = sum("phonemes_changed" in r for r in noisy)
    assert 0 < n_noisy < 8
    assert (f"- pronunciation noise (`--pron-noise 0.5`, train_demo/pronunciation.py; session 3): {n_noisy} of the "
            f"training utterances spoken from espeak-ng's phonemes with each vowel swapped for another with p=0.15 "
            f"and each consonant dropped with p=0.04, transcript unchanged") in card
    # the test set never gets noise: it is the same audio
    assert (demo_run["pn_data"] / "test_manifest.json").read_text() == \
        (demo_run["data"] / "test_manifest.json").read_text()


def test_sessions_recorded_before_pronunciation_noise_existed_reproduce_without_it():
    from parakeet_services.train_demo.card import session_data

    old = dict(options=dict(data="/gone/data", max_steps=20000))
    assert session_data(old, dict(n_train=16000, n_test=100, seed=1234, pron_noise=0.5)) == dict(
        n_train=16000, n_test=100, seed=1234, pron_noise=0.0)


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert word_error_rate(["a b c"], ["a x c d"]) == 2 / 3
    assert word_error_rate(["a b", "c"], ["a b", ""]) == 1 / 3
    assert word_error_rate(["one two"], ["one two"]) == 0.0
