"""The benchmark at a tiny size: structure and internal consistency of its JSON (never timing thresholds)."""
from __future__ import annotations

import json

import pytest

from tests.support import silence, speech

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def workload():
    import numpy as np

    from parakeet_services.benchmark.workload import Workload, compose
    from parakeet_services.speech import trim_trailing_silence

    audios, ends = [], []
    for sentences in (("four five six", "turn on the lights"), ("please open the window", "call me at seven thirty")):
        utts = [trim_trailing_silence(speech(s)) for s in sentences]
        audio, e = compose(utts, [0.3, 0.9])
        audios.append(np.concatenate([audio, silence(0.2)]))
        ends.append(e)
    return Workload(audios, ends, "test speech")


@pytest.fixture(scope="module")
def result(tiny_model, workload, tmp_path_factory):
    from parakeet_services.benchmark.config import BenchConfig
    from parakeet_services.benchmark.run import run_benchmark

    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    cfg = BenchConfig(model="tiny", dtype="fp32", chunk_ms=160, levels=(2,), spread_s=0.5, out=str(out),
                      threads=None)
    run_benchmark(cfg, model=tiny_model, workload=workload, log=lambda s: None)
    return json.loads(out.read_text())


def test_every_system_ran_the_requested_level(result):
    assert [lv["streams"] for lv in result["engine"]["levels"]] == [2]
    for name in ("per_stream", "per_stream_nemo", "vad_offline"):
        assert [lv["streams"] for lv in result["baselines"][name]["levels"]] == [2]
    nemo = result["baselines"]["nemo_pipeline"]
    assert nemo["levels"] or nemo["skipped"]  # ran, or says exactly why not


def test_streamed_text_equals_offline_decode(result):
    for lv in (result["engine"]["levels"] + result["baselines"]["per_stream"]["levels"]
               + result["baselines"]["per_stream_nemo"]["levels"]):
        assert lv["text_matches_offline"] == lv["streams"]
        assert lv["failed_streams"] == 0


def test_latency_counts_and_causality(result):
    for lv in result["engine"]["levels"] + result["baselines"]["per_stream"]["levels"]:
        assert lv["partials"] > 0
        # every stream-step's result is counted, text changed or not; partials are the ones with new text
        assert lv["results"] >= lv["partials"]
        assert lv["results"] == pytest.approx(lv["mean_batch"] * lv["steps"], abs=lv["steps"] * 0.005 + 0.5)
        # a result is never emitted before the packet holding its audio_end arrived (causality)
        for lat in (lv["latency_ms"], lv["partial_latency_ms"]):
            assert 0 <= lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lv["steps"] > 0 and 1 <= lv["mean_batch"] <= lv["max_batch"] <= lv["streams"]


def test_every_speech_end_gets_one_final(result, workload):
    n_ends = sum(len(workload.speech_ends[i % 2]) for i in range(2))
    for lv in result["engine"]["levels"] + result["baselines"]["vad_offline"]["levels"]:
        assert lv["speech_ends"] == n_ends
        assert lv["finals_matched"] == n_ends
        assert lv["final_latency_ms"]["min"] >= 0


def test_per_stream_baselines_step_one_stream_per_call(result):
    for name in ("per_stream", "per_stream_nemo"):
        lv = result["baselines"][name]["levels"][0]
        assert lv["system"] == name and lv["max_batch"] == 1


def test_comparison_is_relative_to_the_engine(result):
    comp = result["comparison"]
    assert comp["per_stream"]["at_streams"] == 2
    assert comp["per_stream"]["max_sustainable_streams"] == result["baselines"]["per_stream"]["max_sustainable_streams"]
    eng = result["engine"]["levels"][0]
    base = result["baselines"]["per_stream"]["levels"][0]
    assert comp["per_stream"]["compute_rtf_ratio"] == pytest.approx(base["compute_rtf"] / eng["compute_rtf"], abs=0.01)
    assert "final_latency_p95_ratio" in comp["vad_offline"]


def test_markdown_has_a_row_per_level(result):
    from parakeet_services.benchmark.report import markdown

    table = markdown(result)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| system")]
    levels = len(result["engine"]["levels"]) + sum(len(b["levels"]) for b in result["baselines"].values())
    assert len(rows) == levels


def test_baselines_can_run_at_their_own_levels_and_the_engine_with_a_batch_cap(tiny_model, workload, tmp_path):
    from parakeet_services.benchmark.config import BenchConfig
    from parakeet_services.benchmark.run import run_benchmark

    cfg = BenchConfig(model="tiny", dtype="fp32", chunk_ms=160, levels=(2,), baseline_levels=(1,), spread_s=0.5,
                      baselines=("per_stream",), max_batch=1, max_batch_variants=(1, 4), out=str(tmp_path / "b.json"),
                      threads=None)
    res = run_benchmark(cfg, model=tiny_model, workload=workload, log=lambda s: None)
    [engine] = res["engine"]["levels"]
    assert (engine["system"], engine["streams"], engine["max_batch"]) == ("engine", 2, 1)
    assert engine["text_matches_offline"] == 2
    assert res["config"]["max_batch"] == 1
    # each variant runs at the engine's levels above its cap, or at its highest level
    for cap in (1, 4):
        [variant] = res["baselines"][f"engine_max_batch_{cap}"]["levels"]
        assert (variant["system"], variant["streams"], variant["text_matches_offline"]) == \
            (f"engine_max_batch_{cap}", 2, 2)
        assert variant["max_batch"] <= cap
        assert res["comparison"][f"engine_max_batch_{cap}"]["at_streams"] == 2
    assert [lv["streams"] for lv in res["baselines"]["per_stream"]["levels"]] == [1]


def test_bench_command_passes_baseline_streams():
    import argparse

    from parakeet_services import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--streams", "64,512", "--baseline-streams", "4", "--no-vad",
                              "--batch-window-ms", "0", "--max-batch", "256", "--max-batch-variants", "256,512",
                              "--processes", "1,2,4"])
    assert (args.streams, args.baseline_streams, args.no_vad, args.batch_window_ms, args.max_batch,
            args.max_batch_variants, args.processes) == ((64, 512), (4,), True, 0.0, 256, (256, 512), (1, 2, 4))


def test_calibration_leaves_the_random_joint_at_the_rate_it_reports(workload):
    import torch

    from parakeet_stream.testing import build_random_model, calibrate_token_rate

    model = build_random_model("tiny", seed=3)
    rate = calibrate_token_rate(model, workload.audio[0], 0.3)
    x = torch.from_numpy(workload.audio[0])[None]
    with torch.inference_mode():
        feats, flen = model.preprocessor(input_signal=x, length=torch.tensor([x.shape[1]]))
        enc, enc_len = model.encoder(audio_signal=feats, length=flen)
        hyps = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=enc, encoded_lengths=enc_len,
                                                              return_hypotheses=True)
    hyp = (hyps[0] if isinstance(hyps, tuple) else hyps)[0]
    assert rate > 0
    assert len(hyp.y_sequence) / int(enc_len[0]) == rate


def test_result_growth_compares_late_and_early_interval_medians():
    import numpy as np

    from parakeet_services.benchmark.measures import histogram_median, result_growth

    hist = np.zeros(10_001, dtype=np.int64)
    snapshots = [hist.copy()]
    for i in range(20):  # interval i: ten results 100 + 10 i ms late
        hist[100 + 10 * i] += 10
        snapshots.append(hist.copy())
    # fifths of 20 intervals: the last (260..290 ms, median 275) minus the second (140..170 ms, median 155)
    assert result_growth(snapshots) == pytest.approx(0.120)
    assert result_growth(snapshots[:5]) is None  # too few intervals: the caller falls back to partials
    assert histogram_median(np.bincount([3, 3, 5], minlength=10)) == 3.0
    assert histogram_median(np.zeros(10, dtype=np.int64)) is None


def test_streams_are_shared_as_evenly_as_they_go():
    from parakeet_services.benchmark.processes import shares

    assert shares(10, 4) == [3, 3, 2, 2] and shares(2, 2) == [1, 1] and shares(1, 2) == [1, 0]


def test_the_engine_in_two_processes_splits_the_streams_and_adds_their_counts(workload, tmp_path):
    """``bench --processes 2``: each process loads its own demo model and steps its share; the level adds their
    counts and takes the slower process's latencies."""
    from parakeet_services.benchmark.config import BenchConfig
    from parakeet_services.benchmark.run import run_benchmark

    cfg = BenchConfig(model="espeak-demo-en", dtype="fp32", chunk_ms=160, levels=(2,), spread_s=0.5, baselines=(),
                      processes=(2,), vad=False, out=str(tmp_path / "p.json"), threads=None)
    res = run_benchmark(cfg, workload=workload, log=lambda s: None)
    [engine] = res["engine"]["levels"]
    [split] = res["baselines"]["engine_processes_2"]["levels"]
    assert (split["system"], split["streams"], split["text_matches_offline"], split["failed_streams"]) == \
        ("engine_processes_2", 2, 2, 0)
    assert split["results"] == engine["results"]  # the same audio, stepped in two processes
    assert split["note"] == "2 processes: latencies are the slowest process's"
    assert res["comparison"]["engine_processes_2"]["at_streams"] == 2
    assert tuple(res["config"]["processes"]) == (2,)
