"""One dalston session: a WebSocket connection driving one engine stream.

Three tasks share the session: the receive loop validates frames and queues stream operations in arrival
order (so a ``flush`` never overtakes the audio before it), the push task applies them to the engine stream,
and the event task turns engine events into dalston messages. A fourth watches the lag budget.
"""
from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from typing import Any, Callable

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from . import protocol as proto
from .audio import InvalidAudio, decode_frame
from .metrics import WorkerStats


class Phase(enum.Enum):
    OPEN = "open"  # audio is taken
    ENDING = "ending"  # `end` received (or the worker drains): no more audio, pending finals go out, then session.end
    TERMINATED = "terminated"  # given up (lag, end deadline): nothing more is sent but the error and the close


class Outcome(str, enum.Enum):
    """How a session ended: the ``outcome`` label of ``parakeet_dalston_sessions_ended_total`` and the logs."""

    OPEN = "open"  # not ended yet
    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    ABORTED = "aborted"  # the worker shut down
    ERROR = "error"
    END_DEADLINE = "end_deadline"
    LAG_EXCEEDED = "lag_exceeded"

log = logging.getLogger("parakeet_services.dalston.session")

LAG_CHECK_INTERVAL_S = 0.25   # dalston's lag monitor period
LAG_WARNING_MIN_INTERVAL_S = 1.0
# after `end` (or a drain) the rest of the audio must be transcribed within this: dalston's gateway waits 10 s for
# session.end. Past it the session ends with the transcript so far and says how much audio was not transcribed.
END_DEADLINE_S = 8.0


class Session:
    """Runs ``/session`` for one client until ``session.end``, a lag kill, or a disconnect."""

    def __init__(self, ws: ServerConnection, config: proto.SessionConfig, engine: Any, stats: WorkerStats,
                 *, on_end: Callable[["Session", Outcome], None] | None = None) -> None:
        self.ws = ws
        self.config = config
        self.engine = engine
        self.stats = stats
        self.on_end = on_end
        self.started_at = time.monotonic()
        self.stream: Any = None
        self.phase = Phase.OPEN
        self._end_sent = False  # session.end goes out once
        self.received_s = 0.0               # audio received on the wire, at the client's rate
        self.lag_s = 0.0
        self.outcome = Outcome.OPEN
        self._ops: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._done = asyncio.get_running_loop().create_future()
        self._frames = 0
        # transcript assembly
        self._offset = 0.0                  # session time of the current stream's 0 (moves on `clear`)
        self._speech_clock = 0.0            # dalston's compressed timeline: sum of utterance durations
        self._segment_start: float | None = None
        self._pending_final: Any = None
        self._segments: list[dict[str, Any]] = []
        self._last_final_end = 0.0

    # --- engine stream ---------------------------------------------------------------------------------

    def _endpointing(self) -> Any:
        import parakeet_stream as ps

        c = self.config
        if c.endpointing is not None:  # the client asked for the engine's own options (parakeet-stream clients)
            return c.endpointing
        # 0 = unlimited (dalston); the engine's forced cut accepts 1 s and more
        max_segment = max(1.0, c.max_utterance_duration) if c.max_utterance_duration else None
        if not c.enable_vad:
            # dalston HEAD: enable_vad=false means no endpointing at all, finals every max_utterance_duration
            return ps.EndpointingOptions(vad=False, eou=False, trailing_blank_ms=None, max_segment_s=max_segment)
        # prefix_padding_ms is dalston's VAD lookback; as the engine's speech pad it also keeps the decoder's last
        # tokens (emitted a frame or two after the acoustic end) inside the utterance the VAD closes. The client's
        # VAD settings decide where utterances end: a model's <EOU> inside a pause shorter than its
        # min_silence_duration_ms does not cut one (the trailing-blank rule defers to the VAD on its own).
        return ps.EndpointingOptions(vad=True, eou=False, vad_threshold=c.vad_threshold,
                                     min_speech_ms=c.min_speech_duration_ms,
                                     min_silence_ms=c.min_silence_duration_ms,
                                     speech_pad_ms=min(c.prefix_padding_ms, 2000), max_segment_s=max_segment)

    def open_stream(self) -> None:
        """Open the engine stream; raises the engine's ``CapacityError`` when it is full."""
        self.stream = self.engine.open_stream(sample_rate=self.config.input_rate, endpointing=self._endpointing(),
                                              stream_id=self.config.session_id)
        if self.config.keyterms is not None:  # checked at the handshake (server.py)
            self.stream._set_keyterms(self.config.keyterms)

    def processed_seconds(self) -> float:
        """Session audio the engine has consumed, counting audio that `clear` discarded as done."""
        if self.stream is None:
            return self._offset
        return self._offset + self.stream.processed_seconds

    # --- lifecycle -------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._send(proto.session_begin(self.config))
        log.info("session.begin session_id=%s encoding=%s rate=%d channels=%d vad=%s interim=%s words=%s",
                 self.config.session_id, self.config.encoding, self.config.input_rate, self.config.channels,
                 self.config.enable_vad, self.config.interim_results, self.config.word_timestamps)
        tasks = [asyncio.create_task(coro) for coro in
                 (self._receive(), self._apply_ops(), self._forward_events(), self._watch_lag())]
        outcome = Outcome.DISCONNECTED
        code: int | None = None
        reason = ""
        try:
            outcome, code, reason = await self._done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.stream is not None:
                self.stream.close()
            self.outcome = outcome
            self.stats.sessions_ended[outcome.value] += 1
            log.info("session.closed session_id=%s outcome=%s audio_s=%.2f segments=%d", self.config.session_id,
                     outcome.value, self.received_s, len(self._segments))
            if self.on_end is not None:  # the slot is free before the client sees the close
                self.on_end(self, outcome)
            if code is not None:
                await self.ws.close(code, reason)

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self.started_at

    def drain(self) -> None:
        """Finish as if the client sent ``end``: pending finals, then ``session.end``."""
        if self.phase is Phase.OPEN:
            self.phase = Phase.ENDING
            self._ops.put_nowait(("end",))

    def abort(self) -> None:
        self._finish(Outcome.ABORTED, proto.CLOSE_GOING_AWAY, "Worker shutting down")

    def _finish(self, outcome: Outcome, code: int | None, reason: str = "") -> None:
        if not self._done.done():
            self._done.set_result((outcome, code, reason))

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed:
            self._finish(Outcome.DISCONNECTED, None)

    # --- client -> engine ------------------------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    await self._on_audio(frame)
                else:
                    await self._on_text(frame)
        except ConnectionClosed:
            pass
        self._finish(Outcome.DISCONNECTED, None)

    async def _on_audio(self, frame: bytes) -> None:
        if self.phase is not Phase.OPEN or not frame:
            return
        c = self.config
        try:
            samples = decode_frame(frame, c.encoding, c.channels)
        except InvalidAudio as exc:
            self.stats.frames_rejected += 1
            await self._send(proto.error(proto.ERR_INVALID_AUDIO, str(exc), recoverable=True))
            return
        seconds = len(samples) / c.input_rate
        self.received_s += seconds
        self.stats.audio_seconds_received += seconds
        self._ops.put_nowait(("audio", samples))

    async def _on_text(self, text: str) -> None:
        try:
            message = proto.parse_client_message(text)
        except proto.MessageError as exc:
            self.stats.messages_rejected += 1
            await self._send(proto.error(proto.ERR_INVALID_MESSAGE, str(exc), recoverable=True))
            return
        kind = message["type"]
        if self.phase is not Phase.OPEN:
            return
        if kind == "config":
            await self._apply_config(message)
        elif kind in ("flush", "commit"):  # ElevenLabs' gateway adapter sends `commit`
            self._ops.put_nowait(("flush",))
        elif kind == "clear":
            self._ops.put_nowait(("clear",))
        elif kind == "end":
            self.phase = Phase.ENDING
            self._ops.put_nowait(("end",))

    @property
    def _vad_events(self) -> bool:
        """vad.speech_start/end are sent with dalston's VAD, and always for engine endpointing (its segments)."""
        return self.config.enable_vad or self.config.endpointing is not None

    async def _apply_config(self, message: dict[str, Any]) -> None:
        """New VAD values and vocabulary apply to the live stream from the audio after this message (in order
        with it)."""
        if "vocabulary" in message:
            try:
                keyterms = self.engine.check_keyterms(message["vocabulary"] or None, self.config.keyterm_weight)
            except ValueError as exc:
                self.stats.messages_rejected += 1
                await self._send(proto.error(proto.ERR_INVALID_MESSAGE, f"Invalid config: vocabulary: {exc}",
                                             recoverable=True))
                return
            self.config.vocabulary, self.config.keyterms = message["vocabulary"] or None, keyterms
            self._ops.put_nowait(("keyterms",))
        if "endpointing" in message:
            base = self.config.endpointing or self._endpointing()
            try:
                self.config.endpointing = proto.endpointing_options(base, message["endpointing"], allow_vad=False)
            except ValueError as exc:
                self.stats.messages_rejected += 1
                await self._send(proto.error(proto.ERR_INVALID_MESSAGE, f"Invalid config: {exc}", recoverable=True))
                return
        for name in ("language", *proto.CONFIG_FIELDS):
            if name in message:
                setattr(self.config, name, message[name])
        if any(name in message for name in (*proto.CONFIG_FIELDS, "endpointing")):
            self._ops.put_nowait(("endpointing",))
        log.info("session.config session_id=%s %s", self.config.session_id,
                 {k: v for k, v in message.items() if k != "type"})

    async def _apply_ops(self) -> None:
        import parakeet_stream as ps

        while True:
            op = await self._ops.get()
            kind = op[0]
            try:
                if kind == "audio":
                    await self._debug_sleep()
                    self.stream.push(op[1])
                elif kind == "endpointing":
                    self.stream.update_endpointing(self._endpointing())
                elif kind == "keyterms":
                    self.stream.update_keyterms(self.config.vocabulary, self.config.keyterm_weight)
                elif kind == "flush":
                    self.stream.flush()
                elif kind == "clear":
                    self._clear()
                elif kind == "end":
                    self.stream.finish()
                    return
            except ps.AudioFormatError as exc:
                await self._send(proto.error(proto.ERR_INVALID_AUDIO, str(exc), recoverable=True))
            except ps.StreamClosedError:
                return
            except Exception as exc:  # an engine fault must end this session cleanly, not hang it
                log.exception("session.op_failed session_id=%s op=%s", self.config.session_id, kind)
                await self._send(proto.error(proto.ERR_INTERNAL, f"{type(exc).__name__}: {exc}", recoverable=False))
                self._finish(Outcome.ERROR, proto.CLOSE_INTERNAL_ERROR, "Internal error")
                return

    async def _debug_sleep(self) -> None:
        c = self.config
        delay = c.debug_chunk_sleep_initial_seconds + c.debug_chunk_sleep_increment_seconds * self._frames
        self._frames += 1
        if delay > 0:
            await asyncio.sleep(delay)

    def _clear(self) -> None:
        # The engine has no reset: drop the stream (no events) and start a fresh one at the same session time.
        # Ops are ordered, so everything received before the clear is in the old stream.
        old = self.stream
        self._offset += old.audio_seconds
        old.close()
        self._segment_start = None
        self._pending_final = None
        self.open_stream()

    # --- engine -> client ------------------------------------------------------------------------------

    async def _forward_events(self) -> None:
        from parakeet_stream import events as ev

        while True:
            stream = self.stream
            async for event in stream:
                if isinstance(event, ev.SpeechStarted):
                    await self._flush_pending_final(None)
                    await self._on_speech_started(event)
                elif isinstance(event, ev.Partial):
                    await self._on_partial(event)
                elif isinstance(event, ev.Final):
                    await self._flush_pending_final(None)
                    self._pending_final = event
                elif isinstance(event, ev.SpeechEnded):
                    await self._flush_pending_final(event.time)
                elif isinstance(event, ev.StreamEnded):
                    await self._flush_pending_final(None)
                    await self._send_session_end(event.audio_seconds + self._offset)
                    self._finish(Outcome.COMPLETED, proto.CLOSE_NORMAL)
                    return
                elif isinstance(event, ev.StreamFailed):
                    log.error("session.failed session_id=%s message=%s", self.config.session_id, event.message)
                    await self._send(proto.error(proto.ERR_INTERNAL, f"Transcription failed: {event.message}",
                                                 recoverable=False))
                    await self._send_session_end(self.received_s)
                    self._finish(Outcome.ERROR, proto.CLOSE_INTERNAL_ERROR, "Transcription failed")
                    return
            if self.stream is stream:  # closed without StreamEnded: the session is being torn down
                return

    def _session_time(self, t: float) -> float:
        return self._offset + t

    async def _on_speech_started(self, event: Any) -> None:
        self._segment_start = event.time
        if self._vad_events and self.phase is not Phase.TERMINATED:
            ts = self._speech_clock if self.config.timeline == "speech" else self._session_time(event.time)
            await self._send(proto.speech_start(ts))

    async def _on_partial(self, event: Any) -> None:
        if (not self.config.interim_results or not event.delta or not event.text.strip()
                or self.phase is Phase.TERMINATED):
            return
        seg_start = self._segment_start if self._segment_start is not None else event.audio_end
        if self.config.timeline == "speech":
            start, end = self._speech_clock, self._speech_clock + max(0.0, event.audio_end - seg_start)
        else:
            start, end = self._session_time(seg_start), self._session_time(event.audio_end)
        words = None
        if self.config.engine_events and self.config.word_timestamps:
            words = [proto.word(w.text, w.start + self._offset, w.end + self._offset, w.confidence)
                     for w in event.words]
        await self._send(proto.transcript_partial(event.text.strip(), start, end, words))

    async def _flush_pending_final(self, speech_end_time: float | None) -> None:
        final, self._pending_final = self._pending_final, None
        if final is None or self.phase is Phase.TERMINATED:
            return
        c = self.config
        if c.timeline == "speech":
            base = self._speech_clock
            shift = base - final.start
            start, end = base, base + (final.end - final.start)
            vad_end_ts = base
        else:
            shift = self._offset
            start, end = self._session_time(final.start), self._session_time(final.end)
            vad_end_ts = self._session_time(final.end if speech_end_time is None else speech_end_time)
        # dalston's order is vad.speech_end, then the final; engine_events clients get the engine's (final first)
        engine_order = c.engine_events
        if self._vad_events and not engine_order:
            await self._send(proto.speech_end(vad_end_ts))
        text = final.text.strip()
        self._segment_start = None
        if not text and not engine_order:  # dalston never sends empty finals; the engine closes every segment with one
            return
        if c.timeline == "speech":
            self._speech_clock = end
        self._last_final_end = end
        words = [proto.word(w.text, w.start + shift, w.end + shift, w.confidence) for w in final.words]
        confidence = float(np.mean([w.confidence for w in final.words])) if final.words else 0.0
        if text:
            self._segments.append({"start": round(start, 3), "end": round(end, 3), "text": text})
        await self._send(proto.transcript_final(text, start, end, confidence, words if c.word_timestamps else None,
                                                reason=final.reason if engine_order else None,
                                                audio_end=self._session_time(final.audio_end) if engine_order else None))
        if self._vad_events and engine_order:
            await self._send(proto.speech_end(vad_end_ts))

    async def _send_session_end(self, total_audio_seconds: float) -> None:
        if self._end_sent:
            return
        self._end_sent = True
        speech = self._speech_clock if self.config.timeline == "speech" else sum(
            s["end"] - s["start"] for s in self._segments)
        await self._send(proto.session_end(
            self.config.session_id, total_audio_seconds=total_audio_seconds,
            wall_seconds=time.monotonic() - self.started_at, speech_seconds=speech, segments=self._segments))

    # --- lag budget ------------------------------------------------------------------------------------

    async def _watch_lag(self) -> None:
        c = self.config
        last_warning = -1e9
        hard_since: float | None = None
        end_deadline: float | None = None
        while True:
            await asyncio.sleep(LAG_CHECK_INTERVAL_S)
            self.lag_s = lag = max(0.0, self.received_s - self.processed_seconds())
            now = time.monotonic()
            if self.phase is not Phase.OPEN:
                end_deadline = end_deadline or now + END_DEADLINE_S
                if now >= end_deadline:
                    await self._give_up_after_end(lag)
                    return
                continue
            if lag >= c.lag_warning_seconds and now - last_warning >= LAG_WARNING_MIN_INTERVAL_S:
                last_warning = now
                self.stats.lag_warnings += 1
                await self._send(proto.lag_warning(lag, c.lag_warning_seconds, c.lag_hard_seconds))
            if lag < c.lag_hard_seconds:
                hard_since = None
                continue
            if hard_since is None:
                hard_since = now
            if now - hard_since >= c.lag_hard_grace_seconds:
                await self._terminate_for_lag(lag)
                return

    async def _give_up_after_end(self, pending: float) -> None:
        """The audio before `end` was not all transcribed within ``END_DEADLINE_S``: send the finals so far, an
        error naming the audio left, and ``session.end``, before dalston's gateway stops waiting for it."""
        c = self.config
        log.warning("session.end_deadline session_id=%s audio_not_transcribed_s=%.2f deadline_s=%g", c.session_id,
                    pending, END_DEADLINE_S)
        self.stats.audio_seconds_dropped += pending
        await self._flush_pending_final(None)
        self.phase = Phase.TERMINATED
        await self._send(proto.error(
            proto.ERR_LAG_EXCEEDED,
            f"{pending:.2f}s of audio before end was not transcribed within {END_DEADLINE_S:g}s; the session ends "
            f"with the transcript so far", recoverable=False))
        await self._send_session_end(self.received_s)
        self._finish(Outcome.END_DEADLINE, proto.CLOSE_NORMAL)

    async def _terminate_for_lag(self, lag: float) -> None:
        c = self.config
        log.warning("session.lag_exceeded session_id=%s lag_s=%.2f hard_s=%g", c.session_id, lag, c.lag_hard_seconds)
        self.phase = Phase.TERMINATED
        await self._send(proto.error(
            proto.ERR_LAG_EXCEEDED,
            f"Processing fell {lag:.2f}s behind the audio (limit {c.lag_hard_seconds:g}s for "
            f"{c.lag_hard_grace_seconds:g}s); session terminated", recoverable=False))
        await self._send(proto.session_terminated(c.session_id, "lag_exceeded",
                                                  int(round(self._last_final_end * 1000))))
        self._finish(Outcome.LAG_EXCEEDED, proto.CLOSE_LAG_EXCEEDED, "Lag budget exceeded")
