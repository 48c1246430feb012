"""A Pipecat pipeline with ParakeetSTTService: audio in -> Silero VAD -> Parakeet STT -> printed transcripts.

Runs offline on a CPU with the bundled demo model:

    python examples/pipecat_pipeline.py                       # speaks a sentence with espeak-ng
    python examples/pipecat_pipeline.py call.wav --model nvidia/nemotron-speech-streaming-en-0.6b

In a voice agent the same service sits between the transport and the user aggregator:

    Pipeline([transport.input(), ParakeetSTTService(model=...), user_aggregator, llm, tts, transport.output(),
              assistant_aggregator])

with ``VADProcessor`` (or the transport's VAD) upstream of it, so a VAD stop finalizes the utterance at once.
Every ParakeetSTTService in the process with the same model shares one engine (one copy of the weights, all
calls batched together); call ``service.load()`` in a prewarm step to load it before the first call.
"""
from __future__ import annotations

import argparse
import asyncio

import numpy as np


def read_audio(path: str | None, text: str) -> tuple[np.ndarray, int]:
    """A mono float32 file, or ``text`` spoken by espeak-ng when no file is given."""
    import soundfile as sf

    if path is None:
        from parakeet_services.speech import espeak

        audio, rate = espeak(text), 16000
    else:
        audio, rate = sf.read(path, dtype="float32")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.concatenate([audio, np.zeros(rate, np.float32)]), rate  # 1 s of silence: the VAD hears the end


async def main(args: argparse.Namespace) -> None:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import EndFrame, InputAudioRawFrame, InterimTranscriptionFrame, TranscriptionFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from parakeet_pipecat import ParakeetSTTService

    class PrintTranscripts(FrameProcessor):
        async def process_frame(self, frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, TranscriptionFrame):
                print(f"final:   {frame.text}", flush=True)
            elif isinstance(frame, InterimTranscriptionFrame):
                print(f"interim: {frame.text}", flush=True)
            await self.push_frame(frame, direction)

    audio, rate = read_audio(args.audio, args.text)
    stt = ParakeetSTTService(model=args.model, device=args.device)
    await asyncio.to_thread(stt.load)  # blocking: seconds for a hub model, once per process
    worker = PipelineWorker(Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt, PrintTranscripts()]),
                            params=PipelineParams(audio_in_sample_rate=rate), cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker, _frame):
        started.set()

    async def feed() -> None:
        await started.wait()
        step = rate // 50  # 20 ms frames, as a transport delivers them
        for i in range(0, len(audio), step):
            pcm = (np.clip(audio[i:i + step], -1, 1) * 32767).astype("<i2").tobytes()
            await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=rate, num_channels=1))
            if args.realtime:
                await asyncio.sleep(0.02)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", help="a WAV/FLAC file (default: espeak-ng speaks --text)")
    parser.add_argument("--text", default="call me at seven thirty tomorrow morning")
    parser.add_argument("--model", default="espeak-demo-en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--realtime", action="store_true", help="pace the audio at real time")
    asyncio.run(main(parser.parse_args()))
