"""``RemoteStream``: a server session behind the engine ``Stream``'s synchronous surface.

Adapters written around ``parakeet_stream.Stream`` (``push``/``flush``/``finish`` are plain calls, events are
iterated) use a server by swapping the object: calls are queued in order and sent by one task, and a session that
ends early yields ``StreamFailed`` carrying the :class:`RemoteSessionError` (so ``error.retryable`` says whether a
new session may work), just as an engine stream that failed does.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Union

import numpy as np

from parakeet_stream import events as ev
from parakeet_stream.endpointing import EndpointingOptions

from .errors import RemoteSessionError
from .session import RemoteSession

log = logging.getLogger("parakeet_stream_client")

_Op = Union[bytes, str, EndpointingOptions, tuple]  # audio, "flush"/"finish", a retune, (keyterms,)
_FLUSH, _FINISH = "flush", "finish"


class RemoteStream:
    """One open :class:`RemoteSession`, driven like an engine stream (call from the session's event loop)."""

    def __init__(self, session: RemoteSession) -> None:
        self.session = session
        self.id = session.session_id
        self.sample_rate = session.sample_rate
        self._ops: asyncio.Queue[_Op] = asyncio.Queue()
        self._samples_queued = 0
        self._samples_sent = 0
        self._sender = asyncio.get_running_loop().create_task(self._send(), name="parakeet_remote_send")
        self._send_error: RemoteSessionError | None = None
        self._closed = False

    @property
    def audio_seconds(self) -> float:
        """Audio pushed so far (queued or sent): the stream's clock, as on an engine stream."""
        return self._samples_queued / self.sample_rate

    def push(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Queue mono audio at ``sample_rate``: int16 bytes, or float32 samples in [-1, 1]."""
        if isinstance(pcm, np.ndarray):
            data = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        else:
            data = bytes(pcm)
            if len(data) % 2:
                raise ValueError(f"int16 PCM needs an even byte count, got {len(data)} bytes")
        self._samples_queued += len(data) // 2
        self._ops.put_nowait(data)

    def flush(self) -> None:
        self._ops.put_nowait(_FLUSH)

    def finish(self) -> None:
        self._ops.put_nowait(_FINISH)

    def update_endpointing(self, options: EndpointingOptions | None = None, /, **changes) -> EndpointingOptions:
        """Retune the session from the audio queued after this call (``vad`` cannot change: the server refuses)."""
        if options is None:
            raise ValueError("a remote stream needs the whole EndpointingOptions (changes alone are not known here)")
        self._ops.put_nowait(options)
        return options

    def update_keyterms(self, keyterms, weight: float | None = None) -> None:
        """Boost these phrases from the audio queued after this call (None or empty: none). The weight is the
        session's, set when it was opened."""
        self._ops.put_nowait((tuple(keyterms or ()),))

    def close(self) -> None:
        """Abandon the session: queued audio is not sent, the server frees its stream."""
        if not self._closed:
            self._closed = True
            self._sender.cancel()
            asyncio.get_running_loop().create_task(self.session.close())

    async def _send(self) -> None:
        try:
            while True:
                op = await self._ops.get()
                if isinstance(op, bytes):
                    await self.session.send_audio(op)
                    self._samples_sent += len(op) // 2
                elif isinstance(op, EndpointingOptions):
                    await self.session.update_endpointing(op)
                elif isinstance(op, tuple):
                    await self.session.update_vocabulary(op[0])
                elif op == _FLUSH:
                    await self.session.flush()
                else:
                    await self.session.finish()
                    return
        except RemoteSessionError as e:  # the receive side reports the close; this only keeps the cause
            self._send_error = e

    async def events(self) -> AsyncIterator[ev.Event]:
        """The session's events; a session that ends early ends with ``StreamFailed(error=RemoteSessionError)``."""
        try:
            async for event in self.session:
                yield event
        except RemoteSessionError as e:
            unsent = (self._samples_queued - self._samples_sent) / self.sample_rate
            if unsent:
                log.warning("remote.unsent session_id=%s audio_s=%.3f: queued audio not sent before the session "
                            "ended", self.id, unsent)
            yield ev.StreamFailed(message=str(e), error=e)
        finally:
            self._sender.cancel()

    def __aiter__(self) -> AsyncIterator[ev.Event]:
        return self.events()
