"""``ParakeetSTTService``: a Pipecat streaming STT over one shared ``parakeet_stream`` engine.

Pipecat awaits ``run_stt`` inline on the pipeline task, so it only hands audio to an engine stream (a queue
put: inference runs on the engine's own thread, batched with every other stream of the process). A receive
task turns the stream's events into frames:

========================  ==========================================================================
engine event              frames pushed
========================  ==========================================================================
``SpeechStarted``         ``ProposedUserStartedSpeakingFrame`` (broadcast; turn detection only)
``Partial``               ``InterimTranscriptionFrame`` (the segment's text so far)
``Final``                 ``TranscriptionFrame(finalized=True)`` (skipped when empty), then
                          ``ProposedUserStoppedSpeakingFrame`` (broadcast; turn detection only)
``StreamFailed``          ``ErrorFrame`` upstream, and a fresh stream
========================  ==========================================================================

``VADUserStoppedSpeakingFrame`` from Pipecat's VAD flushes the segment (the engine decodes the pending audio to
the end and emits the Final at once), so speech end → final is one engine step, reported as TTFB by the base
class. With turn detection the model's ``<EOU>`` token ends the turn instead and VAD stops do not cut segments.
"""
from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    StartFrame,
    STTMetadataFrame,
    TranscriptionFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.types import NOT_GIVEN, NotGiven
from pipecat.utils.tracing.service_decorators import traced_stt

import parakeet_stream as ps

# remote mode: a lost session is reopened this many times, this far apart, before the service gives up
RECONNECT_ATTEMPTS = 30
RECONNECT_INTERVAL_S = 1.0
# remote mode: audio Pipecat buffered during a reconnect is replayed up to this much (the newest); serve's default
# lag budget (3 s warning, 5 s hard) takes a 3 s burst without ending the session
DEFAULT_MAX_REPLAY_S = 3.0

# Push-time marks kept to time Finals against (one per audio frame: 60 s of 20 ms frames). A Final older than
# this would mean the engine is a minute behind, which its capacity limits prevent.
_PUSH_MARKS = 3000


@dataclass
class ParakeetSTTSettings(STTSettings):
    """Runtime settings: ``model`` (fixed once loaded), ``language`` (the label put on frames) and ``endpointing``
    (the engine's own segment cuts: ``STTUpdateSettingsFrame(delta=ParakeetSTTSettings(endpointing=...))``
    retunes the open stream from the audio received after it is handled; switching ``vad`` on or off is refused)
    and ``keyterms`` (names, products, jargon boosted in decoding; changed the same way)."""

    endpointing: ps.EndpointingOptions | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    keyterms: list[str] | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)


class ParakeetSTTService(STTService):
    """Streaming speech-to-text with a NeMo cache-aware (Parakeet / Nemotron) model, in process.

    Every service built with the same ``model``/``device``/``dtype``/``chunk_ms`` uses one engine
    (``parakeet_stream.shared_engine``): one model in memory, all pipelines batched together. The first
    ``start`` loads it on a worker thread; call :meth:`load` in a prewarm step to pay that before a call.
    """

    Settings = ParakeetSTTSettings
    _settings: ParakeetSTTSettings

    def __init__(
        self,
        *,
        model: str = ps.DEFAULT_MODEL,
        engine: Any | None = None,
        device: str = "auto",
        dtype: str = "auto",
        chunk_ms: int | None = None,
        max_streams: int = 64,
        num_threads: int | str | None = None,
        lanes: int | None = None,
        endpointing: ps.EndpointingOptions | None = None,
        turn_detection: bool | None = None,
        should_interrupt: bool = True,
        settings: ParakeetSTTSettings | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        session_params: dict[str, str] | None = None,
        max_replay_s: float = DEFAULT_MAX_REPLAY_S,
        keyterms: list[str] | None = None,
        keyterm_weight: float | None = None,
        **kwargs,
    ):
        """Create the service; nothing is loaded until ``start`` (or :meth:`load`).

        Args:
            model: known model name, Hugging Face/NGC name or ``.nemo`` path (``parakeet-stream models``).
            engine: an already loaded ``parakeet_stream.Engine`` to use instead of the shared one.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            dtype: ``"auto"`` (fp32 on CPU, bf16 on CUDA), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
            chunk_ms: streaming chunk (latency/accuracy trade-off); None = the model's default.
            max_streams: streams the shared engine admits when this service is the one that creates it.
            num_threads: CPU threads of each step on one lane: a count or ``"auto"`` (``EngineConfig``); None:
                the engine's lanes.
            lanes: inference threads of one CPU thread each (``EngineConfig.lanes``; None: one per core on the
                CPU, one on CUDA).
            endpointing: how the engine cuts segments on its own (default: ``<EOU>`` token, 800 ms of
                trailing blank); Pipecat's VAD stop always cuts one too unless turn detection is on.
            turn_detection: propose user turn start/stop from the engine's segments (Deepgram-Flux style).
                None = on exactly when the model has an ``<EOU>`` token and ``endpointing.eou`` is on.
            should_interrupt: with turn detection, whether a proposed turn start interrupts the bot.
            settings: ``ParakeetSTTSettings``; ``language`` defaults to English.
            base_url: ``ws://host:port`` of a ``parakeet-stream serve`` worker (default ``$PARAKEET_URL``): the
                pipeline's stream is a session there and this process loads no model. Unset: in process.
            api_key: the server's ``--api-key`` (default ``$PARAKEET_API_KEY``).
            session_params: extra ``/session`` query parameters in remote mode (``lag_hard_seconds``...).
            max_replay_s: remote mode: of the audio Pipecat buffers while a lost session is reopened, the newest
                this many seconds are replayed; older audio is dropped with a warning and counted
                (``dropped_audio_seconds``).
            keyterms: names, products and jargon to boost in decoding (``parakeet_stream.streaming.keyterms`` limits);
                ``keyterm_weight`` how strongly (default 6.0).
            **kwargs: passed to ``STTService`` (``sample_rate``, ``ttfs_p99_latency``, ...).
        """
        default = ParakeetSTTSettings(model=engine.info.name if engine is not None else model,
                                      language=Language.EN, endpointing=endpointing, keyterms=keyterms)
        from parakeet_stream.streaming.keyterms import check_keyterms

        check_keyterms(keyterms, keyterm_weight)  # limits now; spelling once the model is at hand
        self._keyterm_weight = keyterm_weight
        if settings is not None:
            default.apply_update(settings)
        super().__init__(settings=default, **kwargs)
        self._engine = engine
        self._base_url = base_url or os.environ.get("PARAKEET_URL") or None
        if self._base_url and engine is not None:
            raise ValueError("pass either engine= (in process) or base_url= (a parakeet-stream server), not both")
        if self._base_url:
            from parakeet_stream_client import SessionParams, session_url

            session_url(self._base_url, SessionParams())  # a malformed URL is a ValueError now
        self._api_key = api_key or os.environ.get("PARAKEET_API_KEY") or None
        self._session_params = dict(session_params or {})
        self._max_replay_s = max_replay_s
        self.dropped_audio_seconds = 0.0
        # the model comes from the settings, which may change it before the engine loads
        self._engine_config = ps.EngineConfig(device=device, dtype=dtype, chunk_ms=chunk_ms, max_streams=max_streams,
                                              num_threads=num_threads, lanes=lanes)
        self._turn_detection_arg = turn_detection
        self._should_interrupt = should_interrupt
        self._stream: Any | None = None
        self._receive_task: asyncio.Task | None = None
        self._push_marks: collections.deque[tuple[float, float]] = collections.deque(maxlen=_PUSH_MARKS)

    # -- engine --------------------------------------------------------------------------------------------
    def load(self) -> Any:
        """Load (or find) the shared engine. Blocks for seconds: call it from a prewarm step or a thread."""
        if self._engine is None:
            self._engine = ps.shared_engine(self._engine_config.replace(model=str(self._settings.model)))
        return self._engine

    @property
    def remote(self) -> bool:
        """Whether the stream runs on a ``parakeet-stream serve`` worker (``base_url``) instead of in process."""
        return self._base_url is not None

    @property
    def engine(self) -> Any | None:
        """The engine this service streams into (None until loaded)."""
        return self._engine

    @property
    def turn_detection(self) -> bool:
        """Whether this service proposes user turns (known once the engine is loaded): by default exactly when the
        model has an ``<EOU>`` token and the endpointing uses it, since otherwise no segment ends on the model's
        own sense of a finished utterance."""
        if self._turn_detection_arg is not None:
            return self._turn_detection_arg
        uses_eou = (self._settings.endpointing or ps.EndpointingOptions()).eou
        return bool(self._engine is not None and self._engine.info.has_eou and uses_eou)

    def can_generate_metrics(self) -> bool:
        return True

    def service_metadata_frame(self) -> STTMetadataFrame:
        """With turn detection, recommend the turn strategies that leave turn start/stop to this service."""
        frame = super().service_metadata_frame()
        if self.turn_detection:
            from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies

            frame.user_turn_strategies = ExternalUserTurnStrategies(enable_interruptions=self._should_interrupt)
        return frame

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self, frame: StartFrame):
        """Load the engine off the event loop (first service only) and open this pipeline's stream."""
        await super().start(frame)
        if self.remote:
            await self._open_remote_stream()
            return
        if self._engine is None:
            try:
                await asyncio.to_thread(self.load)
            except ps.ParakeetStreamError as e:
                await self.push_error(f"{self}: could not load model {self._settings.model!r}: {e}",
                                      exception=e, force_treat_as_permanent=True)
                raise
        await self._open_stream()

    async def stop(self, frame: EndFrame):
        """Drain: the engine decodes the audio still queued, delivers the last Final, then the stream ends."""
        stream, task = self._stream, self._receive_task
        if stream is not None:
            stream.finish()
        if task is not None:
            await task
        self._stream = self._receive_task = None
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame):
        """Drop the stream at once: its engine slot is freed and no more frames are pushed."""
        await self._close_stream()
        await super().cancel(frame)

    async def cleanup(self):
        await super().cleanup()
        await self._close_stream()

    async def _open_stream(self) -> None:
        try:
            self._stream = self._engine.open_stream(sample_rate=self.sample_rate,
                                                    endpointing=self._settings.endpointing, stream_id=self.name,
                                                    keyterms=self._settings.keyterms or None,
                                                    keyterm_weight=self._keyterm_weight)
        except (ps.ParakeetStreamError, ValueError) as e:  # full engine, unsupported sample rate
            await self.push_error(f"{self}: could not open an engine stream: {e}", exception=e,
                                  force_treat_as_permanent=True)
            raise
        self._push_marks.clear()
        self._receive_task = self.create_task(self._receive(self._stream), name="parakeet_receive")
        logger.debug(f"{self}: stream.opened model={self._engine.info.name} sample_rate={self.sample_rate} "
                     f"chunk_ms={self._engine.info.chunk_ms} turn_detection={self.turn_detection}")
        await self._call_event_handler("on_connected")

    async def _open_remote_stream(self) -> None:
        """Open a server session, retrying a server that is down, restarting or full (``RECONNECT_ATTEMPTS``)."""
        from parakeet_stream_client import RemoteSession, RemoteSessionError, RemoteStream, SessionParams

        endpointing = self._settings.endpointing or ps.EndpointingOptions()
        params = SessionParams(sample_rate=self.sample_rate, endpointing=endpointing,
                               vocabulary=tuple(self._settings.keyterms or ()), keyterm_weight=self._keyterm_weight,
                               extra=self._session_params)
        for attempt in range(1, RECONNECT_ATTEMPTS + 1):
            try:
                session = await RemoteSession.open(self._base_url, params, api_key=self._api_key)
                break
            except RemoteSessionError as e:
                if not e.retryable or attempt == RECONNECT_ATTEMPTS:
                    await self.push_error(f"{self}: could not open a session on the parakeet-stream server: {e}",
                                          exception=e, force_treat_as_permanent=True)
                    raise
                logger.warning(f"{self}: remote.open_failed attempt={attempt}/{RECONNECT_ATTEMPTS} "
                               f"retry_in_s={RECONNECT_INTERVAL_S:g}: {e}")
                await asyncio.sleep(RECONNECT_INTERVAL_S)
        self._stream = RemoteStream(session)
        self._push_marks.clear()
        self._receive_task = self.create_task(self._receive(self._stream), name="parakeet_receive")
        logger.debug(f"{self}: stream.opened remote session_id={session.session_id} sample_rate={self.sample_rate} "
                     f"turn_detection={self.turn_detection}")
        await self._call_event_handler("on_connected")

    def _trim_reconnect_buffer(self) -> None:
        """Keep the newest ``max_replay_s`` of the audio buffered during the reconnect; log and count the rest."""
        kept_s, keep_from = 0.0, len(self._reconnect_audio_buffer)
        for i in range(len(self._reconnect_audio_buffer) - 1, -1, -1):
            audio = self._reconnect_audio_buffer[i][0]
            seconds = len(audio.audio) / 2 / audio.num_channels / audio.sample_rate
            if kept_s + seconds > self._max_replay_s + 1e-9:
                break
            kept_s, keep_from = kept_s + seconds, i
        dropped = self._reconnect_audio_buffer[:keep_from]
        if dropped:
            seconds = sum(len(f.audio) / 2 / f.num_channels / f.sample_rate for f, _ in dropped)
            self.dropped_audio_seconds += seconds
            del self._reconnect_audio_buffer[:keep_from]
            logger.warning(f"{self}: remote.audio_dropped frames={len(dropped)} seconds={seconds:.3f} "
                           f"replayed_seconds={kept_s:.3f} max_replay_s={self._max_replay_s:g}: audio received "
                           f"while reconnecting, beyond what is replayed")

    async def _close_stream(self) -> None:
        stream, task = self._stream, self._receive_task
        self._stream = self._receive_task = None
        if stream is not None:
            stream.close()
        if task is not None:
            await self.cancel_task(task)
        if stream is not None:
            await self._call_event_handler("on_disconnected")

    async def _do_reconnect(self):
        """A failed stream is replaced by a fresh one on the same engine (the base replays buffered audio)."""
        await self._close_stream()
        if self.remote:
            await self._open_remote_stream()
            self._trim_reconnect_buffer()  # the base class replays what is left
            return
        await self._open_stream()

    # -- audio in ------------------------------------------------------------------------------------------
    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Queue the audio on the engine stream; results arrive through the receive task."""
        stream = self._stream
        if stream is None:
            yield ErrorFrame(f"{self}: audio received but no engine stream is open (start failed or the "
                             f"pipeline is stopping); {len(audio)} bytes dropped")
            return
        try:
            stream.push(audio)
        except ps.ParakeetStreamError as e:  # odd byte count; stream closed under us
            yield ErrorFrame(f"{self}: audio frame rejected, its {len(audio)} bytes dropped, the stream goes on: {e}")
            return
        self._push_marks.append((stream.audio_seconds, time.time()))
        yield None

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection):
        """Refuse audio the stream would misread: it was opened for mono at the pipeline's input rate."""
        if frame.num_channels != 1 or frame.sample_rate != self.sample_rate:
            await self.push_error(
                f"{self}: audio frame rejected ({frame.num_channels} channel(s) at {frame.sample_rate} Hz); "
                f"accepted: 1 channel at {self.sample_rate} Hz (the pipeline's audio_in_sample_rate)")
            return
        await super().process_audio_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame) and not self.turn_detection and self._stream is not None:
            # the base class has started TTFB at speech end; the flushed Final stops it
            self._stream.flush()

    # -- results out ---------------------------------------------------------------------------------------
    async def _receive(self, stream) -> None:
        async for event in stream:
            if isinstance(event, ps.Partial):
                if event.text:
                    await self.push_frame(InterimTranscriptionFrame(
                        event.text, self._user_id, time_now_iso8601(), self._language(), result=event))
            elif isinstance(event, ps.Final):
                await self._on_final(event)
            elif isinstance(event, ps.SpeechStarted):
                if self.turn_detection:
                    await self.broadcast_frame(ProposedUserStartedSpeakingFrame)
            elif isinstance(event, ps.StreamFailed):
                logger.error(f"{self}: stream.failed message={event.message}")
                retryable = getattr(event.error, "retryable", True)  # a server session says; an engine stream may
                what = "remote session ended" if self.remote else "engine stream failed"
                await self.push_error(f"{self}: {what}: {event.message}", exception=event.error,
                                      force_treat_as_permanent=not retryable)
                self._receive_task = None  # this task ends here; the reconnect opens a new one
                if retryable and self.remote:
                    # not deferred to the end of the user's turn: the session is gone, audio now would be lost
                    await self._reconnect()
                elif retryable:
                    await self._request_reconnect()
                else:
                    self._stream = None
                return

    async def _on_final(self, event: ps.Final) -> None:
        pushed_at = self._pushed_at(event.audio_end)
        if pushed_at is not None:
            await self.start_processing_metrics(start_time=pushed_at)
            await self.stop_processing_metrics()
        if event.text:
            # usage first, so tracing attaches it to the span this transcript closes
            await self.emit_stt_usage_metrics()
            await self.push_frame(TranscriptionFrame(event.text, self._user_id, time_now_iso8601(),
                                                     self._language(), result=event, finalized=True))
            await self._handle_transcription(event.text, True, self._language())
        if self.turn_detection:
            await self.broadcast_frame(ProposedUserStoppedSpeakingFrame)

    def _pushed_at(self, audio_end: float) -> float | None:
        """Wall time at which the audio up to ``audio_end`` had been pushed: processing = that → the Final."""
        marks = self._push_marks
        while marks and marks[0][0] < audio_end - 1e-3:
            marks.popleft()
        return marks[0][1] if marks else None

    def _language(self) -> Language | None:
        language = self._settings.language
        return language if isinstance(language, Language) else None  # a code Pipecat does not know: no label

    @traced_stt
    async def _handle_transcription(self, transcript: str, is_final: bool, language: Language | None = None):
        """Tracing hook (the span closes on the finalized TranscriptionFrame)."""

    async def _update_settings(self, delta: STTSettings) -> dict[str, Any]:
        """``language`` relabels frames; ``endpointing`` retunes the open stream; a new ``model`` needs a new
        service (a model is shared, not swapped)."""
        changed = await super()._update_settings(delta)
        if "endpointing" in changed and self._stream is not None:
            opts = self._settings.endpointing or ps.EndpointingOptions()
            try:
                self._stream.update_endpointing(opts)
            except (ValueError, ps.ParakeetStreamError) as e:
                await self.push_error(f"{self}: endpointing not changed on the open stream: {e}", exception=e)
        if "keyterms" in changed and self._stream is not None:
            try:
                self._stream.update_keyterms(self._settings.keyterms or None, self._keyterm_weight)
            except (ValueError, ps.ParakeetStreamError) as e:
                await self.push_error(f"{self}: keyterms not changed on the open stream: {e}", exception=e)
        self._warn_unhandled_updated_settings(set(changed) - {"language", "endpointing", "keyterms"})
        return changed
