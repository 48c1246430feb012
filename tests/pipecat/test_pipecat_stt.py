"""ParakeetSTTService in a real Pipecat pipeline (Silero VAD processor, the demo engine, spoken audio)."""
from __future__ import annotations

import asyncio
import datetime

import numpy as np
import pytest
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (InputAudioRawFrame, InterimTranscriptionFrame, MetricsFrame, ProposedUserStartedSpeakingFrame,
                                   ProposedUserStoppedSpeakingFrame, STTMetadataFrame, TranscriptionFrame,
                                   VADUserStoppedSpeakingFrame)
from pipecat.metrics.metrics import ProcessingMetricsData, STTUsageMetricsData, TTFBMetricsData
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.transcriptions.language import Language
from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies

import parakeet_stream as ps
from parakeet_stream.audio import ACCEPTED
from parakeet_pipecat import ParakeetSTTService
from tests.pipecat.pipeline_kit import audio_frames, build_worker, pcm16, run_pipeline
from tests.support import KEYTERM, KEYTERM_MISHEARD, keyterm_speech, silence, speech

pytestmark = pytest.mark.asyncio(loop_scope="session")

# only Pipecat's VAD (or the end of the stream) ends a segment: the engine's own endpointers are off
VAD_ONLY = ps.EndpointingOptions(eou=False, trailing_blank_ms=None)
TRANSCRIPTS = (InterimTranscriptionFrame, TranscriptionFrame)
PROPOSALS = (ProposedUserStartedSpeakingFrame, ProposedUserStoppedSpeakingFrame)


def utterances(*sentences: str, gap: float = 1.0) -> np.ndarray:
    parts = [silence(0.5)]
    for s in sentences:
        parts += [speech(s), silence(gap)]
    return np.concatenate(parts)


async def released(engine) -> bool:
    """Whether the engine's open-stream count returns to 0: the scheduler thread frees a finished or closed
    stream's slot just after delivering its last event, so the count may lag the pipeline's end briefly."""
    for _ in range(1000):
        if engine.active_streams == 0:
            return True
        await asyncio.sleep(0.01)
    return False


def by_segment(frames) -> list[tuple[list[str], TranscriptionFrame]]:
    """[(interim texts, final)] per segment, asserting nothing is pushed after the last final."""
    out, interims = [], []
    for f in frames:
        if isinstance(f, TranscriptionFrame):
            out.append((interims, f))
            interims = []
        else:
            interims.append(f.text)
    assert interims == []
    return out


async def test_vad_stop_finalizes_each_utterance_with_interims_first(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    sentences = ("call me at seven thirty", "set a timer for ten minutes")
    rec = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt],
                             stt, audio_frames(utterances(*sentences), user_id="caller-7"))

    segments = by_segment(rec.of(*TRANSCRIPTS))
    assert [final.text for _, final in segments] == list(sentences)
    for (interims, final), sentence in zip(segments, sentences):
        assert interims[-1] == sentence  # interims grow to the final text...
        assert all(b.startswith(a) for a, b in zip(interims, interims[1:]))  # ...never revising what was shown
        assert final.finalized is True
        assert final.result.reason == "flush"
    for f in rec.of(*TRANSCRIPTS):
        assert (f.user_id, f.language) == ("caller-7", Language.EN)
        assert datetime.datetime.fromisoformat(f.timestamp).tzinfo is not None
    # each final follows the VAD stop that flushed it (the service forwards the stop before flushing)
    order = [type(f) for f in rec.of(VADUserStoppedSpeakingFrame, TranscriptionFrame)]
    assert order.index(TranscriptionFrame) > order.index(VADUserStoppedSpeakingFrame)
    assert order.count(VADUserStoppedSpeakingFrame) == 2
    assert await released(demo_engine)


async def test_end_frame_drains_the_tail_before_the_pipeline_ends(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    rec = await run_pipeline([stt], stt, audio_frames(speech("please open the window")))  # no VAD, no silence

    [(interims, final)] = by_segment(rec.of(*TRANSCRIPTS))
    assert (final.text, final.result.reason, final.finalized) == ("please open the window", "finish", True)
    assert final.user_id == ""  # plain InputAudioRawFrames carry no user
    assert await released(demo_engine)


async def test_other_input_rates_are_resampled_by_the_engine(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    rec = await run_pipeline([stt], stt, audio_frames(speech("turn on the lights"), rate=48000), rate=48000)

    assert [f.text for f in rec.of(TranscriptionFrame)] == ["turn on the lights"]


async def test_metrics_ttfb_processing_and_usage(demo_engine):
    audio = utterances("two three four")
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY, stt_ttfb_timeout=600.0,
                             ttfs_p99_latency=0.3)
    rec = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt], stt, audio_frames(audio),
                             metrics=True)

    [meta] = rec.of(STTMetadataFrame)
    assert (meta.ttfs_p99_latency, meta.user_turn_strategies) == (0.3, None)
    [ttfb] = [m for m in rec.metrics(TTFBMetricsData) if m.model]  # the pipeline starts with an empty one
    [processing] = [m for m in rec.metrics(ProcessingMetricsData) if m.model]
    for m in (ttfb, processing):
        assert (m.processor, m.model) == (stt.name, "espeak-demo-en")
        assert m.value > 0
    # processing, usage and speech end -> final are reported as the finalized transcript is pushed, before it
    names = [type(f.data[0]).__name__ if isinstance(f, MetricsFrame) else type(f).__name__ for f in rec.down
             if isinstance(f, TranscriptionFrame) or isinstance(f, MetricsFrame) and f.data[0].model]
    at = names.index("TranscriptionFrame")
    assert names[at - 3:at + 1] == ["ProcessingMetricsData", "STTUsageMetricsData", "TTFBMetricsData",
                                    "TranscriptionFrame"]
    # usage: every second pushed, counted once, whether reported at the final or at the stop
    usage = sum(m.value.audio_seconds for m in rec.metrics(STTUsageMetricsData))
    assert usage == pytest.approx(len(audio) / 16000, abs=1e-9)


async def test_cancel_drops_the_stream_without_a_final(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    audio = speech("we have ten minutes left")

    streams = []

    async def cancel_once_pushed(worker):
        while stt._stream is None or stt._stream.audio_seconds < len(audio) / 16000:
            await asyncio.sleep(0.01)
        streams.append(stt._stream)
        await worker.cancel()
        return True

    rec = await run_pipeline([stt], stt, audio_frames(audio), before_end=cancel_once_pushed)
    assert rec.of(TranscriptionFrame) == []
    assert streams[0].closed and stt._stream is None
    assert await released(demo_engine)


async def test_pipelines_share_one_engine_loaded_off_the_loop():
    a = ParakeetSTTService(model="espeak-demo-en", device="cpu", endpointing=VAD_ONLY)
    b = ParakeetSTTService(model="espeak-demo-en", device="cpu", endpointing=VAD_ONLY)
    ra, rb = await asyncio.gather(run_pipeline([a], a, audio_frames(speech("two three four"))),
                                  run_pipeline([b], b, audio_frames(speech("can you call john for me"))))

    assert a.engine is b.engine is ps.shared_engine(ps.EngineConfig(model="espeak-demo-en", device="cpu"))
    assert [f.text for f in ra.of(TranscriptionFrame)] == ["two three four"]
    assert [f.text for f in rb.of(TranscriptionFrame)] == ["can you call john for me"]


def turns(rec) -> list[tuple[str, str]]:
    """Each turn's final text and endpoint reason, asserting that every final is proposed as a whole turn: a
    proposed start before it, a proposed stop after it, nothing but interims in between."""
    turn = [f for f in rec.of(*PROPOSALS, *TRANSCRIPTS) if not isinstance(f, InterimTranscriptionFrame)]
    finals = [f for f in turn if isinstance(f, TranscriptionFrame)]
    assert [type(f) for f in turn] == [ProposedUserStartedSpeakingFrame, TranscriptionFrame,
                                       ProposedUserStoppedSpeakingFrame] * len(finals)
    return [(f.text, f.result.reason) for f in finals]


async def test_turn_detection_proposes_turns_from_the_models_eou(demo_engine):
    # on by default for a model with <EOU>: each turn ends on the token the model emits, after a pause too short for
    # the 800 ms trailing-blank rule, and Pipecat's VAD stops must not cut it
    stt = ParakeetSTTService(engine=demo_engine, should_interrupt=False)
    sentences = ("call me at seven thirty", "two three four")
    rec = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt], stt,
                             audio_frames(utterances(*sentences, gap=0.6)))

    assert stt.turn_detection is True
    [meta] = rec.of(STTMetadataFrame)
    assert isinstance(meta.user_turn_strategies, ExternalUserTurnStrategies)
    assert turns(rec) == [(sentences[0], "eou"), (sentences[1], "eou")]
    # proposals are broadcast: the turn strategies live upstream in the user aggregator
    assert [type(f) for f in rec.up if isinstance(f, PROPOSALS)] == [ProposedUserStartedSpeakingFrame,
                                                                    ProposedUserStoppedSpeakingFrame] * 2


async def test_turn_detection_forced_on_ends_turns_by_the_trailing_blank_rule(demo_engine):
    # as for a model without <EOU>: with the token ignored, 800 ms without a token ends each turn
    stt = ParakeetSTTService(engine=demo_engine, turn_detection=True, should_interrupt=False,
                             endpointing=ps.EndpointingOptions(eou=False))
    sentences = ("call me at seven thirty", "two three four")
    rec = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt], stt,
                             audio_frames(utterances(*sentences, gap=1.5)))

    assert turns(rec) == [(sentences[0], "blank"), (sentences[1], "blank")]


def test_turn_detection_defaults_to_the_models_eou_token(demo_engine, tiny_model):
    plain_engine = ps.Engine.from_model(tiny_model, ps.EngineConfig(model="tiny", chunk_ms=160, max_streams=1))
    try:
        eou, plain = ParakeetSTTService(engine=demo_engine), ParakeetSTTService(engine=plain_engine)

        assert (demo_engine.info.has_eou, plain_engine.info.has_eou) == (True, False)
        assert (eou.turn_detection, plain.turn_detection) == (True, False)
        assert isinstance(eou.service_metadata_frame().user_turn_strategies, ExternalUserTurnStrategies)
        assert plain.service_metadata_frame().user_turn_strategies is None
        assert ParakeetSTTService(engine=demo_engine, turn_detection=False).turn_detection is False
        # with the engine told to ignore the token, nothing would end a turn on it
        no_eou = ps.EndpointingOptions(eou=False)
        assert ParakeetSTTService(engine=demo_engine, endpointing=no_eou).turn_detection is False
    finally:
        plain_engine.close()


async def test_bad_audio_frames_get_clear_errors_and_lose_nothing_else(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    frames = audio_frames(speech("call me at seven thirty"))
    half = len(frames) // 2
    odd = InputAudioRawFrame(audio=b"\x00" * 641, sample_rate=16000, num_channels=1)
    stereo = InputAudioRawFrame(audio=pcm16(silence(0.02)) * 2, sample_rate=16000, num_channels=2)
    rate = InputAudioRawFrame(audio=pcm16(silence(0.02)), sample_rate=8000, num_channels=1)
    rec = await run_pipeline([stt], stt, frames[:half] + [odd, stereo, rate] + frames[half:])

    assert [e.error for e in rec.errors] == [
        f"{stt}: audio frame rejected, its 641 bytes dropped, the stream goes on: got 641 bytes, which is not a "
        f"whole number of int16 samples; accepted: {ACCEPTED}",
        f"{stt}: audio frame rejected (2 channel(s) at 16000 Hz); accepted: 1 channel at 16000 Hz "
        f"(the pipeline's audio_in_sample_rate)",
        f"{stt}: audio frame rejected (1 channel(s) at 8000 Hz); accepted: 1 channel at 16000 Hz "
        f"(the pipeline's audio_in_sample_rate)",
    ]
    assert [f.text for f in rec.of(TranscriptionFrame)] == ["call me at seven thirty"]


async def test_unsupported_pipeline_rate_fails_start_with_the_accepted_range(demo_engine):
    stt = ParakeetSTTService(engine=demo_engine)
    worker, rec, started = build_worker([stt], stt, frames_rate=96000)
    from pipecat.workers.runner import WorkerRunner

    async def end():
        await asyncio.wait_for(started.wait(), timeout=120)
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), end())
    assert [e.error for e in rec.errors] == [
        f"{stt}: could not open an engine stream: sample_rate 96000 Hz is not supported; accepted: 8000..48000 Hz"]
    assert await released(demo_engine)


def test_example_pipeline_prints_interims_then_the_final():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "examples" / "pipecat_pipeline.py"), "--text", "two three four",
                          "--device", "cpu"], capture_output=True, text=True, timeout=600, check=True).stdout
    lines = out.splitlines()
    assert lines[-2:] == ["interim: two three four", "final:   two three four"]
    assert all(line.startswith("interim: ") for line in lines[:-1])


async def test_settings_frame_retunes_the_engine_endpointing_of_the_open_stream(demo_engine):
    """``STTUpdateSettingsFrame(delta=ParakeetSTTSettings(endpointing=...))`` retunes the engine's VAD of the open
    stream from the audio after it on: 2000 ms of minimum silence keeps a 1 s pause inside one segment that the starting
    500 ms cuts."""
    from pipecat.frames.frames import ErrorFrame, STTUpdateSettingsFrame

    from parakeet_pipecat import ParakeetSTTSettings

    def opts(ms: int) -> ps.EndpointingOptions:
        return ps.EndpointingOptions(vad=True, min_silence_ms=ms, eou=False, trailing_blank_ms=None)

    first = audio_frames(np.concatenate([silence(0.5), speech("call me at seven thirty")]))
    rest = audio_frames(np.concatenate([silence(1.0), speech("two three four"), silence(2.5)]))

    async def finals(update: bool) -> list[str]:
        stt = ParakeetSTTService(engine=demo_engine, endpointing=opts(500))

        async def then(worker) -> bool:
            # input audio frames are system frames, which overtake control frames such as a settings update:
            # the rest of the audio waits until the update is applied
            if update:
                await worker.queue_frame(STTUpdateSettingsFrame(delta=ParakeetSTTSettings(endpointing=opts(2000))))
                for _ in range(1000):
                    if stt._settings.endpointing == opts(2000):
                        break
                    await asyncio.sleep(0.01)
            await worker.queue_frames(rest)
            return False  # then the EndFrame

        rec = await run_pipeline([stt], stt, first, before_end=then)
        assert [f for f in rec.up if isinstance(f, ErrorFrame)] == []
        return [f.text for f in rec.of(TranscriptionFrame)]

    assert await finals(update=False) == ["call me at seven thirty", "two three four"]
    assert await finals(update=True) == ["call me at seven thirty two three four"]


async def test_settings_frame_switching_vad_off_is_refused_with_an_error_frame(demo_engine):
    from pipecat.frames.frames import ErrorFrame, STTUpdateSettingsFrame

    from parakeet_pipecat import ParakeetSTTSettings

    stt = ParakeetSTTService(engine=demo_engine, endpointing=ps.EndpointingOptions(vad=True))
    change = STTUpdateSettingsFrame(delta=ParakeetSTTSettings(endpointing=ps.EndpointingOptions(vad=False)))
    rec = await run_pipeline([stt], stt, [change] + audio_frames(speech("turn on the radio")))
    errors = [f.error for f in rec.up if isinstance(f, ErrorFrame)]
    assert errors == [f"{stt}: endpointing not changed on the open stream: vad cannot be switched on or off on a "
                      "live stream (open a new stream for that); its threshold and durations can change"]
    assert [f.text for f in rec.of(TranscriptionFrame)] == ["turn on the radio"]  # the stream went on


async def test_keyterms_are_boosted_from_the_constructor(demo_engine):
    song = keyterm_speech()
    plain = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY)
    boosted = ParakeetSTTService(engine=demo_engine, endpointing=VAD_ONLY, keyterms=[KEYTERM])
    texts = []
    for stt in (plain, boosted):
        rec = await run_pipeline([stt], stt, audio_frames(song))
        texts.append([f.text for f in rec.of(TranscriptionFrame)])
    assert texts[0] == [KEYTERM_MISHEARD]
    assert KEYTERM in texts[1][0].split()
    assert await released(demo_engine)
