# Copyright 2026 The parakeet-stream authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""LiveKit ``stt.STT`` over the parakeet-stream engine.

The engine does the work LiveKit plugins usually delegate to a server: it owns the model, runs inference
on its own thread (batched across every live stream of the process) and resamples once with soxr. This
module only translates: LiveKit frames and flushes in, engine events out as ``SpeechEvent``s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

import parakeet_stream as ps
from parakeet_stream.models import DEFAULT_VOICE_AGENT_MODEL
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    stt,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given

from . import remote
from .log import logger
from .models import ParakeetLanguages, ParakeetModels

if TYPE_CHECKING:
    from parakeet_stream_client import RemoteSession

DEFAULT_MODEL = DEFAULT_VOICE_AGENT_MODEL
SUPPORTED_LANGUAGES = ("en",)
# LiveKit's own streaming plugins report usage every 5 s (Deepgram's PeriodicCollector); same cadence here,
# counted in audio seconds so the numbers add up to exactly what was pushed.
USAGE_INTERVAL_S = 5.0


@dataclass
class STTOptions:
    model: str
    language: str
    device: str
    dtype: str
    chunk_ms: int | None
    max_streams: int
    endpointing: ps.EndpointingOptions
    num_threads: int | str | None = None
    lanes: int | None = None
    keyterms: tuple[str, ...] = ()  # the user's (constructor, update_options) and the session's, merged
    keyterm_weight: float | None = None

    def engine_config(self) -> ps.EngineConfig:
        return ps.EngineConfig(model=self.model, device=self.device, dtype=self.dtype, chunk_ms=self.chunk_ms,
                               max_streams=self.max_streams, num_threads=self.num_threads, lanes=self.lanes)


def _check_language(language: str) -> str:
    base = language.split("-")[0].lower()
    if base not in SUPPORTED_LANGUAGES:
        raise ValueError(
            f"language {language!r} is not supported by Parakeet streaming models; accepted: "
            f"{', '.join(SUPPORTED_LANGUAGES)} (or a regional variant such as 'en-US')"
        )
    return base


class STT(stt.STT):
    def __init__(
        self,
        *,
        model: ParakeetModels | str = DEFAULT_MODEL,
        language: ParakeetLanguages | str = "en",
        chunk_ms: int | None = 160,
        device: str = "auto",
        dtype: str = "auto",
        max_streams: int = 64,
        endpointing: ps.EndpointingOptions | None = None,
        engine: ps.Engine | None = None,
        num_threads: int | str | None = None,
        lanes: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        session_params: Mapping[str, str] | None = None,
        max_replay_s: float = remote.DEFAULT_MAX_REPLAY_S,
        keyterms: Sequence[str] | None = None,
        keyterm_weight: float | None = None,
    ) -> None:
        """Streaming speech-to-text with a NeMo cache-aware (Parakeet) model, in this process or on a server.

        Args:
            model: a known short name, a Hugging Face / NGC model name, or a path to a ``.nemo`` file.
            language: only English models exist so far (``"en"``).
            chunk_ms: the engine step: latency vs. accuracy; one of the model's trained chunk sizes
                (``None`` = the model's default).
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            dtype: ``"auto"`` (fp32 on CPU, bf16 on CUDA), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
            max_streams: capacity of the shared engine (streams beyond it fail with a retryable error).
            endpointing: how utterances are cut (model ``<EOU>`` token, trailing blank, Silero VAD).
            engine: an engine you built yourself (``ps.Engine.load``/``from_model``); then the model
                options above are ignored and the process-wide shared engine is not used.
            num_threads: CPU threads of each step on one lane: a count (fixed) or ``"auto"`` (one thread or all
                cores as load and other processes require; ``parakeet_stream.runtime.threads``). ``None``
                (default): the engine's lanes.
            lanes: inference threads over one copy of the weights, one CPU thread each (``EngineConfig.lanes``;
                ``None``: one per core on the CPU). They keep their share of the cores beside other processes'
                torch work, such as the worker's own VAD and turn-detector processes.
            base_url: ``ws://host:port`` of a ``parakeet-stream serve`` worker (default ``$PARAKEET_URL``): each
                stream becomes one session there and this process loads no model (the model options above,
                but ``endpointing`` and ``language``, are then the server's business). Unset: in process.
            api_key: the server's ``--api-key`` (default ``$PARAKEET_API_KEY``), sent as ``Authorization: Bearer``.
            session_params: extra ``/session`` query parameters in remote mode (``lag_hard_seconds``...).
            max_replay_s: remote mode: audio pushed while a stream reconnects is replayed up to this many
                seconds (the newest); older audio is dropped with a warning and counted.
            keyterms: names, products and jargon to boost in every stream's decoding (merged with the keyterms
                an ``AgentSession`` sets); ``keyterm_weight`` how strongly (default 6.0). Bad phrases raise
                ValueError here (limits: ``parakeet_stream.streaming.keyterms``); spelling is checked by the model.

        Loading the model blocks for seconds: call ``prewarm()`` in the worker's setup function, otherwise
        the first stream loads it in a thread executor.
        """
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=True,
                aligned_transcript="word",
                manual_flush=True,
                offline_recognize=True,
                keyterms=True,
            )
        )
        from parakeet_stream.streaming.keyterms import check_keyterms

        check_keyterms(keyterms, keyterm_weight)  # limits and types now; spelling once a model is at hand
        self._user_keyterms: tuple[str, ...] = tuple(keyterms or ())
        self._session_keyterms: tuple[str, ...] = ()
        self._opts = STTOptions(
            model=str(model),
            language=_check_language(language),
            device=device,
            dtype=dtype,
            chunk_ms=chunk_ms,
            max_streams=max_streams,
            endpointing=endpointing if endpointing is not None else ps.EndpointingOptions(),
            num_threads=num_threads,
            lanes=lanes,
            keyterms=self._user_keyterms,
            keyterm_weight=keyterm_weight,
        )
        if engine is not None:
            self._opts.model = engine.info.name
        base_url = base_url or os.environ.get("PARAKEET_URL") or None
        if base_url and engine is not None:
            raise ValueError("pass either engine= (in process) or base_url= (a parakeet-stream server), not both")
        self._remote: remote.RemoteTarget | None = None
        if base_url:
            from parakeet_stream_client import SessionParams, session_url

            session_url(base_url, SessionParams())  # a malformed URL is a ValueError here, not at the first stream
            self._remote = remote.RemoteTarget(
                base_url=base_url, api_key=api_key or os.environ.get("PARAKEET_API_KEY") or None,
                session_params=dict(session_params or {}), max_replay_s=max_replay_s)
        self._engine: ps.Engine | None = engine
        self._engine_lock = threading.Lock()
        self._prewarm_future: asyncio.Future[ps.Engine] | None = None
        self._streams: weakref.WeakSet[SpeechStream] = weakref.WeakSet()

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "parakeet-stream"

    @property
    def engine(self) -> ps.Engine | None:
        """The shared engine once loaded (``None`` before, and always in remote mode): for capacity and metrics."""
        return self._engine

    @property
    def remote(self) -> bool:
        """Whether streams run on a ``parakeet-stream serve`` worker (``base_url``) instead of in process."""
        return self._remote is not None

    def load(self) -> ps.Engine:
        """Load (or reuse) the shared engine. Blocks for seconds the first time: never call it on a loop."""
        with self._engine_lock:
            if self._engine is None:
                o = self._opts
                self._engine = ps.shared_engine(o.engine_config())
                logger.info(
                    "parakeet engine ready",
                    extra={"model": o.model, "device": self._engine.info.device,
                           "chunk_ms": self._engine.info.chunk_ms, "capacity": self._engine.capacity},
                )
            return self._engine

    def prewarm(self) -> None:
        """Load the model: blocking in a worker's setup function, in a thread when called on an event loop.

        ``AgentSession`` calls ``prewarm()`` from its event loop, so there it must not block.
        """
        if self._remote is not None:
            return  # the server holds the model
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.load()
            return
        if self._engine is None and self._prewarm_future is None:
            self._prewarm_future = loop.run_in_executor(None, self.load)
            # a failed background load is reported again (as an APIError) by the first stream
            self._prewarm_future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _aload(self) -> ps.Engine:
        if self._engine is not None:
            return self._engine
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.load)
        except (ps.errors.ModelLoadError, ps.errors.ChunkSizeError) as e:
            raise APIError(f"parakeet: cannot load model {self._opts.model!r}", retryable=False) from e

    def download_files(self) -> None:
        """Fetch this STT's checkpoint into the local cache (no-op for bundled names and local files)."""
        download_model(self._opts.model)

    def update_options(
        self,
        *,
        model: NotGivenOr[ParakeetModels | str] = NOT_GIVEN,
        language: NotGivenOr[ParakeetLanguages | str] = NOT_GIVEN,
        chunk_ms: NotGivenOr[int | None] = NOT_GIVEN,
        device: NotGivenOr[str] = NOT_GIVEN,
        dtype: NotGivenOr[str] = NOT_GIVEN,
        max_streams: NotGivenOr[int] = NOT_GIVEN,
        endpointing: NotGivenOr[ps.EndpointingOptions] = NOT_GIVEN,
        keyterms: NotGivenOr[Sequence[str] | None] = NOT_GIVEN,
        keyterm_weight: NotGivenOr[float | None] = NOT_GIVEN,
    ) -> None:
        """Change options. ``endpointing`` alone (``vad`` kept) and ``keyterms`` apply to live streams in
        place; other changes switch them after finishing (finalizing) the segment in progress."""
        if is_given(keyterms) or is_given(keyterm_weight):
            from parakeet_stream.streaming.keyterms import check_keyterms

            new_terms = tuple((keyterms if is_given(keyterms) else self._user_keyterms) or ())
            weight = keyterm_weight if is_given(keyterm_weight) else self._opts.keyterm_weight
            check_keyterms(new_terms, weight)
            self._user_keyterms, self._opts.keyterm_weight = new_terms, weight
            self._opts.keyterms = self._merged_keyterms()
        old_key = self._opts.engine_config().shared_key()
        if is_given(model):
            self._opts.model = str(model)
        if is_given(language):
            self._opts.language = _check_language(language)
        if is_given(chunk_ms):
            self._opts.chunk_ms = chunk_ms
        if is_given(device):
            self._opts.device = device
        if is_given(dtype):
            self._opts.dtype = dtype
        if is_given(max_streams):
            self._opts.max_streams = max_streams
        if is_given(endpointing):
            self._opts.endpointing = endpointing
        if self._opts.engine_config().shared_key() != old_key:
            with self._engine_lock:
                self._engine = None  # the next stream loads (or reuses) the engine for the new key
                self._prewarm_future = None
        for s in self._streams:
            s.update_options(dataclasses.replace(self._opts))

    def _update_session_keyterms(self, keyterms: list[str]) -> None:
        """LiveKit's session keyterms (``AgentSession``), merged with the user's and applied to live streams."""
        self._session_keyterms = tuple(keyterms or ())
        self._opts.keyterms = self._merged_keyterms()
        for s in self._streams:
            s.update_options(dataclasses.replace(self._opts))

    def _merged_keyterms(self) -> tuple[str, ...]:
        from parakeet_stream.streaming.keyterms import MAX_KEYTERMS

        merged = tuple(dict.fromkeys((*self._user_keyterms, *self._session_keyterms)))
        if len(merged) > MAX_KEYTERMS:
            logger.warning("keyterms beyond the limit are not boosted",
                           extra={"keyterms": len(merged), "limit": MAX_KEYTERMS})
        return merged[:MAX_KEYTERMS]

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        lang = _check_language(language) if is_given(language) else self._opts.language
        frame = rtc.combine_audio_frames(buffer)
        if self._remote is not None:
            return await self._recognize_remote(frame, lang, conn_options)
        audio = _mono(frame)
        engine = await self._aload()
        loop = asyncio.get_running_loop()
        try:
            transcript = await loop.run_in_executor(None, engine.transcribe, audio, frame.sample_rate)
        except ps.errors.AudioFormatError as e:
            raise APIError("parakeet: unusable audio", retryable=False) from e
        except ValueError as e:  # keyterms the model cannot spell
            raise APIError(f"parakeet: {e}", retryable=False) from e
        words = [_timed(w, 0.0) for w in transcript.words]
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid("PK_"),
            alternatives=[
                stt.SpeechData(
                    language=lang,
                    text=transcript.text,
                    start_time=transcript.words[0].start if transcript.words else 0.0,
                    end_time=frame.duration,
                    confidence=_confidence(transcript.words),
                    words=words,
                )
            ],
        )

    async def _recognize_remote(
        self, frame: rtc.AudioFrame, language: str, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        """One session: the whole buffer, ``end``, the finals joined (as ``Engine.transcribe`` gives one)."""
        from parakeet_stream_client import RemoteSession, RemoteSessionError

        assert self._remote is not None
        # the buffer arrives at once by design: give the server's lag budget its length
        budget = {"lag_warning_seconds": f"{frame.duration + 3:.3f}", "lag_hard_seconds": f"{frame.duration + 5:.3f}"}
        params = remote.session_params(self._remote, frame.sample_rate, language, self._opts.endpointing,
                                       extra=budget)
        finals: list[ps.events.Final] = []
        try:
            session = await RemoteSession.open(self._remote.base_url, params, api_key=self._remote.api_key,
                                               connect_timeout=conn_options.timeout)
            try:
                await session.send_audio(remote.pcm16_mono(frame))
                await session.finish()
                finals = [e async for e in session if isinstance(e, ps.events.Final) and e.text]
            finally:
                await session.close()
        except RemoteSessionError as e:
            raise remote.api_error(e) from None  # the message already says all the cause would
        words = tuple(w for f in finals for w in f.words)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid("PK_"),
            alternatives=[
                stt.SpeechData(
                    language=language,
                    text=" ".join(f.text for f in finals),
                    start_time=words[0].start if words else 0.0,
                    end_time=frame.duration,
                    confidence=_confidence(words),
                    words=[_timed(w, 0.0) for w in words],
                )
            ],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[ParakeetLanguages | str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        opts = dataclasses.replace(self._opts)
        if is_given(language):
            opts.language = _check_language(language)
        stream = SpeechStream(stt=self, opts=opts, conn_options=conn_options)
        self._streams.add(stream)
        return stream


class SpeechStream(stt.SpeechStream):
    """One LiveKit audio stream = one engine stream (re-opened on retry or after ``update_options``).

    No ``sample_rate`` is passed to the base class: its resampler is built for mono only and would garble
    stereo frames, and the engine resamples anyway. Frames are down-mixed here and pushed at their own rate.
    """

    def __init__(self, *, stt: STT, opts: STTOptions, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=stt, conn_options=conn_options)
        self._stt: STT = stt
        self._opts = opts
        self._options_changed = False
        self._retune = False  # endpointing changed: applied to the open engine stream at the next frame
        self._rekey = False  # keyterms changed: likewise
        self._speaking = False
        self._usage_samples = 0  # counted in samples so the reported seconds add up exactly
        self._usage_rate = ps.MODEL_SAMPLE_RATE
        self._unsent: list[rtc.AudioFrame] = []
        self._engine_stream: ps.Stream | None = None  # the engine stream audio goes to now
        # remote mode
        self._session: RemoteSession | None = None  # the server session audio goes to now
        self._backlog = remote.Backlog()  # frames taken but not sent (a failed attempt), replayed by the next one
        self._origin: float | None = None  # start_time_offset of the first attempt: the stream clock's zero
        self._clock_s = 0.0  # audio taken from the input so far, sent or dropped: where the next session starts
        self._attempts = 0
        self.dropped_audio_seconds = 0.0
        """Remote mode: audio pushed while reconnecting that was not replayed (see ``max_replay_s``)."""

    @property
    def pending_seconds(self) -> float | None:
        """Audio pushed to the engine but not decoded yet (what closing the stream now would leave uncaptioned);
        ``None`` in remote mode, where only the server knows."""
        if self._stt._remote is not None:
            return None
        s = self._engine_stream
        return 0.0 if s is None else max(0.0, s.audio_seconds - s.processed_seconds)

    async def _input(self) -> AsyncIterator[rtc.AudioFrame | stt.SpeechStream._FlushSentinel]:
        while self._unsent:
            yield self._unsent.pop(0)
        async for item in self._input_ch:
            yield item

    def update_options(self, opts: STTOptions) -> None:
        # endpointing alone (VAD kept on or off) retunes the open engine stream; anything else reopens it (a
        # server session keeps its model whatever the options say: only switching VAD reopens it)
        same_engine = (self._stt._remote is not None
                       or opts.engine_config().shared_key() == self._opts.engine_config().shared_key())
        live = same_engine and opts.endpointing.vad == self._opts.endpointing.vad
        if (opts.keyterms, opts.keyterm_weight) != (self._opts.keyterms, self._opts.keyterm_weight):
            self._rekey = True
        self._opts = opts
        if live:
            self._retune = True
        else:
            self._options_changed = True

    async def _run(self) -> None:
        if self._speaking:  # a previous attempt died inside a segment: keep START/END paired
            self._speaking = False
            self._emit(stt.SpeechEventType.END_OF_SPEECH)
        if self._stt._remote is not None:
            await self._run_remote(self._stt._remote)
            return
        engine = await self._stt._aload()
        opened: list[ps.Stream] = []
        # engine streams in the order they were opened, each with its offset on this stream's clock
        handoff: asyncio.Queue[tuple[ps.Stream, float, str] | None] = asyncio.Queue()
        send = asyncio.create_task(self._send_audio(engine, opened, handoff), name="parakeet.send")
        recv = asyncio.create_task(self._emit_events(handoff), name="parakeet.recv")
        try:
            done, _ = await asyncio.wait({send, recv}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            await utils.aio.gracefully_cancel(send, recv)
            for s in opened:
                s.close()  # frees the engine slot at once; a no-op for finished streams

    async def _send_audio(
        self,
        engine: ps.Engine,
        opened: list[ps.Stream],
        handoff: asyncio.Queue[tuple[ps.Stream, float, str] | None],
    ) -> None:
        current: ps.Stream | None = None
        clock = self.start_time_offset  # stream-clock origin of the current engine stream
        try:
            async for item in self._input():
                if self._retune and current is not None and not self._options_changed:
                    self._retune = False
                    current.update_endpointing(self._opts.endpointing)
                if self._rekey and current is not None and not self._options_changed:
                    self._rekey = False
                    current.update_keyterms(self._opts.keyterms or None, self._opts.keyterm_weight)
                if self._options_changed and current is not None:
                    # endpointing and model are fixed per engine stream: close this one's segment properly
                    clock += current.audio_seconds
                    current.finish()
                    current = None
                    engine = await self._stt._aload()  # a new model/device was loaded if those changed
                if isinstance(item, self._FlushSentinel):
                    if current is not None:
                        current.flush()
                    continue
                if current is None:
                    self._options_changed = self._retune = False  # opened with the latest options
                    request_id = utils.shortuuid("PK_")
                    try:
                        current = await self._open(engine, item.sample_rate, request_id)
                    except APIError:
                        self._unsent.append(item)  # the retry starts with this frame: no audio is lost
                        raise
                    opened.append(current)
                    self._engine_stream = current
                    handoff.put_nowait((current, clock, request_id))
                try:
                    current.push(_mono(item))
                except ps.errors.AudioFormatError as e:
                    raise APIError("parakeet: unusable audio frame", retryable=False) from e
                self._count_usage(item.samples_per_channel, item.sample_rate)
            if current is not None:
                current.finish()
        finally:
            handoff.put_nowait(None)
        if self._usage_samples > 0:
            self._emit_usage()

    # -- remote mode: one server session at a time ------------------------------------------------------------

    async def _run_remote(self, target: remote.RemoteTarget) -> None:
        from parakeet_stream_client import RemoteSessionError

        if self._origin is None:
            self._origin = self.start_time_offset
        if self._attempts > 0:
            self._take_backlog(target.max_replay_s)
        self._attempts += 1
        opened: list[RemoteSession] = []
        handoff: asyncio.Queue[tuple[RemoteSession, float, str] | None] = asyncio.Queue()
        send = asyncio.create_task(self._send_remote(target, opened, handoff), name="parakeet.remote.send")
        recv = asyncio.create_task(self._emit_remote_events(handoff), name="parakeet.remote.recv")
        try:
            done, _ = await asyncio.wait({send, recv}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        except RemoteSessionError as e:
            raise remote.api_error(e) from None  # the message already says all the cause would
        finally:
            await utils.aio.gracefully_cancel(send, recv)
            self._session = None
            for session in opened:
                await session.close()

    def _take_backlog(self, max_replay_s: float) -> None:
        """Move what arrived during the reconnect into the backlog and keep its newest ``max_replay_s``."""
        while True:
            try:
                self._backlog.items.append(self._input_ch.recv_nowait())
            except (utils.aio.channel.ChanEmpty, utils.aio.channel.ChanClosed):
                break
        frames, seconds = self._backlog.trim(max_replay_s)
        if frames:
            self._clock_s += seconds  # the stream clock goes on: later words keep their place in the audio
            self.dropped_audio_seconds += seconds
            logger.warning(
                "parakeet: audio pushed while reconnecting was dropped; the newest is replayed",
                extra={"dropped_frames": frames, "dropped_seconds": round(seconds, 3),
                       "replayed_seconds": round(self._backlog.seconds, 3), "max_replay_s": max_replay_s},
            )

    async def _remote_input(self) -> AsyncIterator[rtc.AudioFrame | stt.SpeechStream._FlushSentinel]:
        while self._backlog.items:
            yield self._backlog.items.pop(0)
        async for item in self._input_ch:
            yield item

    async def _send_remote(
        self,
        target: remote.RemoteTarget,
        opened: list[RemoteSession],
        handoff: asyncio.Queue[tuple[RemoteSession, float, str] | None],
    ) -> None:
        from parakeet_stream_client import RemoteSessionError

        try:
            async for item in self._remote_input():
                try:
                    await self._send_item(item, target, opened, handoff)
                except RemoteSessionError:
                    self._backlog.items.insert(0, item)  # not sent: the next attempt starts with it
                    raise
            if self._session is not None:
                await self._session.finish()
        finally:
            handoff.put_nowait(None)
        if self._usage_samples > 0:
            self._emit_usage()

    async def _send_item(
        self,
        item: rtc.AudioFrame | stt.SpeechStream._FlushSentinel,
        target: remote.RemoteTarget,
        opened: list[RemoteSession],
        handoff: asyncio.Queue[tuple[RemoteSession, float, str] | None],
    ) -> None:
        from parakeet_stream_client import RemoteSession

        if self._session is not None and self._options_changed:
            # VAD switched on or off: the server's stream cannot change that; finish this session's segment
            await self._session.finish()
            self._session = None
        elif self._session is not None and self._retune:
            self._retune = False
            await self._session.update_endpointing(self._opts.endpointing)
        if self._session is not None and self._rekey:
            self._rekey = False
            await self._session.update_vocabulary(self._opts.keyterms)
        if isinstance(item, self._FlushSentinel):
            if self._session is not None:
                await self._session.flush()
            return
        if self._session is None:
            self._options_changed = self._retune = self._rekey = False  # opened with the latest options
            params = remote.session_params(target, item.sample_rate, self._opts.language, self._opts.endpointing,
                                           keyterms=self._opts.keyterms, keyterm_weight=self._opts.keyterm_weight)
            self._session = await RemoteSession.open(target.base_url, params, api_key=target.api_key,
                                                     connect_timeout=self._conn_options.timeout)
            opened.append(self._session)
            assert self._origin is not None
            handoff.put_nowait((self._session, self._origin + self._clock_s, utils.shortuuid("PK_")))
        await self._session.send_audio(remote.pcm16_mono(item))
        self._clock_s += item.duration
        self._count_usage(item.samples_per_channel, item.sample_rate)

    async def _emit_remote_events(self, handoff: asyncio.Queue[tuple[RemoteSession, float, str] | None]) -> None:
        while (item := await handoff.get()) is not None:
            session, offset, request_id = item
            async for ev in session:
                self._translate(ev, offset, request_id)
            if self._speaking:  # finished mid-segment (VAD switched while speaking)
                self._speaking = False
                self._emit(stt.SpeechEventType.END_OF_SPEECH, request_id)

    async def _open(self, engine: ps.Engine, sample_rate: int, request_id: str) -> ps.Stream:
        # open_stream waits for the inference thread to finish its current step: keep that off the loop
        open_stream = functools.partial(
            engine.open_stream, sample_rate=sample_rate, endpointing=self._opts.endpointing, stream_id=request_id,
            keyterms=self._opts.keyterms or None, keyterm_weight=self._opts.keyterm_weight,
        )
        try:
            return await asyncio.get_running_loop().run_in_executor(None, open_stream)
        except ps.errors.CapacityError as e:
            # another worker (or a later retry) may have room: let LiveKit retry and report it
            raise APIConnectionError("parakeet: no free stream on the engine", retryable=True) from e
        except ps.errors.AudioFormatError as e:
            raise APIError("parakeet: unusable audio", retryable=False) from e

    async def _emit_events(self, handoff: asyncio.Queue[tuple[ps.Stream, float, str] | None]) -> None:
        while (item := await handoff.get()) is not None:
            engine_stream, offset, request_id = item
            async for ev in engine_stream:
                if isinstance(ev, ps.events.StreamFailed):
                    raise APIConnectionError(f"parakeet: engine stream failed: {ev.message}", retryable=True) from ev.error
                self._translate(ev, offset, request_id)
            if self._speaking:  # closed mid-segment (options changed while speaking)
                self._emit(stt.SpeechEventType.END_OF_SPEECH, request_id)

    def _translate(self, ev: ps.events.Event, offset: float, request_id: str) -> None:
        if isinstance(ev, ps.events.SpeechStarted):
            self._speaking = True
            self._emit(stt.SpeechEventType.START_OF_SPEECH, request_id)
        elif isinstance(ev, ps.events.Partial):
            if ev.text:
                data = self._speech_data(ev.text, ev.words, offset, end=ev.audio_end)
                self._emit(stt.SpeechEventType.INTERIM_TRANSCRIPT, request_id, data)
        elif isinstance(ev, ps.events.Final):
            # an endpoint that heard no words still closes its START/END pair, but carries no transcript
            if ev.text:
                data = self._speech_data(ev.text, ev.words, offset, start=ev.start, end=ev.end)
                self._emit(stt.SpeechEventType.FINAL_TRANSCRIPT, request_id, data)
        elif isinstance(ev, ps.events.SpeechEnded):
            self._speaking = False
            self._emit(stt.SpeechEventType.END_OF_SPEECH, request_id)

    def _speech_data(
        self,
        text: str,
        words: tuple[ps.events.Word, ...],
        offset: float,
        *,
        end: float,
        start: float | None = None,
    ) -> stt.SpeechData:
        if start is None:
            start = words[0].start if words else end
        return stt.SpeechData(
            language=self._opts.language,
            text=text,
            start_time=start + offset,
            end_time=end + offset,
            confidence=_confidence(words),
            words=[_timed(w, offset) for w in words],
        )

    def _emit(
        self, kind: stt.SpeechEventType, request_id: str = "", data: stt.SpeechData | None = None
    ) -> None:
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=kind, request_id=request_id, alternatives=[data] if data else [])
        )

    def _count_usage(self, samples: int, sample_rate: int) -> None:
        self._usage_samples += samples
        self._usage_rate = sample_rate
        if self._usage_samples >= USAGE_INTERVAL_S * sample_rate:
            self._emit_usage()

    def _emit_usage(self) -> None:
        seconds = self._usage_samples / self._usage_rate
        self._usage_samples = 0
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.RECOGNITION_USAGE,
                recognition_usage=stt.RecognitionUsage(audio_duration=seconds),
            )
        )


def _mono(frame: rtc.AudioFrame) -> bytes | np.ndarray:
    """int16 bytes for mono frames (no copy into float); the channel mean as float32 otherwise."""
    if frame.num_channels == 1:
        return frame.data.tobytes()
    pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return (pcm.astype(np.float32).mean(axis=1) / 32768.0).astype(np.float32)


def _timed(word: ps.events.Word, offset: float) -> TimedString:
    return TimedString(
        word.text,
        start_time=word.start + offset,
        end_time=word.end + offset,
        confidence=word.confidence,
        start_time_offset=offset,
    )


def _confidence(words: tuple[ps.events.Word, ...] | list[ps.events.Word]) -> float:
    return float(sum(w.confidence for w in words) / len(words)) if words else 0.0


def download_model(model: str) -> None:
    """Put ``model``'s checkpoint in the local cache the engine loads from (``parakeet_stream.models``)."""
    from parakeet_stream.models import download_model as download

    found = download(model)
    logger.info("model ready offline", extra={"model": model, "source": found.source, "path": str(found.path)})
