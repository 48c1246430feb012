"""The committed ``espeak-demo-en`` checkpoint hears held-out sentences spoken by held-out voices exactly as its
evaluation (``assets/espeak-demo-en.eval.json``, summarised in its model card) says.

A tenth of the held-out test set (every 10th utterance: 10 per voice group) is re-synthesized here from the
same per-utterance seeds and evaluated through the engine again: every streamed transcript must equal the
committed evaluation's (the reference text, or the recorded error) and the offline decode, and the model's ``<EOU>``
must end each one where the committed evaluation says (its finals and latency)."""
from __future__ import annotations

import json

import pytest

from parakeet_services.train_demo import voices
from parakeet_stream.models import KNOWN_MODELS

MODEL = KNOWN_MODELS["espeak-demo-en"].local_path
EVAL = MODEL.with_name("espeak-demo-en.eval.json")
COMMITTED = json.loads(EVAL.read_text())
GROUPS = list(COMMITTED["groups"])  # as the data version it was evaluated on has them
SUBSET = range(0, COMMITTED["data"]["n_test"] * len(GROUPS), 10)


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> tuple[dict, list[dict]]:
    from parakeet_services.train_demo import evaluate, sentences, synth

    committed = COMMITTED
    data = tmp_path_factory.mktemp("held-out")
    _, test_texts = sentences.split_sentences(committed["data"]["n_train"], committed["data"]["n_test"],
                                              seed=committed["data"]["seed"])
    # the data versions whose test set make_test_jobs makes (version 5 added two groups after the others; 6 kept 5's)
    assert committed["data"]["version"] in (2, 3, 5, 6)
    jobs, groups = synth.make_test_jobs(test_texts, data / "test")
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
    assert len(committed) == len(SUBSET) * 10
    expected = sorted((r["text"], r["voice"], committed[(r["text"], r["voice"])]) for r in rows)
    assert sorted((r["text"], r["voice"], r["stream"]) for r in report["results"]) == expected
    assert all(r["stream"] == r["offline"] for r in report["results"])
    assert [(g, s["utterances"]) for g, s in report["groups"].items()] == [(g, 10) for g in GROUPS]


def test_the_models_eou_ends_each_utterance_as_committed(rerun):
    report, rows = rerun
    committed = {(r["text"], r["voice"]): r["eou"] for r in json.loads(EVAL.read_text())["results"]}
    as_saved = lambda eou: json.loads(json.dumps(eou))  # noqa: E731 (tuples become lists, as in the file)
    assert sorted((r["text"], r["voice"], as_saved(r["eou"])) for r in report["results"]) == sorted(
        (r["text"], r["voice"], committed[(r["text"], r["voice"])]) for r in rows)


def test_card_states_the_committed_wer_and_target():
    committed = json.loads(EVAL.read_text())
    card = MODEL.with_name("espeak-demo-en.MODEL_CARD.md").read_text()
    held = committed["held_out"]
    assert f"| **all held-out voices** | {held['utterances']} | {held['words']} | {held['wer_stream']} |" in card
    n = len(committed["results"])  # every test utterance: 100 sentences x the groups of its data version
    assert held["identical"] == held["utterances"] == n - 100 * sum(g in voices.SEEN_GROUPS for g in GROUPS)
    eou = committed["eou"]["all"]
    assert (eou["utterances"], eou["cut_mid_sentence"]) == (n, 0)
    assert eou["ended_by_eou"] + eou["never_ended"] == n and eou["latency_ms_p50"] <= 300
    assert (f"| all | {n} | {eou['ended_by_eou']} | {eou['latency_ms_p50']} | {eou['latency_ms_p90']} | 0 | "
            f"{eou['never_ended']} |") in card
