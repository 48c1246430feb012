"""A real Pipecat pipeline around the service under test, fed spoken audio, recording what the service pushes.

Frames are recorded by an observer at the moment ``ParakeetSTTService`` pushes them, so their order is the
service's emission order (a sink's input queue would let system frames overtake data frames).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from pipecat.frames.frames import (EndFrame, ErrorFrame, Frame, InputAudioRawFrame, MetricsFrame,
                                   UserAudioRawFrame)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection
from pipecat.workers.runner import WorkerRunner

from tests.support import packets


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def audio_frames(audio: np.ndarray, rate: int = 16000, user_id: str | None = None) -> list[Frame]:
    """20 ms ``InputAudioRawFrame``s (``UserAudioRawFrame`` when ``user_id`` is given), as transports send."""
    if rate != 16000:
        import soxr

        audio = soxr.resample(audio, 16000, rate).astype(np.float32)
    out: list[Frame] = []
    for p in packets(audio, rate=rate):
        if user_id is None:
            out.append(InputAudioRawFrame(audio=pcm16(p), sample_rate=rate, num_channels=1))
        else:
            out.append(UserAudioRawFrame(audio=pcm16(p), sample_rate=rate, num_channels=1, user_id=user_id))
    return out


@dataclass
class Recorded:
    down: list[Frame] = field(default_factory=list)  # pushed downstream by the service (audio left out)
    up: list[Frame] = field(default_factory=list)  # pushed upstream by the service (errors, broadcasts)

    def of(self, *types: type) -> list[Frame]:
        return [f for f in self.down if isinstance(f, types)]

    def metrics(self, data_type: type) -> list:
        return [d for f in self.down if isinstance(f, MetricsFrame) for d in f.data if isinstance(d, data_type)]

    @property
    def errors(self) -> list[ErrorFrame]:
        return [f for f in self.up if isinstance(f, ErrorFrame)]


class _ServiceRecorder(BaseObserver):
    def __init__(self, service, recorded: Recorded) -> None:
        super().__init__()
        self._service = service
        self._recorded = recorded

    async def on_push_frame(self, data: FramePushed):
        if data.source is not self._service or isinstance(data.frame, InputAudioRawFrame):
            return
        target = self._recorded.down if data.direction == FrameDirection.DOWNSTREAM else self._recorded.up
        target.append(data.frame)


def build_worker(processors: list, service, frames_rate: int = 16000, metrics: bool = False,
                 recorded: Recorded | None = None) -> tuple[PipelineWorker, Recorded, asyncio.Event]:
    recorded = recorded if recorded is not None else Recorded()
    worker = PipelineWorker(
        Pipeline(processors), cancel_on_idle_timeout=False, observers=[_ServiceRecorder(service, recorded)],
        params=PipelineParams(audio_in_sample_rate=frames_rate, enable_metrics=metrics,
                              enable_usage_metrics=metrics))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker, _frame):
        started.set()

    return worker, recorded, started


async def run_pipeline(processors: list, service, frames: list[Frame], *, rate: int = 16000,
                       metrics: bool = False, before_end=None, recorded: Recorded | None = None) -> Recorded:
    """Run ``processors`` (which include ``service``), queue ``frames`` then an ``EndFrame``, and return what the
    service pushed once the pipeline has finished. ``before_end(worker)`` runs between the two (it may cancel);
    pass ``recorded`` to watch the frames while the pipeline runs."""
    worker, recorded, started = build_worker(processors, service, rate, metrics, recorded)

    async def feed():
        await asyncio.wait_for(started.wait(), timeout=120)
        await worker.queue_frames(frames)
        if before_end is not None and await before_end(worker):
            return
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    return recorded
