"""Live captions for LiveKit rooms: every microphone track gets one engine stream, and its transcript is
published on ``lk.transcription`` exactly as LiveKit Agents publishes user transcripts, so existing front
ends (components-react ``useTranscriptions()``, the JS/Flutter/Android ``TranscriptionAttributes``) show it.

Every job of a worker runs in a thread of the worker process (``JobExecutorType.THREAD``), so all rooms share
the process's one engine (one model per device) and the worker's load is simply live streams / capacity.
With a server (``CaptionsConfig.server``, remote mode) there is no model to share: jobs run in LiveKit's default
process executor, each room in a process of its own, and LiveKit's own CPU load measure applies.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess, stt, utils
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)
from livekit.plugins import parakeet

import parakeet_stream as ps

logger = logging.getLogger("parakeet_services.captions")

# remote mode: job processes read their config here (LiveKit hands a job process nothing but the entrypoint)
REMOTE_CONFIG_ENV = "PARAKEET_CAPTIONS_REMOTE_CONFIG"

AUDIO_END_WAIT_S = 1.0  # how long a closing track's audio stream may take to deliver its last frames
# participants whose microphones get captions (other agents, e.g. a TTS voice, publish their own)
CAPTIONED_KINDS = (
    rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
    rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    rtc.ParticipantKind.PARTICIPANT_KIND_INGRESS,
)


@dataclass
class CaptionsConfig:
    url: str | None = None  # None: LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET from the environment
    api_key: str | None = None
    api_secret: str | None = None
    agent_name: str = ""  # "" = automatic dispatch to every new room; a name = explicit dispatch only
    model: str = ps.DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    chunk_ms: int | None = None
    max_streams: int = 64
    endpointing: ps.EndpointingOptions = field(default_factory=ps.EndpointingOptions)
    num_threads: int | str | None = None  # one lane's threads: a count or "auto" (parakeet_stream.runtime.threads)
    lanes: int | None = None  # inference threads of one CPU thread each (None: one per core on the CPU)
    load_threshold: float = 0.9  # stop taking rooms above this share of the engine's streams (remote: of max_rooms)
    max_rooms: int = 32  # remote mode: rooms captioned at once, each in a process of its own
    end_timeout: float = 10.0  # a closing track's pending audio is decoded and captioned for at most this long
    drain_timeout: int = 3600
    http_host: str = ""
    http_port: int = 8081  # health check (GET /) and worker info; 0 = any free port
    http_proxy: str | None = None  # the worker talks to its LiveKit server directly unless told otherwise
    server: str | None = None  # ws:// of a parakeet-stream serve worker: streams run there, no model loads here
    server_api_key: str | None = field(default=None, repr=False)

    @property
    def remote(self) -> bool:
        return self.server is not None

    def engine(self) -> ps.Engine:
        """The process's shared engine for this config (blocking the first time)."""
        return ps.shared_engine(ps.EngineConfig(model=self.model, device=self.device, dtype=self.dtype,
                                                chunk_ms=self.chunk_ms, max_streams=self.max_streams,
                                                num_threads=self.num_threads, lanes=self.lanes))

    def stt(self) -> parakeet.STT:
        if self.remote:
            return parakeet.STT(model=self.model, base_url=self.server, api_key=self.server_api_key,
                                endpointing=self.endpointing)
        return parakeet.STT(model=self.model, device=self.device, dtype=self.dtype, chunk_ms=self.chunk_ms,
                            max_streams=self.max_streams, endpointing=self.endpointing, num_threads=self.num_threads,
                            lanes=self.lanes)


class TrackCaptions:
    """One remote microphone track: its audio into an STT stream, the stream's transcripts into the room."""

    def __init__(self, room: rtc.Room, speech_to_text: stt.STT, participant: rtc.RemoteParticipant,
                 track: rtc.Track, track_sid: str) -> None:
        self._room = room
        self._identity = participant.identity
        self._track_sid = track_sid
        self._audio = rtc.AudioStream.from_track(track=track, sample_rate=ps.MODEL_SAMPLE_RATE, num_channels=1)
        self._stream = speech_to_text.stream()
        self._segment_id = utils.shortuuid("SG_")
        self._tasks = [asyncio.create_task(self._forward_audio(), name=f"captions.audio.{track_sid}"),
                       asyncio.create_task(self._publish(), name=f"captions.publish.{track_sid}")]
        logger.info("captioning track", extra={"room": room.name, "participant": self._identity, "track": track_sid})

    async def _forward_audio(self) -> None:
        try:
            async for ev in self._audio:
                self._stream.push_frame(ev.frame)
        finally:
            self._stream.end_input()  # the track ended (or is being closed): finalize what was said so far

    async def _publish(self) -> None:
        try:
            async for ev in self._stream:
                if ev.type == stt.SpeechEventType.INTERIM_TRANSCRIPT:
                    await self._send(ev.alternatives[0].text, final=False)
                elif ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    await self._send(ev.alternatives[0].text, final=True)
                    self._segment_id = utils.shortuuid("SG_")
        except Exception:
            # the engine is full or failed after LiveKit's retries: this track goes uncaptioned, others continue
            logger.exception("captioning stopped", extra={"participant": self._identity, "track": self._track_sid})

    async def _send(self, text: str, *, final: bool) -> None:
        """One text stream per update carrying the whole segment text, like agents' user transcripts."""
        if not self._room.isconnected():
            return
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if final else "false",
            ATTRIBUTE_TRANSCRIPTION_TRACK_ID: self._track_sid,
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: self._segment_id,
        }
        try:
            writer = await self._room.local_participant.stream_text(
                topic=TOPIC_TRANSCRIPTION, sender_identity=self._identity, attributes=attributes)
            await writer.write(text)
            await writer.aclose()
        except Exception as e:  # a room going away mid-send must not end the other tracks' captions
            logger.warning("caption not published: %s", e, extra={"participant": self._identity})

    async def aclose(self, end_timeout: float) -> None:
        """The track or its speaker is gone: what was said is still decoded and its final published, for at most
        ``end_timeout`` seconds; then the engine slot is freed. Past that, a warning names the audio not captioned."""
        forward, publish = self._tasks
        if not (await asyncio.wait({forward}, timeout=AUDIO_END_WAIT_S))[0]:
            await utils.aio.cancel_and_wait(forward)  # the track's end did not reach its audio stream: end it here
        if not (await asyncio.wait({publish}, timeout=end_timeout))[0]:
            pending = getattr(self._stream, "pending_seconds", None)
            logger.warning("caption stream closed before its end was decoded", extra={
                "participant": self._identity, "track": self._track_sid, "end_timeout_s": end_timeout,
                "audio_not_captioned_s": None if pending is None else round(pending, 2)})
        await self._audio.aclose()
        await self._stream.aclose()
        await utils.aio.cancel_and_wait(*self._tasks)


class RoomCaptions:
    """Captions every captioned participant's microphone in one room, following tracks as they come and go."""

    def __init__(self, room: rtc.Room, speech_to_text: stt.STT, end_timeout: float = 10.0) -> None:
        self._room = room
        self._stt = speech_to_text
        self._end_timeout = end_timeout
        self._tracks: dict[str, TrackCaptions] = {}
        self._closing: set[asyncio.Task] = set()

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def start(self) -> None:
        self._room.on("track_subscribed", self._on_track_subscribed)
        self._room.on("track_unsubscribed", self._on_track_unsubscribed)
        self._room.on("participant_disconnected", self._on_participant_disconnected)
        for participant in self._room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None and publication.subscribed:
                    self._on_track_subscribed(publication.track, publication, participant)

    def _on_track_subscribed(self, track: rtc.Track, publication: rtc.RemoteTrackPublication,
                             participant: rtc.RemoteParticipant) -> None:
        if (track.kind != rtc.TrackKind.KIND_AUDIO or publication.source != rtc.TrackSource.SOURCE_MICROPHONE
                or participant.kind not in CAPTIONED_KINDS or publication.sid in self._tracks):
            return
        self._tracks[publication.sid] = TrackCaptions(self._room, self._stt, participant, track, publication.sid)

    def _on_track_unsubscribed(self, track: rtc.Track, publication: rtc.RemoteTrackPublication,
                               participant: rtc.RemoteParticipant) -> None:
        self._stop(publication.sid)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        for sid in list(participant.track_publications):
            self._stop(sid)

    def _stop(self, track_sid: str) -> None:
        captions = self._tracks.pop(track_sid, None)
        if captions is not None:
            logger.info("track gone, finishing its captions", extra={"room": self._room.name, "track": track_sid})
            task = asyncio.create_task(captions.aclose(self._end_timeout))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        self._room.off("track_subscribed", self._on_track_subscribed)
        self._room.off("track_unsubscribed", self._on_track_unsubscribed)
        self._room.off("participant_disconnected", self._on_participant_disconnected)
        for sid in list(self._tracks):
            self._stop(sid)
        await asyncio.gather(*self._closing, return_exceptions=True)


async def _caption_room(ctx: JobContext, config: CaptionsConfig) -> RoomCaptions:
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    room_captions = RoomCaptions(ctx.room, config.stt(), config.end_timeout)
    room_captions.start()
    logger.info("captioning room", extra={"room": ctx.room.name, "job": ctx.job.id})
    return room_captions


async def remote_captions_job(ctx: JobContext) -> None:
    """The entrypoint of a job process in remote mode (module level: the process executor imports it)."""
    saved = json.loads(os.environ[REMOTE_CONFIG_ENV])
    config = CaptionsConfig(**{**saved, "endpointing": ps.EndpointingOptions(**saved["endpointing"])})
    room_captions = await _caption_room(ctx, config)
    ctx.add_shutdown_callback(room_captions.aclose)


def _build_remote_server(config: CaptionsConfig) -> AgentServer:
    # the job processes inherit this (the forkserver starts after it is set); it holds the server's API key, as
    # PARAKEET_API_KEY would
    os.environ[REMOTE_CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    server = AgentServer(
        ws_url=config.url or "",
        api_key=config.api_key or "",
        api_secret=config.api_secret or "",
        job_executor_type=JobExecutorType.PROCESS,
        load_threshold=config.load_threshold,
        drain_timeout=config.drain_timeout,
        host=config.http_host,
        port=config.http_port,
        http_proxy=config.http_proxy,
    )
    server.rtc_session(agent_name=config.agent_name)(remote_captions_job)

    def load(worker: AgentServer) -> float:
        # the share of rooms taken, not LiveKit's default (the host's CPU): the streams' compute is the server's,
        # which refuses what it cannot take, and a busy neighbour on this host must not stop every dispatch
        return len(worker.active_jobs) / config.max_rooms

    server.load_fnc = load
    return server


def build_server(config: CaptionsConfig) -> AgentServer:
    """A LiveKit worker that captions the rooms it is dispatched to, over this process's shared engine (or, with
    ``config.server``, over a parakeet-stream server, one process per room)."""
    if config.remote:
        return _build_remote_server(config)
    server = AgentServer(
        ws_url=config.url or "",
        api_key=config.api_key or "",
        api_secret=config.api_secret or "",
        # threads, not processes: every room shares one model, and load_fnc sees the engine
        job_executor_type=JobExecutorType.THREAD,
        load_threshold=config.load_threshold,
        num_idle_processes=1,
        initialize_process_timeout=600.0,  # a first-time model load may download a checkpoint
        drain_timeout=config.drain_timeout,
        host=config.http_host,
        port=config.http_port,
        http_proxy=config.http_proxy,
    )

    def prewarm(proc: JobProcess) -> None:
        config.engine()  # no-op once loaded; run_captions loads it before the worker registers

    def load(_: AgentServer) -> float:
        engine = config.engine()
        return engine.active_streams / engine.capacity

    server.setup_fnc = prewarm
    server.load_fnc = load

    @server.rtc_session(agent_name=config.agent_name)
    async def captions(ctx: JobContext) -> None:
        room_captions = await _caption_room(ctx, config)
        ctx.add_shutdown_callback(room_captions.aclose)

    return server
