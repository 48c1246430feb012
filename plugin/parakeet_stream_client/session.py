"""One ``/session`` on a ``parakeet-stream serve`` worker, seen as the engine's own event stream.

The session asks the server for its parakeet-stream extensions (``engine_events``: the final before
``vad.speech_end``, every segment closed by a final, words on partials; ``endpointing``: the engine's own
options), so the messages map one to one onto :mod:`parakeet_stream.events` and an adapter translates a remote
stream exactly as it translates an in-process one. Times are seconds of audio sent on this session.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from parakeet_stream import events as ev
from parakeet_stream.endpointing import EndpointingOptions

from .credentials import redacting_logger
from .errors import RemoteSessionError, ServerUnreachable, SessionClosed, session_closed

log = logging.getLogger("parakeet_stream_client")

CONNECT_TIMEOUT_S = 10.0
# serve pings every 20 s; the client answers them and sends its own so a dead server is noticed while idle
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SessionParams:
    """What one session asks of the server (sent as ``/session`` query parameters).

    ``endpointing`` are the engine's options, applied by the server exactly as an in-process stream applies them;
    ``extra`` holds any other ``/session`` parameter (``lag_hard_seconds``, ``session_id``...).
    """

    sample_rate: int = 16000
    language: str = "en"
    endpointing: EndpointingOptions = field(default_factory=EndpointingOptions)
    interim_results: bool = True
    vocabulary: tuple[str, ...] = ()  # keyterms to boost (dalston's ``vocabulary``)
    keyterm_weight: float | None = None  # how strongly (a parakeet-stream extension; the server's default if None)
    extra: Mapping[str, str] = field(default_factory=dict)

    def query(self) -> dict[str, str]:
        return {
            "encoding": "pcm_s16le",
            "sample_rate": str(self.sample_rate),
            "channels": "1",
            "language": self.language,
            "interim_results": str(self.interim_results).lower(),
            "word_timestamps": "true",
            "engine_events": "true",
            "endpointing": json.dumps(dataclasses.asdict(self.endpointing), separators=(",", ":")),
            **({"vocabulary": json.dumps(list(self.vocabulary))} if self.vocabulary else {}),
            **({"keyterm_weight": f"{self.keyterm_weight:g}"} if self.keyterm_weight is not None else {}),
            **self.extra,
        }


def session_url(base_url: str, params: SessionParams) -> str:
    """``base_url`` (``ws://host:port``, with or without a path) pointed at ``/session`` with ``params``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"parakeet-stream server URL must start with ws:// or wss://, got {base_url!r}")
    if not parts.hostname:
        raise ValueError(f"parakeet-stream server URL has no host: {base_url!r}")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/session") else path + "/session"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(params.query()), ""))


class RemoteSession:
    """A connected session: ``send_audio``/``flush``/``update_endpointing``/``finish`` in, engine events out.

    Iterating yields :mod:`parakeet_stream.events` objects and ends after ``StreamEnded`` (once ``finish()`` was
    called and the server sent ``session.end``); a session that ends any other way raises
    :class:`~parakeet_stream_client.errors.RemoteSessionError` from the iterator, saying whether a retry can help.
    """

    def __init__(self, ws: ClientConnection, url: str, session_id: str, sample_rate: int) -> None:
        self._ws = ws
        self._url = url  # the server's address without the query (never the API key)
        self.session_id = session_id
        self.sample_rate = sample_rate
        self.samples_sent = 0
        self._finishing = False
        self._segment_id = -1
        self._segment_text = ""
        self._server_error = ""  # the last non-recoverable `error` message: it explains the close that follows

    @classmethod
    async def open(cls, base_url: str, params: SessionParams, *, api_key: str | None = None,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> "RemoteSession":
        """Connect and wait for ``session.begin``; raises ``ServerUnreachable`` or ``SessionClosed``."""
        url = session_url(base_url, params)
        where = urlunsplit(urlsplit(url)._replace(query=""))
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        try:
            ws = await websockets.connect(url, additional_headers=headers, open_timeout=connect_timeout,
                                          ping_interval=PING_INTERVAL_S, ping_timeout=PING_TIMEOUT_S,
                                          max_size=2**22, logger=redacting_logger("parakeet_stream_client.ws"))
        except InvalidURI as e:
            raise ValueError(f"parakeet-stream server URL is not valid: {e}") from None
        except InvalidStatus as e:  # an HTTP answer instead of an upgrade (a proxy, the wrong port)
            status = e.response.status_code
            raise SessionClosed(f"{where} answered HTTP {status} instead of a WebSocket upgrade",
                                retryable=status >= 500, close_code=None, reason=str(status)) from None
        except (OSError, TimeoutError, InvalidHandshake) as e:
            raise ServerUnreachable(f"cannot connect to {where}: {type(e).__name__}: {e}") from None
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), connect_timeout))
        except ConnectionClosed:
            raise session_closed(where, ws.close_code, ws.close_reason or "") from None
        except (TimeoutError, asyncio.TimeoutError):
            await ws.close()
            raise ServerUnreachable(f"{where} sent no session.begin within {connect_timeout:g} s") from None
        if first.get("type") != "session.begin":
            await ws.close()
            raise RemoteSessionError(f"{where} is not a parakeet-stream server: first message {first!r}",
                                     retryable=False)
        log.debug("remote.session.begin url=%s session_id=%s", where, first.get("session_id"))
        return cls(ws, where, str(first.get("session_id", "")), params.sample_rate)

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio sent: the session's clock."""
        return self.samples_sent / self.sample_rate

    # -- client -> server -------------------------------------------------------------------------------------

    async def send_audio(self, pcm16: bytes) -> None:
        """Send mono int16 little-endian samples at the session's rate."""
        if len(pcm16) % 2:
            raise ValueError(f"int16 PCM needs an even byte count, got {len(pcm16)} bytes")
        await self._send(pcm16)
        self.samples_sent += len(pcm16) // 2

    async def flush(self) -> None:
        """Finalize the segment in progress; the session goes on."""
        await self._send(json.dumps({"type": "flush"}))

    async def update_endpointing(self, options: EndpointingOptions) -> None:
        """Retune the open session's endpointing from the audio after this message (``vad`` cannot change)."""
        await self._send(json.dumps({"type": "config", "endpointing": dataclasses.asdict(options)}))

    async def update_vocabulary(self, keyterms: tuple[str, ...]) -> None:
        """Boost these keyterms from the audio after this message (empty: none)."""
        await self._send(json.dumps({"type": "config", "vocabulary": list(keyterms) or None}))

    async def finish(self) -> None:
        """No more audio: the server transcribes what it has, then sends ``session.end``."""
        self._finishing = True
        await self._send(json.dumps({"type": "end"}))

    async def close(self) -> None:
        """Abandon the session at once (the server frees its engine stream)."""
        await self._ws.close()

    async def _send(self, data: bytes | str) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            raise self._closed_error() from None

    def _closed_error(self) -> SessionClosed:
        return session_closed(self._url, self._ws.close_code, self._ws.close_reason or "", self._server_error)

    # -- server -> client -------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ev.Event]:
        """The session's events in the engine's order; ends after ``StreamEnded``."""
        try:
            async for raw in self._ws:
                if isinstance(raw, bytes):
                    continue  # the protocol has no binary messages from the server
                message = json.loads(raw)
                event = self._event(message)
                if event is not None:
                    yield event
                    if isinstance(event, ev.StreamEnded):
                        return
        except ConnectionClosed:
            pass
        raise self._closed_error()

    def __aiter__(self) -> AsyncIterator[ev.Event]:
        return self.events()

    def _event(self, m: dict[str, Any]) -> ev.Event | None:
        kind = m.get("type")
        if kind == "vad.speech_start":
            self._segment_id += 1
            self._segment_text = ""
            return ev.SpeechStarted(segment_id=self._segment_id, time=m["timestamp"])
        if kind == "transcript.partial":
            text = m["text"]
            delta = text[len(self._segment_text):] if text.startswith(self._segment_text) else text
            self._segment_text = text
            return ev.Partial(segment_id=self._segment_id, text=text, delta=delta, words=_words(m),
                              audio_end=m["end"], emitted_at=time.monotonic())
        if kind == "transcript.final":
            return ev.Final(segment_id=self._segment_id, text=m["text"], words=_words(m), start=m["start"],
                            end=m["end"], reason=m.get("reason", "vad"), audio_end=m.get("audio_end", m["end"]),
                            emitted_at=time.monotonic())
        if kind == "vad.speech_end":
            return ev.SpeechEnded(segment_id=self._segment_id, time=m["timestamp"])
        if kind == "session.end":
            return ev.StreamEnded(audio_seconds=m["total_audio_seconds"], segments=len(m.get("segments", [])))
        if kind == "error":
            if m.get("recoverable"):
                log.warning("remote.error url=%s session_id=%s code=%s message=%s", self._url, self.session_id,
                            m.get("code"), m.get("message"))
            else:
                self._server_error = f"{m.get('code')}: {m.get('message')}"
        elif kind == "warning":
            log.warning("remote.warning url=%s session_id=%s code=%s message=%s", self._url, self.session_id,
                        m.get("code"), m.get("message"))
        return None


def _words(m: dict[str, Any]) -> tuple[ev.Word, ...]:
    return tuple(ev.Word(text=w["word"], start=w["start"], end=w["end"], confidence=w["confidence"])
                 for w in m.get("words", ()))
