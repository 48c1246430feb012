"""The wire contract without a network: query parameters, control frames, message shapes, audio decoding."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from parakeet_services.dalston import protocol as proto
from parakeet_services.dalston.audio import ALAW_TO_INT16, ULAW_TO_INT16, InvalidAudio, decode_frame


def test_defaults_match_dalston_head() -> None:
    c = proto.parse_session_params({"session_id": "sess_0123456789abcdef"})
    assert (c.session_id, c.language, c.model, c.encoding, c.sample_rate, c.client_sample_rate, c.channels) == \
        ("sess_0123456789abcdef", "auto", None, "pcm_s16le", 16000, 16000, 1)
    assert (c.enable_vad, c.interim_results, c.word_timestamps, c.vocabulary) == (True, True, False, None)
    assert (c.max_utterance_duration, c.vad_threshold, c.min_speech_duration_ms, c.min_silence_duration_ms,
            c.prefix_padding_ms) == (30.0, 0.5, 250, 400, 300)
    assert (c.lag_warning_seconds, c.lag_hard_seconds, c.lag_hard_grace_seconds) == (3.0, 5.0, 2.0)
    assert c.timeline == "audio"
    assert c.begin_config() == {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1, "language": "auto",
                                "model": None}


def test_generated_session_id_has_dalston_shape() -> None:
    sid = proto.parse_session_params({}).session_id
    assert sid.startswith("sess_") and len(sid) == 21 and int(sid[5:], 16) >= 0


def test_union_of_m22_and_head_parameters() -> None:
    c = proto.parse_session_params({
        "language": "en", "model": "nvidia/parakeet-rnnt-0.6b", "encoding": "mulaw", "sample_rate": "16000",
        "client_sample_rate": "8000", "channels": "2", "enable_vad": "no", "interim_results": "FALSE",
        "word_timestamps": "Yes", "vocabulary": '["Parakeet", "dalston"]', "max_utterance_duration": "0",
        "vad_threshold": "0.7", "min_speech_duration_ms": "100", "min_silence_duration_ms": "600",
        "prefix_padding_ms": "0", "lag_warning_seconds": "1", "lag_hard_seconds": "2",
        "lag_hard_grace_seconds": "0.5", "store_audio": "true", "prompt": "x", "foo": "bar"})
    assert (c.model, c.encoding, c.sample_rate, c.input_rate, c.channels) == \
        ("nvidia/parakeet-rnnt-0.6b", "mulaw", 16000, 8000, 2)
    assert (c.enable_vad, c.interim_results, c.word_timestamps) == (False, False, True)
    assert c.vocabulary == ["Parakeet", "dalston"]
    assert (c.max_utterance_duration, c.vad_threshold, c.min_speech_duration_ms, c.min_silence_duration_ms,
            c.prefix_padding_ms) == (0.0, 0.7, 100, 600, 0)
    assert (c.lag_warning_seconds, c.lag_hard_seconds, c.lag_hard_grace_seconds) == (1.0, 2.0, 0.5)
    assert c.extra == {"foo": "bar"}


def test_client_rate_defaults_to_sample_rate() -> None:
    # the ElevenLabs adapter sends pcm_44100 as sample_rate without client_sample_rate
    assert proto.parse_session_params({"sample_rate": "44100"}).input_rate == 44100


@pytest.mark.parametrize("raw", ['"x"', "[]", "[1, 2]", "not json"])
def test_vocabulary_that_is_not_a_string_array_is_ignored(raw: str) -> None:
    assert proto.parse_session_params({"vocabulary": raw}).vocabulary is None


@pytest.mark.parametrize("params, message", [
    ({"sample_rate": "7999"}, "Invalid parameter: sample_rate=7999 is out of range (accepted: 8000..48000)"),
    ({"client_sample_rate": "96000"},
     "Invalid parameter: client_sample_rate=96000 is out of range (accepted: 8000..48000)"),
    ({"channels": "3"}, "Invalid parameter: channels=3 is out of range (accepted: 1..2)"),
    ({"channels": "two"}, "Invalid parameter: channels='two' is not an integer (accepted: 1..2)"),
    ({"max_utterance_duration": "301"},
     "Invalid parameter: max_utterance_duration=301 is out of range (accepted: 0..300)"),
    ({"vad_threshold": "1.5"}, "Invalid parameter: vad_threshold=1.5 is out of range (accepted: 0..1)"),
    ({"min_speech_duration_ms": "10"},
     "Invalid parameter: min_speech_duration_ms=10 is out of range (accepted: 50..2000)"),
    ({"min_silence_duration_ms": "2001"},
     "Invalid parameter: min_silence_duration_ms=2001 is out of range (accepted: 50..2000)"),
    ({"prefix_padding_ms": "-1"}, "Invalid parameter: prefix_padding_ms=-1 is out of range (accepted: 0..5000)"),
    ({"encoding": "opus"},
     "Invalid parameter: encoding='opus' (accepted: pcm_s16le, pcm_f32le, mulaw, alaw)"),
    ({"lag_warning_seconds": "4", "lag_hard_seconds": "4"},
     "Invalid parameter: lag_hard_seconds=4 must be greater than lag_warning_seconds=4"),
    ({"timeline": "wall"}, "Invalid parameter: timeline='wall' (accepted: audio, speech)"),
])
def test_bad_parameter_names_itself_and_its_range(params: dict[str, str], message: str) -> None:
    with pytest.raises(proto.ParameterError) as err:
        proto.parse_session_params(params)
    assert str(err.value) == message


@pytest.mark.parametrize("text, message", [
    ("{oops", "Invalid JSON: Expecting property name enclosed in double quotes "
              "(expected an object such as {\"type\": \"flush\"})"),
    ("[1]", "Message must be a JSON object, got list"),
    ('"flush"', "Message must be a JSON object, got str"),
    ("{}", "Missing message type (accepted: config, flush, commit, clear, end)"),
    ('{"type": "pause"}', "Unknown message type: pause (accepted: config, flush, commit, clear, end)"),
    ('{"type": "config", "vad_threshold": 2}', "Invalid config: vad_threshold=2 (accepted: 0..1)"),
    ('{"type": "config", "min_silence_duration_ms": "400"}',
     "Invalid config: min_silence_duration_ms='400' (accepted: 50..2000)"),
    ('{"type": "config", "language": 5}', "Invalid config: language=5 (accepted: a language code)"),
])
def test_bad_control_frames(text: str, message: str) -> None:
    with pytest.raises(proto.MessageError) as err:
        proto.parse_client_message(text)
    assert str(err.value) == message


@pytest.mark.parametrize("kind", ["config", "flush", "commit", "clear", "end"])
def test_control_frames_accepted(kind: str) -> None:
    assert proto.parse_client_message(json.dumps({"type": kind})) == {"type": kind}


def test_server_messages_have_dalston_fields() -> None:
    c = proto.parse_session_params({"session_id": "sess_1", "model": "m"})
    assert proto.session_begin(c) == {"type": "session.begin", "session_id": "sess_1", "config": {
        "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1, "language": "auto", "model": "m"}}
    assert proto.speech_start(1.23456) == {"type": "vad.speech_start", "timestamp": 1.235}
    assert proto.speech_end(2.0) == {"type": "vad.speech_end", "timestamp": 2.0}
    assert proto.transcript_partial("a b", 0.4, 1.0) == {"type": "transcript.partial", "text": "a b", "start": 0.4,
                                                         "end": 1.0}
    w = proto.word("a", 0.4, 0.48, 0.987654)
    assert w == {"word": "a", "start": 0.4, "end": 0.48, "confidence": 0.9877}
    assert proto.transcript_final("a", 0.4, 0.48, 0.9, [w]) == {
        "type": "transcript.final", "text": "a", "start": 0.4, "end": 0.48, "confidence": 0.9, "words": [w]}
    assert "words" not in proto.transcript_final("a", 0.4, 0.48, 0.9, None)
    assert proto.error("invalid_audio", "x", recoverable=True) == {
        "type": "error", "code": "invalid_audio", "message": "x", "recoverable": True}
    assert proto.lag_warning(3.5, 3.0, 5.0) == {
        "type": "warning", "code": "processing_lag",
        "message": "Processing is 3.50s behind the audio received (warning at 3s, session ends at 5s)",
        "lag_seconds": 3.5, "warning_threshold_seconds": 3.0, "hard_threshold_seconds": 5.0}
    assert proto.session_terminated("sess_1", "lag_exceeded", 1200) == {
        "type": "session.terminated", "session_id": "sess_1", "reason": "lag_exceeded", "recoverable": False,
        "last_transcript_offset_ms": 1200}
    segments = [{"start": 0.4, "end": 1.0, "text": "a"}, {"start": 2.0, "end": 2.5, "text": "b c"}]
    assert proto.session_end("sess_1", total_audio_seconds=3.0, wall_seconds=4.5, speech_seconds=1.1,
                             segments=segments) == {
        "type": "session.end", "session_id": "sess_1", "total_audio_seconds": 3.0, "total_duration": 4.5,
        "total_speech_duration": 1.1, "transcript": "a b c", "segments": segments}


def test_g711_tables_equal_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    codes = bytes(range(256))
    assert np.array_equal(np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2"), ULAW_TO_INT16)
    assert np.array_equal(np.frombuffer(audioop.alaw2lin(codes, 2), "<i2"), ALAW_TO_INT16)


def test_decode_each_encoding() -> None:
    s16 = np.array([0, 16384, -32768, 32767], "<i2")
    assert decode_frame(s16.tobytes(), "pcm_s16le", 1).tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    f32 = np.array([0.25, -0.5, 2.0], "<f4")
    assert decode_frame(f32.tobytes(), "pcm_f32le", 1).tolist() == [0.25, -0.5, 1.0]
    assert decode_frame(bytes([0xFF, 0x00]), "mulaw", 1).tolist() == [0.0, -32124 / 32768]
    assert decode_frame(bytes([0xD5, 0x55]), "alaw", 1).tolist() == [8 / 32768, -8 / 32768]


def test_stereo_is_down_mixed() -> None:
    stereo = np.array([1000, 3000, -2000, 0], "<i2").tobytes()
    assert decode_frame(stereo, "pcm_s16le", 2).tolist() == [2000 / 32768, -1000 / 32768]


@pytest.mark.parametrize("size, encoding, channels, message", [
    (3, "pcm_s16le", 1, "Audio frame of 3 bytes is not a whole number of mono pcm_s16le samples (2 bytes each); "
                        "send frames whose length is a multiple of 2"),
    (6, "pcm_s16le", 2, "Audio frame of 6 bytes is not a whole number of 2-channel pcm_s16le samples (4 bytes each); "
                        "send frames whose length is a multiple of 4"),
    (10, "pcm_f32le", 1, "Audio frame of 10 bytes is not a whole number of mono pcm_f32le samples (4 bytes each); "
                         "send frames whose length is a multiple of 4"),
    (5, "mulaw", 2, "Audio frame of 5 bytes is not a whole number of 2-channel mulaw samples (2 bytes each); "
                    "send frames whose length is a multiple of 2"),
])
def test_byte_count_must_fit_the_encoding(size: int, encoding: str, channels: int, message: str) -> None:
    with pytest.raises(InvalidAudio) as err:
        decode_frame(bytes(size), encoding, channels)
    assert str(err.value) == message


def test_non_finite_floats_are_rejected() -> None:
    with pytest.raises(InvalidAudio) as err:
        decode_frame(np.array([0.0, np.nan], "<f4").tobytes(), "pcm_f32le", 1)
    assert str(err.value) == "Audio frame holds NaN or infinite pcm_f32le samples; send finite floats in -1..1"
