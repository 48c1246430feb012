"""dalston's worker wire protocol: session parameters, client frames, server messages and close codes.

Names and fields follow dalston's ``realtime_sdk/protocol.py`` (M22 and HEAD) exactly, because the dalston
gateway relays these frames unchanged to native clients and translates them by name for its ElevenLabs and
OpenAI endpoints. This module is pure (no I/O) so the whole contract can be read and tested in one place.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from parakeet_stream.endpointing import EndpointingOptions

# close codes (dalston/common/ws_close_codes.py)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_PARAMETER = 1002
CLOSE_INVALID_PATH = 1008
CLOSE_POLICY_VIOLATION = 1008  # same code as an invalid path (RFC 6455 "policy violation"); reason "unauthorized"
REASON_UNAUTHORIZED = "unauthorized"
CLOSE_INTERNAL_ERROR = 1011
CLOSE_AT_CAPACITY = 1013
CLOSE_LAG_EXCEEDED = 4010

ENCODINGS = ("pcm_s16le", "pcm_f32le", "mulaw", "alaw")
CONTROL_TYPES = ("config", "flush", "commit", "clear", "end")
TIMELINES = ("audio", "speech")

# error codes dalston's clients know
ERR_INVALID_AUDIO = "invalid_audio"
ERR_INVALID_MESSAGE = "invalid_message"
ERR_INTERNAL = "internal_error"
ERR_LAG_EXCEEDED = "lag_exceeded"


class ParameterError(ValueError):
    """A query or config value is malformed or out of range; the message names it and what is accepted."""


class MessageError(ValueError):
    """A client text frame is not a control message this worker understands."""


def _flag(value: str) -> bool:
    # dalston: true when the value is one of true/1/yes, case-insensitive; anything else is false
    return value.strip().lower() in ("true", "1", "yes")


def _number(params: Mapping[str, str], name: str, default: float, lo: float, hi: float, *, integer: bool) -> Any:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ParameterError(f"Invalid parameter: {name}={raw!r} is not {kind} (accepted: {lo:g}..{hi:g})") from None
    if not (lo <= value <= hi):
        raise ParameterError(f"Invalid parameter: {name}={raw} is out of range (accepted: {lo:g}..{hi:g})")
    return value


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class SessionConfig:
    """Everything a ``/session?...`` URL can ask for (union of dalston M22 and HEAD parameters)."""

    session_id: str
    language: str = "auto"
    model: str | None = None
    encoding: str = "pcm_s16le"
    sample_rate: int = 16000
    client_sample_rate: int = 16000
    channels: int = 1
    enable_vad: bool = True
    interim_results: bool = True
    word_timestamps: bool = False
    vocabulary: list[str] | None = None
    keyterms: Any = None  # the vocabulary as the engine boosts it (``parakeet_stream.streaming.keyterms.Keyterms``)
    keyterm_weight: float | None = None  # a parakeet-stream extension: how strongly (engine default if None)
    max_utterance_duration: float = 30.0
    vad_threshold: float = 0.5
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 400
    prefix_padding_ms: int = 300
    lag_warning_seconds: float = 3.0
    lag_hard_seconds: float = 5.0
    lag_hard_grace_seconds: float = 2.0
    debug_chunk_sleep_initial_seconds: float = 0.0
    debug_chunk_sleep_increment_seconds: float = 0.0
    timeline: str = "audio"
    # parakeet-stream extensions (dalston's gateway never sends them; unknown names are ignored by dalston):
    # `endpointing` = the engine's own EndpointingOptions as JSON, used instead of the VAD parameters above, and
    # `engine_events` = messages in the engine's event order (transcript.final before vad.speech_end, words on
    # partials), so a client can rebuild exactly the events an in-process stream gives.
    endpointing: EndpointingOptions | None = None
    engine_events: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def input_rate(self) -> int:
        """The rate of the bytes on the wire (dalston: ``client_sample_rate``, else ``sample_rate``)."""
        return self.client_sample_rate

    def begin_config(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "encoding": self.encoding, "channels": self.channels,
                "language": self.language, "model": self.model}


def parse_session_params(params: Mapping[str, str], *, default_timeline: str = "audio") -> SessionConfig:
    """Build a :class:`SessionConfig` from query parameters; unknown names are ignored (kept in ``extra``).

    Raises :class:`ParameterError` (close 1002) for a malformed or out-of-range value. dalston silently
    falls back to the default for an unparsable number; this worker says so instead, since the gateway
    never sends one and a direct client deserves to know.
    """
    session_id = params.get("session_id") or "sess_" + secrets.token_hex(8)
    encoding = params.get("encoding") or "pcm_s16le"
    if encoding not in ENCODINGS:
        raise ParameterError(f"Invalid parameter: encoding={encoding!r} (accepted: {', '.join(ENCODINGS)})")
    sample_rate = _number(params, "sample_rate", 16000, 8000, 48000, integer=True)
    client_rate = _number(params, "client_sample_rate", sample_rate, 8000, 48000, integer=True)
    vocabulary: list[str] | None = None
    raw_vocab = params.get("vocabulary")
    if raw_vocab:
        try:
            parsed = json.loads(raw_vocab)
        except ValueError:
            parsed = None
        # dalston: a JSON array of strings, anything else ignored, [] -> None
        if isinstance(parsed, list) and parsed and all(isinstance(v, str) for v in parsed):
            vocabulary = parsed
    keyterm_weight = _number(params, "keyterm_weight", 0.0, 0.0, 10.0, integer=False) or None
    lag_warning = _number(params, "lag_warning_seconds", _env_float("DALSTON_REALTIME_LAG_WARNING_SECONDS", 3.0),
                          0.01, 3600, integer=False)
    lag_hard = _number(params, "lag_hard_seconds", _env_float("DALSTON_REALTIME_LAG_HARD_SECONDS", 5.0),
                       0.01, 3600, integer=False)
    if lag_hard <= lag_warning:
        raise ParameterError(f"Invalid parameter: lag_hard_seconds={lag_hard:g} must be greater than "
                             f"lag_warning_seconds={lag_warning:g}")
    timeline = params.get("timeline") or default_timeline
    if timeline not in TIMELINES:
        raise ParameterError(f"Invalid parameter: timeline={timeline!r} (accepted: {', '.join(TIMELINES)})")
    endpointing = None
    if params.get("endpointing"):
        try:
            changes = json.loads(params["endpointing"])
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            raise ParameterError(f"Invalid parameter: endpointing={params['endpointing']!r} is not a JSON object")
        try:
            endpointing = endpointing_options(EndpointingOptions(), changes, allow_vad=True)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"Invalid parameter: {exc}") from None
    # api_key is a credential: it is never kept where a log line or a reply could show it
    known = set(SessionConfig.__dataclass_fields__) | {"resample_quality", "store_audio", "store_transcript",
                                                       "include_language_detection", "prompt", "api_key"}
    return SessionConfig(
        session_id=session_id,
        language=params.get("language") or "auto",
        model=params.get("model") or None,
        encoding=encoding,
        sample_rate=sample_rate,
        client_sample_rate=client_rate,
        channels=_number(params, "channels", 1, 1, 2, integer=True),
        enable_vad=_flag(params.get("enable_vad", "true")),
        interim_results=_flag(params.get("interim_results", "true")),
        word_timestamps=_flag(params.get("word_timestamps", "false")),
        vocabulary=vocabulary,
        keyterm_weight=keyterm_weight,
        max_utterance_duration=_number(
            params, "max_utterance_duration", _env_float("DALSTON_REALTIME_MAX_UTTERANCE_DURATION", 30.0),
            0, 300, integer=False),
        vad_threshold=_number(params, "vad_threshold", 0.5, 0, 1, integer=False),
        min_speech_duration_ms=_number(params, "min_speech_duration_ms", 250, 50, 2000, integer=True),
        min_silence_duration_ms=_number(
            params, "min_silence_duration_ms",
            int(_env_float("DALSTON_REALTIME_MIN_SILENCE_DURATION_MS", 400)), 50, 2000, integer=True),
        prefix_padding_ms=_number(params, "prefix_padding_ms", 300, 0, 5000, integer=True),
        lag_warning_seconds=lag_warning,
        lag_hard_seconds=lag_hard,
        lag_hard_grace_seconds=_number(params, "lag_hard_grace_seconds",
                                       _env_float("DALSTON_REALTIME_LAG_HARD_GRACE_SECONDS", 2.0),
                                       0, 3600, integer=False),
        debug_chunk_sleep_initial_seconds=_number(params, "debug_chunk_sleep_initial_seconds", 0.0, 0, 60,
                                                  integer=False),
        debug_chunk_sleep_increment_seconds=_number(params, "debug_chunk_sleep_increment_seconds", 0.0, 0, 60,
                                                    integer=False),
        timeline=timeline,
        endpointing=endpointing,
        engine_events=_flag(params.get("engine_events", "false")),
        extra={k: v for k, v in params.items() if k not in known},
    )


# --- client -> worker text frames -------------------------------------------------------------------------

CONFIG_FIELDS = {
    "vad_threshold": (0.0, 1.0),
    "min_speech_duration_ms": (50, 2000),
    "min_silence_duration_ms": (50, 2000),
    "prefix_padding_ms": (0, 5000),
}


def endpointing_options(base: EndpointingOptions, changes: Mapping[str, Any], *, allow_vad: bool) -> EndpointingOptions:
    """``base`` with the engine endpointing ``changes`` applied; ``ValueError`` names a bad or unknown field.

    ``allow_vad=False`` is for a live session: the engine cannot switch its VAD on or off on an open stream.
    """
    names = [f.name for f in fields(EndpointingOptions)]
    unknown = sorted(set(changes) - set(names))
    if unknown:
        # short: it may become a close reason (123 bytes)
        raise ValueError(f"unknown endpointing field(s) {', '.join(unknown)} (see parakeet_stream.EndpointingOptions)")
    if not allow_vad and "vad" in changes and changes["vad"] != base.vad:
        raise ValueError("endpointing.vad cannot change on an open session (open a new one for that)")
    return replace(base, **dict(changes))


def parse_client_message(text: str) -> dict[str, Any]:
    """Parse one control frame; raise :class:`MessageError` with dalston's wording for anything else."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise MessageError(f"Invalid JSON: {exc.msg} (expected an object such as {{\"type\": \"flush\"}})") from None
    if not isinstance(message, dict):
        raise MessageError(f"Message must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind is None:
        raise MessageError(f"Missing message type (accepted: {', '.join(CONTROL_TYPES)})")
    if kind not in CONTROL_TYPES:
        raise MessageError(f"Unknown message type: {kind} (accepted: {', '.join(CONTROL_TYPES)})")
    if kind == "config":
        for name, (lo, hi) in CONFIG_FIELDS.items():
            if name in message:
                value = message[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                    raise MessageError(f"Invalid config: {name}={value!r} (accepted: {lo:g}..{hi:g})")
        if "endpointing" in message:
            changes = message["endpointing"]
            if not isinstance(changes, dict):
                raise MessageError(f"Invalid config: endpointing={changes!r} (accepted: a JSON object of engine "
                                   f"endpointing fields)")
            try:
                endpointing_options(EndpointingOptions(), changes, allow_vad=True)
            except (ValueError, TypeError) as exc:
                raise MessageError(f"Invalid config: {exc}") from None
        vocabulary = message.get("vocabulary")
        if "vocabulary" in message and vocabulary is not None and not (
                isinstance(vocabulary, list) and all(isinstance(v, str) for v in vocabulary)):
            raise MessageError(f"Invalid config: vocabulary={vocabulary!r} (accepted: a JSON array of phrases, or "
                               "null for none)")
        if "language" in message and not isinstance(message["language"], str):
            raise MessageError(f"Invalid config: language={message['language']!r} (accepted: a language code)")
    return message


# --- worker -> client messages ------------------------------------------------------------------------------

def _r(t: float) -> float:
    return round(float(t), 3)


def session_begin(config: SessionConfig) -> dict[str, Any]:
    return {"type": "session.begin", "session_id": config.session_id, "config": config.begin_config()}


def speech_start(timestamp: float) -> dict[str, Any]:
    return {"type": "vad.speech_start", "timestamp": _r(timestamp)}


def speech_end(timestamp: float) -> dict[str, Any]:
    return {"type": "vad.speech_end", "timestamp": _r(timestamp)}


def transcript_partial(text: str, start: float, end: float,
                       words: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "transcript.partial", "text": text, "start": _r(start), "end": _r(end)}
    if words:
        message["words"] = words
    return message


def transcript_final(text: str, start: float, end: float, confidence: float,
                     words: list[dict[str, Any]] | None, *, reason: str | None = None,
                     audio_end: float | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "transcript.final", "text": text, "start": _r(start), "end": _r(end),
                               "confidence": round(float(confidence), 4)}
    if words:
        message["words"] = words
    if reason is not None:  # engine_events only: why the segment ended (the engine's EndpointReason)
        message["reason"] = reason
    if audio_end is not None:  # engine_events only: the audio the final depends on (latency = its arrival - this)
        message["audio_end"] = _r(audio_end)
    return message


def word(text: str, start: float, end: float, confidence: float) -> dict[str, Any]:
    return {"word": text, "start": _r(start), "end": _r(end), "confidence": round(float(confidence), 4)}


def error(code: str, message: str, *, recoverable: bool) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "recoverable": recoverable}


def lag_warning(lag: float, warning_s: float, hard_s: float) -> dict[str, Any]:
    return {"type": "warning", "code": "processing_lag",
            "message": f"Processing is {lag:.2f}s behind the audio received (warning at {warning_s:g}s, "
                       f"session ends at {hard_s:g}s)",
            "lag_seconds": round(lag, 3), "warning_threshold_seconds": warning_s, "hard_threshold_seconds": hard_s}


def session_terminated(session_id: str, reason: str, last_transcript_offset_ms: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "session.terminated", "session_id": session_id, "reason": reason,
                               "recoverable": False}
    if last_transcript_offset_ms is not None:
        message["last_transcript_offset_ms"] = last_transcript_offset_ms
    return message


def session_end(session_id: str, *, total_audio_seconds: float, wall_seconds: float, speech_seconds: float,
                segments: list[dict[str, Any]]) -> dict[str, Any]:
    """HEAD fields plus the M22 names (``total_duration`` was wall-clock there) for old clients."""
    return {"type": "session.end", "session_id": session_id,
            "total_audio_seconds": _r(total_audio_seconds),
            "total_duration": _r(wall_seconds),
            "total_speech_duration": _r(speech_seconds),
            "transcript": " ".join(s["text"] for s in segments if s["text"]),
            "segments": segments}
