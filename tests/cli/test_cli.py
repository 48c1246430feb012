"""The ``parakeet-stream`` command as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "parakeet_services.cli"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_import_is_cheap():
    out = subprocess.run([sys.executable, "-c", "import sys, parakeet_stream, parakeet_services.cli; "
                          "print(sorted(m for m in ('torch', 'nemo') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_models_lists_known_checkpoints_without_loading_nemo():
    out = run("models")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "chunk", "sizes"]
    rows = {line.split()[0]: line for line in lines[1:6]}
    assert set(rows) == {"espeak-demo-en", "nvidia/nemotron-speech-streaming-en-0.6b",
                         "nvidia/stt_en_fastconformer_hybrid_large_streaming_multi",
                         "nvidia/parakeet_realtime_eou_120m-v1", "nvidia/parakeet-rnnt-0.6b"}
    assert "(default)" in rows["espeak-demo-en"] and "80, 160, 560, 1120" in rows[
        "nvidia/nemotron-speech-streaming-en-0.6b"]


def test_transcribe_json_prints_one_object_per_event():
    out = run("transcribe", "examples/sample.wav", "--json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "Final"]
    assert [(f["segment_id"], f["text"], f["reason"]) for f in finals] == [
        (0, "set a timer for ten minutes", "eou"), (1, "call me at seven thirty tomorrow morning", "eou")]
    assert [w["text"] for w in finals[0]["words"]] == ["set", "a", "timer", "for", "ten", "minutes"]
    assert events[-1] == {"type": "StreamEnded", "audio_seconds": 6.8, "segments": 2}
    assert {e["type"] for e in events} == {"SpeechStarted", "Partial", "Final", "SpeechEnded", "StreamEnded"}


def test_transcribe_live_view_prints_timed_finals():
    out = run("transcribe", "examples/sample.wav")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[  0.56-  2.24] set a timer for ten minutes",
        "    words: set[0.56-0.72] a[0.72-0.80] timer[0.88-1.20] for[1.28-1.36] ten[1.60-1.76] minutes[1.84-2.24]",
        "[  3.84-  6.08] call me at seven thirty tomorrow morning",
        "    words: call[3.84-4.00] me[4.08-4.16] at[4.24-4.32] seven[4.64-4.72] thirty[4.96-5.20] "
        "tomorrow[5.28-5.68] morning[5.84-6.08]",
    ]


def test_transcribe_boosts_repeated_keyterms_and_refuses_bad_ones(tmp_path):
    import soundfile as sf

    from tests.support import KEYTERM, KEYTERM_MISHEARD, keyterm_speech

    wav = tmp_path / "song.wav"
    sf.write(wav, keyterm_speech(), 16000)
    finals = lambda out: [json.loads(line)["text"] for line in out.stdout.splitlines()  # noqa: E731
                          if json.loads(line)["type"] == "Final"]
    plain = run("transcribe", str(wav), "--json")
    boosted = run("transcribe", str(wav), "--json", "--keyterm", KEYTERM, "--keyterm", "kitchen")
    assert (plain.returncode, boosted.returncode) == (0, 0), boosted.stderr
    assert finals(plain) == [KEYTERM_MISHEARD]
    assert KEYTERM in finals(boosted)[0].split()
    bad = run("transcribe", str(wav), "--keyterm", "zürich")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == "error: keyterm 'zürich': the model cannot spell 'ü'"


def test_transcribe_refuses_what_is_not_audio(tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("hello")
    out = run("transcribe", str(bogus))
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: cannot read '{bogus}' as audio (")
    assert out.stderr.rstrip().endswith("accepted: WAV or FLAC files")


def test_transcribe_names_valid_chunk_sizes():
    out = run("transcribe", "examples/sample.wav", "--chunk-ms", "560")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "error: chunk size 560 ms is not supported by this model; valid sizes: 160 ms")


@pytest.mark.parametrize("command", ["transcribe", "serve", "captions"])
def test_every_command_refuses_a_thread_count_it_cannot_use(command):
    args = ["examples/sample.wav"] if command == "transcribe" else []
    out = run(command, *args, "--threads", "0", timeout=30)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        f"parakeet-stream {command}: error: argument --threads: expected a count of at least 1 or 'auto', got '0'")


def test_the_example_voice_agent_exits_with_the_error_when_its_model_cannot_load():
    import os

    env = {**os.environ, "PARAKEET_MODEL": "/models/missing.nemo"}
    out = subprocess.run([sys.executable, "examples/livekit_voice_agent.py", "start"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        "error: cannot load model '/models/missing.nemo': model file '/models/missing.nemo' does not exist; pass a "
        ".nemo file or a known model name (parakeet-stream models lists them)")


def test_serve_exits_within_two_seconds_of_sigterm_when_no_session_is_open():
    import signal
    import time

    proc = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("parakeet-stream serve: ws://127.0.0.1:")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started <= 2.0
    finally:
        proc.kill()


def test_captions_refuses_a_room_cap_below_one():
    out = run("captions", "--url", "ws://127.0.0.1:7880", "--api-key", "k", "--api-secret", "s",
              "--server", "ws://127.0.0.1:9", "--max-rooms", "0", timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].endswith("ERROR parakeet_services.captions --max-rooms must be at least 1, got 0")
