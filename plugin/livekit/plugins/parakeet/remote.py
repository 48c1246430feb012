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

"""Remote mode: the STT's streams are sessions on a ``parakeet-stream serve`` worker (``base_url``).

What LiveKit sees is the same as in process: the shared client (:mod:`parakeet_stream_client`) yields the engine's
own events, translated by the same code. This module holds only what differs: connecting, mapping the client's
errors to LiveKit's, and the audio that arrives while a stream reconnects.

Reconnect policy: LiveKit's base class retries ``_run`` within ``conn_options``. Frames pushed meanwhile wait in
the stream's input channel; the next attempt replays the newest ``max_replay_s`` of them (a restarted server
catches up on a short burst, but a long one would trip its lag budget, close 4010) and drops older ones with one
warning line naming the count and seconds, counted in ``SpeechStream.dropped_audio_seconds``. Audio the dead
server had received but not finalized is lost with its connection (its segment is closed with END_OF_SPEECH).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from livekit import rtc
from livekit.agents import APIConnectionError, APIError, APIStatusError
from parakeet_stream.endpointing import EndpointingOptions
from parakeet_stream_client import RemoteSessionError, ServerUnreachable, SessionParams

# replayed after a reconnect: the newest audio of the backlog, at most this much (serve's default lag budget is
# 3 s warning / 5 s hard, so a 3 s burst is transcribed without ending the session)
DEFAULT_MAX_REPLAY_S = 3.0


@dataclass(frozen=True)
class RemoteTarget:
    """Where remote streams go: the server's ``ws://`` URL, its API key, extra ``/session`` parameters."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)  # repr=False: never in a log line or a traceback
    session_params: Mapping[str, str] = field(default_factory=dict)
    max_replay_s: float = DEFAULT_MAX_REPLAY_S


def api_error(e: RemoteSessionError) -> APIError:
    """The client's error as the LiveKit error its retry loop understands (``retryable`` decides)."""
    message = f"parakeet: {e}"
    if isinstance(e, ServerUnreachable):
        return APIConnectionError(message, retryable=True)
    if e.close_code is not None:
        return APIStatusError(message, status_code=e.close_code, retryable=e.retryable)
    return APIConnectionError(message, retryable=e.retryable)


def pcm16_mono(frame: rtc.AudioFrame) -> bytes:
    """The frame as mono int16 bytes: as is for mono, the channel mean (rounded) otherwise."""
    if frame.num_channels == 1:
        return frame.data.tobytes()
    pcm = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return np.round(pcm.astype(np.float32).mean(axis=1)).astype("<i2").tobytes()


def session_params(target: RemoteTarget, sample_rate: int, language: str, endpointing: EndpointingOptions, *,
                   extra: Mapping[str, str] | None = None, keyterms: tuple[str, ...] = (),
                   keyterm_weight: float | None = None) -> SessionParams:
    """A session's parameters: the stream's rate, language, endpointing and keyterms, the STT's and the call's
    extras."""
    return SessionParams(sample_rate=sample_rate, language=language, endpointing=endpointing,
                         vocabulary=tuple(keyterms), keyterm_weight=keyterm_weight,
                         extra={**target.session_params, **(extra or {})})


@dataclass
class Backlog:
    """Frames (and flushes) that arrived while no session was open, trimmed to the newest ``max_s`` seconds."""

    items: list = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(f.duration for f in self.items if isinstance(f, rtc.AudioFrame))

    def trim(self, max_s: float) -> tuple[int, float]:
        """Drop the oldest frames beyond ``max_s`` seconds; returns (frames dropped, seconds dropped)."""
        kept_s = 0.0
        keep_from = len(self.items)
        for i in range(len(self.items) - 1, -1, -1):
            item = self.items[i]
            if isinstance(item, rtc.AudioFrame):
                if kept_s + item.duration > max_s + 1e-9:
                    break
                kept_s += item.duration
            keep_from = i
        dropped = [f for f in self.items[:keep_from] if isinstance(f, rtc.AudioFrame)]
        self.items = self.items[keep_from:]
        return len(dropped), sum(f.duration for f in dropped)
