"""``parakeet-stream train-demo``: data split, resume, evaluation per voice group, model card."""
from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from parakeet_services.train_demo import sentences, voices
from parakeet_services.train_demo.evaluate import word_error_rate


def _saved_config(nemo_path: Path) -> dict:
    import tarfile

    import yaml

    with tarfile.open(nemo_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_config.yaml"))
        return yaml.safe_load(tar.extractfile(member).read())


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
    drawn = {voices.draw_delivery(rng, voices.TRAINING_VOICES).voice for _ in range(20000)}
    assert drawn == set(voices.TRAINING_VOICES)


def test_every_held_out_variant_is_tested_and_none_of_its_family_is_missing_from_training():
    tested = {voices.split_voice(v)[1] for g in voices.HELD_OUT_VOICES.values() for v in g}
    assert set(voices.HELD_OUT_VARIANTS) <= tested
    assert len(voices.TRAIN_VARIANTS) == 1 + len(voices.ALL_VARIANTS) - len(voices.HELD_OUT_VARIANTS) == 86
    # klatt is held out, the rest of its family trains: the test hears a new member of a known family
    assert "+klatt" not in voices.TRAIN_VARIANTS and "+klatt2" in voices.TRAIN_VARIANTS
    assert {voices.split_voice(v)[0] for v in voices.HELD_OUT_VOICES["held-out-variant"]} == set(
        voices.TRAIN_ACCENTS)


def test_flite_voices_are_split_into_training_and_held_out_ones():
    assert voices.is_training_voice("flite:rms") and not voices.is_training_voice("flite:awb")
    assert voices.HELD_OUT_VOICES["held-out-flite"] == ("flite:awb",)
    delivery = voices.Delivery("flite:slt", speed=250, pitch=80, gap=0)
    assert delivery.flite_settings() == dict(voice="slt", stretch=0.7, f0=170.0 * 2 ** 0.5)


def test_flite_speech_is_16_khz_whatever_the_voice_and_stretches_with_the_delivery():
    from parakeet_services.speech import flite

    kal = flite("turn on the radio", "kal")  # flite's kal speaks at 8 kHz
    kal16 = flite("turn on the radio", "kal16")
    slow = flite("turn on the radio", "kal16", stretch=1.5)
    assert kal.dtype == kal16.dtype == np.float32
    assert abs(kal.shape[0] - kal16.shape[0]) < 0.02 * kal16.shape[0]  # the same diphones, resampled
    assert 1.3 < slow.shape[0] / kal16.shape[0] < 1.6


def test_held_out_voices_never_appear_in_the_training_manifest(demo_run):
    train = _manifest(demo_run["data"] / "train_manifest.json")
    test = _manifest(demo_run["data"] / "test_manifest.json")
    held_out = {v for group in voices.HELD_OUT_VOICES.values() for v in group}
    assert len(train) == 8 and len(test) == 10
    assert all(voices.is_training_voice(r["voice"]) for r in train)
    assert {r["voice"] for r in train}.isdisjoint(held_out)
    assert {r["voice"] for r in test if r["group"] not in voices.SEEN_GROUPS} <= held_out
    assert {r["voice"] for r in test if r["group"] == voices.SEEN_FLITE_GROUP} == {"flite:kal", "flite:kal16"}
    # every held-out sentence is spoken once per group, and none of them is a training sentence
    assert sorted(r["group"] for r in test) == sorted(voices.GROUPS * 2)
    assert {r["text"] for r in test}.isdisjoint(r["text"] for r in train)
    assert all(not Path(r["audio_filepath"]).is_absolute() for r in train + test)
    # where the words end: after the leading silence (50-400 ms), before the trailing one
    assert all(0.05 < r["speech_end"] <= r["duration"] - 0.05 for r in train + test)
    # data.json counts the Opus-coded training files; no test file is coded
    made = json.loads((demo_run["data"] / "data.json").read_text())
    assert made["train"]["opus"] == sum("opus_bitrate" in r for r in train)
    assert not any("opus_bitrate" in r for r in test)


def test_the_model_is_trained_to_end_every_utterance_with_eou(demo_run):
    from parakeet_services.train_demo.recipe import Recipe, training_text

    bucketed = _manifest(demo_run["out"] / "train_bucketed.json")
    train = _manifest(demo_run["data"] / "train_manifest.json")
    # a file holding two sentences ends the first with <EOU> too (training_text's own test)
    said = [training_text(r["text"], Recipe(), r.get("eou_after", ())) for r in train]
    assert all(t.endswith("<EOU>") for t in said)
    assert sorted(r["text"] for r in bucketed) == sorted(said)
    pieces = (demo_run["out"] / "tokenizer" / "vocab.txt").read_text().split("\n")
    assert pieces[1] == "<EOU>"  # one piece of its own, right after <unk>


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
    assert report["held_out"]["utterances"] == 6  # (the seen-voices groups are not held out)
    assert report["chunk_ms"] == 160
    assert report["num_params"] == demo_run["state"]["num_params"]
    assert set(report["per_voice"]) <= {v for g in voices.HELD_OUT_VOICES.values() for v in g}
    # the model has an <EOU> piece, so each utterance was streamed once more with EOU endpointing
    eou = report["eou"]
    assert list(eou) == [*voices.GROUPS, "all"]
    assert eou["all"]["utterances"] == 10
    assert eou["all"]["ended_by_eou"] + eou["all"]["never_ended"] == 10
    assert all(set(r["eou"]) == {"finals", "latency", "cut"} for r in report["results"])


def test_model_card_names_machine_data_and_wer_per_group(demo_run):
    card = demo_run["card"]
    assert card.startswith("# Model card: espeak-demo-en\n")
    assert "- train: 8 utterances" in card
    assert "steps 0 -> 2" in card and "steps 2 -> 3" in card
    assert "CPU cores" in card
    for group in voices.GROUPS:
        assert f"| {group} | 2 |" in card
    assert "| **all held-out voices** | 6 |" in card
    assert "en-gb-x-gbcwmd" in card and "does NOT meet" in card
    opus = json.loads((demo_run["data"] / "data.json").read_text())["train"]["opus"]
    assert opus == 3  # of the 8 training files: the draws of seed 1234 (a share of 0.25)
    assert ("- 3 training files (a share of 0.25) heard through Opus as a WebRTC call carries them: resampled to "
            "48 kHz, coded in 20 ms frames at 12/16/24/32 kbit/s (libopus, VoIP mode), decoded") in card
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
            "synth,train --decay-steps 4 --decay-lr 0.001 --batch-size 4 --no-spec-augment --device cpu`") in card
    assert [s["options"]["spec_augment"] for s in sessions] == [True, True, False]
    # the decay session's model was built without SpecAugment (an empty section of NeMo's config), the sessions
    # before it with the recipe's
    assert _saved_config(demo_run["out"] / "model.nemo")["spec_augment"] is None
    (demo_run["out"] / "second.nemo").write_bytes(demo_run["second_model"])
    assert _saved_config(demo_run["out"] / "second.nemo")["spec_augment"] == dict(
        _target_="nemo.collections.asr.modules.SpectrogramAugmentation", freq_masks=2, freq_width=20, time_masks=5,
        time_width=0.05)
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
        n_train=16000, n_test=100, seed=1234, pron_noise=0.0, version=1, flite_share=0.0, opus_share=0.0)


def test_data_made_before_the_shares_were_settings_has_its_versions_shares():
    from parakeet_services.train_demo.card import session_command
    from parakeet_services.train_demo.synth import data_settings

    made = dict(n_train=16000, n_test=100, seed=1234, pron_noise=0.5)
    assert data_settings({**made, "version": 3}) == {**made, "version": 3, "flite_share": 0.0, "opus_share": 0.0}
    assert data_settings({**made, "version": 5}) == {**made, "version": 5, "flite_share": 0.3, "opus_share": 0.0}
    assert data_settings({**made, "version": 6}) == {**made, "version": 6, "flite_share": 0.3, "opus_share": 0.25}
    # version 3's data is re-made by today's code with both shares at 0
    assert session_command(dict(max_steps=20000, device="cpu"), data_settings({**made, "version": 3})) == (
        "parakeet-stream train-demo --out OUT --n-train 16000 --n-test 100 --seed 1234 --pron-noise 0.5 "
        "--flite-share 0.0 --opus-share 0.0 --stages synth,train --max-steps 20000 --device cpu")


def test_eou_summary_counts_latency_cuts_and_utterances_never_ended():
    from parakeet_services.train_demo.evaluate import EouResult, eou_summary

    results = [EouResult(("set an alarm",), 0.2, False), EouResult(("set an alarm",), 0.4, False),
               EouResult(("set an", "alarm"), 0.1, True), EouResult(("set an alarm",), None, False)]
    assert eou_summary(results) == dict(utterances=4, ended_by_eou=3, latency_ms_p50=200, latency_ms_p90=360,
                                        cut_mid_sentence=1, never_ended=1)


def test_noise_tail_is_as_loud_as_the_leading_silence():
    import numpy as np

    from parakeet_services.train_demo.evaluate import with_noise_tail

    x = np.concatenate([np.full(800, 0.01, np.float32), np.ones(1600, np.float32)])
    y = with_noise_tail(x, 0.5)
    assert len(y) == 2400 + 8000 and np.array_equal(y[:2400], x)
    assert abs(float(np.sqrt(np.mean(y[2400:] ** 2))) - 0.01) < 0.001


def test_eou_ends_each_utterance_of_a_training_file():
    from parakeet_services.train_demo.recipe import Recipe, training_text

    assert training_text("call me at seven", Recipe()) == "call me at seven<EOU>"
    assert training_text("set a timer call me", Recipe(), [3]) == "set a timer<EOU> call me<EOU>"
    assert training_text("set a timer", Recipe(eou=False), [1]) == "set a timer"


def test_a_joined_training_file_speaks_two_sentences_with_a_pause(tmp_path):
    """Data version 3: the model hears speech after an utterance's end, so it learns to go on after <EOU>."""
    import soundfile as sf

    from parakeet_services.train_demo import synth

    one = synth.SynthJob(0, "set a timer", 7, str(tmp_path / "a.wav"), ("en-us",))
    two = synth.SynthJob(1, "set a timer", 7, str(tmp_path / "b.wav"), ("en-us",), follow="call me")
    a, b = synth.synth_one(one), synth.synth_one(two)
    assert (a["text"], "eou_after" in a) == ("set a timer", False)
    assert (b["text"], b["eou_after"]) == ("set a timer call me", [3])
    assert a["voice"] == b["voice"] and a["speed"] == b["speed"]
    extra = b["duration"] - a["duration"]
    assert synth.PAUSE_S[0] + 0.3 < extra < synth.PAUSE_S[1] + 1.5  # the pause, then "call me"
    assert abs(len(sf.read(two.wav_path)[0]) / 16000 - b["duration"]) < 0.001


def test_augmentation_pads_speech_and_leaves_some_utterances_in_digital_silence():
    """Test audio and synthesized prompts end in exact zeros: the model must hear utterances end there too."""
    import numpy as np

    from parakeet_services.train_demo.synth import augment

    speech = np.sin(np.arange(16000) / 5.0).astype(np.float32) * 0.5
    silent_tails = 0
    for seed in range(200):
        aug = augment(speech, np.random.default_rng(seed))
        lead = len(aug.audio) - 16000
        assert 0.05 * 16000 * 2 <= lead <= 0.4 * 16000 * 2 + 2
        assert 1.05 <= aug.speech_end <= 1.4 + 0.001
        assert float(np.abs(aug.audio).max()) <= 10 ** (-0.5 / 20) + 0.1
        silent_tails += not np.any(aug.audio[-400:])
    assert 8 <= silent_tails <= 35  # one in ten; a reverberant tail can still ring into the last 25 ms

def test_opus_round_trip_codes_speech_as_webrtc_carries_it_aligned_and_of_the_same_length():
    """A share of the training files (data version 6) is heard through Opus, as a LiveKit call carries it: the
    coded audio keeps its length and timing (``speech_end`` stays true) but is not the PCM that went in."""
    import numpy as np

    from parakeet_services.train_demo import synth
    from parakeet_services.speech import espeak

    x = np.concatenate([np.zeros(4000, np.float32), espeak("send a message to anna", "en-us", 160)])
    for bitrate in synth.OPUS_BITRATES:
        y = synth.opus_round_trip(x, bitrate)
        assert (y.dtype, len(y)) == (np.float32, len(x))
        lags = np.arange(-40, 41)
        corr = [float(np.dot(x[40:-40], y[40 + k: len(y) - 40 + k])) for k in lags]
        # aligned within a sample (62.5 us): libopus's look-ahead is taken off (SILK's own filters add ~3 samples
        # at 48 kHz in VoIP mode; without the correction the peak would be 6.5 ms, 104 samples, late)
        assert abs(lags[int(np.argmax(corr))]) <= 1
        err = float(np.sum((y - x) ** 2) / np.sum(x ** 2))
        assert 1e-4 < err < 0.5, bitrate  # lossy, but the same speech
    quiet = synth.opus_round_trip(np.zeros(8000, np.float32), 12_000)
    assert 0 < float(np.abs(quiet).max()) < 1e-3  # silence comes back as the codec's faint noise, below -60 dBFS


def test_a_training_file_is_opus_coded_only_when_drawn_and_says_at_which_bitrate(tmp_path):
    """Test files (``opus=0``) draw nothing more, so the test set stays data version 5's file for file."""
    import soundfile as sf

    from parakeet_services.train_demo import synth

    plain = synth.synth_one(synth.SynthJob(0, "set a timer", 7, str(tmp_path / "a.wav"), ("en-us",)))
    coded = synth.synth_one(synth.SynthJob(0, "set a timer", 7, str(tmp_path / "b.wav"), ("en-us",), opus=1.0))
    assert "opus_bitrate" not in plain and coded["opus_bitrate"] in synth.OPUS_BITRATES
    assert {k: v for k, v in coded.items() if k != "opus_bitrate"} == plain
    a, b = sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0]
    assert len(a) == len(b) and not (a == b).all()


def test_the_shares_of_flite_voices_and_opus_coding_are_settings_of_the_data(tmp_path):
    """``--flite-share 0 --opus-share 0`` makes espeak-ng-only, uncoded training data (as data version 3 was) with
    the same test set and the same first training sentences as the default shares; data.json records them."""
    from parakeet_services.train_demo import synth

    plain = synth.synthesize(tmp_path / "plain", n_train=12, n_test=1, procs=1, log=lambda m: None,
                             flite_share=0.0, opus_share=0.0)
    assert (plain["flite_share"], plain["opus_share"]) == (0.0, 0.0)
    assert (plain["train"]["flite"], plain["train"]["opus"]) == (0, 0)
    rows = synth.load_manifest(tmp_path / "plain", "train")
    assert not any(voices.is_flite(r["voice"]) for r in rows)
    every = synth.synthesize(tmp_path / "every", n_train=12, n_test=1, procs=1, log=lambda m: None,
                             flite_share=1.0, opus_share=1.0)
    assert (every["train"]["flite"], every["train"]["opus"]) == (12, 12)
    assert [r["text"] for r in synth.load_manifest(tmp_path / "every", "train")] == [r["text"] for r in rows]
    assert (tmp_path / "every" / "test_manifest.json").read_text() == \
        (tmp_path / "plain" / "test_manifest.json").read_text()
    assert synth.data_settings(json.loads((tmp_path / "plain" / "data.json").read_text()))["flite_share"] == 0.0


def test_without_pyav_no_training_file_is_opus_coded_and_the_log_says_so(tmp_path, monkeypatch):
    """A GPU host given only the training wheels lacks PyAV: it still synthesizes, and says what it left out."""
    from parakeet_services.train_demo import synth

    monkeypatch.setattr(synth, "opus_available", lambda: False)
    lines: list[str] = []
    made = synth.synthesize(tmp_path / "data", n_train=6, n_test=1, procs=1, log=lines.append)
    assert made["train"]["opus"] == 0
    assert ("data: PyAV (pip install av) is missing: no training file is Opus-coded (data.json records how many "
            "are)") in lines


def test_a_new_model_starts_from_a_trained_one_matching_token_pieces(tmp_path):
    """``--init-from``: the encoder is copied as it is; vocabulary rows follow their piece to its new id, and a
    piece the old tokenizer lacks (<EOU>) starts from the blank's row, its bias 3 lower."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel

    from parakeet_services.train_demo import train
    from parakeet_services.train_demo.recipe import Recipe, build_config, train_tokenizer
    texts, _ = sentences.split_sentences(3000, 10, seed=3)
    manifest = tmp_path / "m.json"
    manifest.write_text("")
    # a model of the recipe whose tokenizer has no <EOU> (as the first demo model had), saved as a .nemo
    source_path = tmp_path / "source.nemo"
    EncDecHybridRNNTCTCBPEModel(cfg=build_config(Recipe(), train_tokenizer(texts, str(tmp_path / "source-tok"), 128),
                                                 str(manifest))).save_to(str(source_path))
    tok = train_tokenizer(texts, str(tmp_path / "tok"), 128, eou=True)
    model = EncDecHybridRNNTCTCBPEModel(cfg=build_config(Recipe(), tok, str(manifest)))
    lines: list[str] = []
    train._init_weights(model, source_path, lines.append)
    source = EncDecHybridRNNTCTCBPEModel.restore_from(str(source_path), map_location="cpu")
    old, new = source.state_dict(), model.state_dict()
    key = "encoder.layers.3.self_attn.linear_q.weight"
    assert torch.equal(new[key], old[key])
    old_ids = {p: i for i, p in enumerate(source.tokenizer.vocab)}
    eou = model.tokenizer.vocab.index("<EOU>")
    w, b = new["joint.joint_net.2.weight"], new["joint.joint_net.2.bias"]
    for i, piece in enumerate(model.tokenizer.vocab):
        if piece in old_ids:
            assert torch.equal(w[i], old["joint.joint_net.2.weight"][old_ids[piece]])
            assert torch.equal(new["ctc_decoder.decoder_layers.0.bias"][i],
                               old["ctc_decoder.decoder_layers.0.bias"][old_ids[piece]])
    assert torch.equal(w[eou], old["joint.joint_net.2.weight"][-1])
    assert torch.equal(b[eou], old["joint.joint_net.2.bias"][-1] - 3.0)
    assert torch.equal(w[-1], old["joint.joint_net.2.weight"][-1])  # the blank stays last
    shared = sum(p in old_ids for p in model.tokenizer.vocab)
    assert lines[0].startswith(f"train: initialised from {source_path} ({shared} of 128 pieces shared; new: <EOU>")


def test_a_model_grown_by_two_layers_computes_what_it_did(tmp_path):
    """``--layers``: layers added on top of a trained model start as near-identities (their residual branches'
    last projections zeroed, the old last LayerNorm moved to the new last layer), so the grown encoder gives the
    old one's output; the new layers' other weights are random, so they learn from the first step."""
    import dataclasses

    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel

    from parakeet_services.train_demo import train
    from parakeet_services.train_demo.recipe import Recipe, build_config, train_tokenizer
    texts, _ = sentences.split_sentences(3000, 10, seed=3)
    manifest = tmp_path / "m.json"
    manifest.write_text("")
    tok = train_tokenizer(texts, str(tmp_path / "tok"), 128, eou=True)
    torch.manual_seed(0)
    source = EncDecHybridRNNTCTCBPEModel(cfg=build_config(Recipe(), tok, str(manifest))).eval()
    with torch.no_grad():  # a trained model's last LayerNorm is not the identity
        source.encoder.layers[3].norm_out.weight.uniform_(0.5, 1.5)
        source.encoder.layers[3].norm_out.bias.uniform_(-0.5, 0.5)
    source_path = tmp_path / "source.nemo"
    source.save_to(str(source_path))
    grown = EncDecHybridRNNTCTCBPEModel(cfg=build_config(dataclasses.replace(Recipe(), n_layers=6), tok,
                                                         str(manifest))).eval()
    lines: list[str] = []
    train._init_weights(grown, source_path, lines.append)
    assert lines[0] == "train: 2 encoder layers added on top of the source.nemo's, starting as near-identities"
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 32000)).astype(np.float32))
    lengths = torch.tensor([32000, 24000])
    outputs = []
    with torch.no_grad():
        for m in (source, grown):
            features, n = m.preprocessor(input_signal=audio, length=lengths)
            outputs.append(m.encoder(audio_signal=features, length=n)[0])
    assert outputs[0].shape == outputs[1].shape
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-4 * outputs[0].abs().max().item()
    state = grown.state_dict()
    assert not state["encoder.layers.5.self_attn.linear_out.weight"].any()
    assert not state["encoder.layers.4.feed_forward2.linear2.bias"].any()
    assert state["encoder.layers.5.self_attn.linear_q.weight"].abs().sum() > 0
    assert torch.equal(state["encoder.layers.5.norm_out.weight"], source.encoder.layers[3].norm_out.weight)
    assert torch.equal(state["encoder.layers.3.norm_out.weight"], torch.ones(144))


def test_layers_can_be_added_to_a_run_but_not_removed_or_added_to_a_checkpoint_being_resumed():
    import pytest

    from parakeet_services.train_demo import train
    from parakeet_services.train_demo.recipe import Recipe

    state = {"recipe": Recipe().as_dict()}
    opts = train.TrainOptions(out="o", data="d", layers=6)
    assert train._with_layers(Recipe(), opts, state, resuming=False).n_layers == 6
    assert train._with_layers(Recipe(), train.TrainOptions(out="o", data="d"), {}, resuming=False).n_layers == 4
    state6 = {"recipe": {**Recipe().as_dict(), "n_layers": 6}}  # a later session keeps the grown model's layers
    assert train._with_layers(Recipe(), train.TrainOptions(out="o", data="d"), state6, resuming=True).n_layers == 6
    with pytest.raises(ValueError, match="--layers 3: this run's model has 4 encoder layers; layers can be added, "
                                         "not removed"):
        train._with_layers(Recipe(), train.TrainOptions(out="o", data="d", layers=3), state, resuming=False)
    with pytest.raises(ValueError, match="--layers 6: the checkpoint being resumed has 4 encoder layers; grow the "
                                         r"model in a --decay-steps session \(it starts from OUT/model.nemo\)"):
        train._with_layers(Recipe(), opts, state, resuming=True)


def test_a_session_that_grew_the_model_says_so_in_its_command():
    from parakeet_services.train_demo.card import session_command

    data = {"n_train": 32000, "n_test": 100, "seed": 1234, "pron_noise": 0.5, "version": 6, "flite_share": 0.0,
            "opus_share": 0.0}
    options = {"decay_steps": 2000, "decay_lr": 0.001, "spec_augment": False, "layers": 6, "device": "cpu"}
    assert session_command(options, data) == (
        "parakeet-stream train-demo --out OUT --n-train 32000 --n-test 100 --seed 1234 --pron-noise 0.5 "
        "--flite-share 0.0 --opus-share 0.0 --stages synth,train --decay-steps 2000 --decay-lr 0.001 "
        "--no-spec-augment --layers 6 --device cpu")


def test_the_training_curve_evaluates_every_held_out_group_in_equal_shares():
    from parakeet_services.train_demo.train import in_training_eval_rows

    rows = [dict(group=g, i=i) for g in voices.GROUPS for i in range(100)]
    picked = in_training_eval_rows(rows, 60)
    assert [(r["group"], r["i"]) for r in picked] == [(g, i) for g in voices.GROUPS if g not in voices.SEEN_GROUPS
                                                      for i in range(20)]
    assert len(in_training_eval_rows(rows, 7)) == 7  # 3 + 3 + 1


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert word_error_rate(["a b c"], ["a x c d"]) == 2 / 3
    assert word_error_rate(["a b", "c"], ["a b", ""]) == 1 / 3
    assert word_error_rate(["one two"], ["one two"]) == 0.0


def test_train_demo_without_a_synthesizer_says_which_and_how_to_get_it(tmp_path, monkeypatch, capsys):
    from parakeet_services.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # neither espeak-ng nor flite
    assert main(["train-demo", "--out", str(tmp_path / "run"), "--stages", "synth", "--n-train", "2"]) == 2
    assert ("error: espeak-ng is not on PATH: install it (apt-get install espeak-ng), or synthesize the data on "
            "another host and pass --data DIR") in capsys.readouterr().err
