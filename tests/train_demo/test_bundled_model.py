"""The committed ``espeak-demo-en`` checkpoint hears held-out sentences spoken by held-out voices exactly as its
evaluation (``assets/espeak-demo-en.eval.json``, summarised in its model card) says.

A tenth of the held-out test set (every 10th utterance: 10 per voice group) is re-synthesized here from the
same per-utterance seeds and evaluated through the engine again: every streamed transcript must equal the
committed evaluation's (the reference text, or the recorded error) and the offline decode."""
from __future__ import annotations

import json

import pytest

from parakeet_stream.models import KNOWN_MODELS

MODEL = KNOWN_MODELS["espeak-demo-en"].local_path
EVAL = MODEL.with_name("espeak-demo-en.eval.json")
SUBSET = range(0, 300, 10)


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> tuple[dict, list[dict]]:
    from parakeet_services.train_demo import evaluate, sentences, synth

    committed = json.loads(EVAL.read_text())
    data = tmp_path_factory.mktemp("held-out")
    _, test_texts = sentences.split_sentences(committed["data"]["n_train"], committed["data"]["n_test"],
                                              seed=committed["data"]["seed"])
    jobs, groups = synth.make_test_jobs(test_texts, data / "test", version=committed["data"].get("version", 1))
    (data / "test").mkdir()
    with open(data / "test_manifest.json", "w") as f:
        for k in SUBSET:
            row = synth.synth_one(jobs[k])
            row.update(audio_filepath=f"test/{k:06d}.wav", group=groups[k])
            f.write(json.dumps(row) + "\n")
    (data / "train_manifest.json").write_text("")
    rows = synth.load_manifest(data, "test")
    return evaluate.evaluate(str(MODEL), str(data), device="cpu", log=lambda m: None), rows


def test_held_out_transcripts_equal_the_committed_evaluation(rerun):
    report, rows = rerun
    committed = {(r["text"], r["voice"]): r["stream"] for r in json.loads(EVAL.read_text())["results"]}
    assert len(committed) == 300
    expected = sorted((r["text"], r["voice"], committed[(r["text"], r["voice"])]) for r in rows)
    assert sorted((r["text"], r["voice"], r["stream"]) for r in report["results"]) == expected
    assert all(r["stream"] == r["offline"] for r in report["results"])
    assert [(g, s["utterances"]) for g, s in report["groups"].items()] == [
        ("seen-voices", 10), ("held-out-speaker", 10), ("held-out-accent", 10)]


def test_card_states_the_committed_wer_and_target():
    committed = json.loads(EVAL.read_text())
    card = MODEL.with_name("espeak-demo-en.MODEL_CARD.md").read_text()
    held = committed["held_out"]
    assert f"| **all held-out voices** | {held['utterances']} | {held['words']} | {held['wer_stream']} |" in card
    assert held["identical"] == held["utterances"] == 200
