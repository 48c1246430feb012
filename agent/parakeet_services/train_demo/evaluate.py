"""WER of a trained checkpoint on the held-out sentences, per voice group, through the real engine.

Each test utterance is decoded twice by ``parakeet_stream.Engine``: streamed (20 ms packets, 160 ms chunks,
one segment per utterance: no VAD, no EOU, no blank cut) and offline (``Engine.transcribe``, same look-ahead).
The report says, per group, both WERs and how many streamed texts equal the offline text exactly.

A model with an ``<EOU>`` piece is also streamed a third time with EOU endpointing (``eou=True``, no VAD, no blank
rule), each utterance followed by a second of its own background noise: how long after the last word its final
comes (the final's ``audio_end`` minus the row's ``speech_end``), and how many utterances were cut before their
last word (more than one final with words) or never ended by the model (no ``eou`` final).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from parakeet_stream.audio import MODEL_SAMPLE_RATE

from .synth import data_settings, load_manifest
from .voices import SEEN_GROUPS

PACKET_SAMPLES = 320  # 20 ms at 16 kHz, as a WebRTC client sends
EOU_TAIL_S = 1.0  # background noise after each utterance when measuring EOU endpointing


def word_errors(ref: str, hyp: str) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    r, h = ref.split(), hyp.split()
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER as a fraction: total word errors over total reference words."""
    words = sum(len(r.split()) for r in refs)
    return sum(word_errors(r, h) for r, h in zip(refs, hyps, strict=True)) / max(words, 1)


def _stream_batch(engine, audios: list, timeout: float) -> list[str]:
    import parakeet_stream as ps

    opts = ps.EndpointingOptions(vad=False, eou=False, trailing_blank_ms=None)
    streams = [engine.open_stream(endpointing=opts) for _ in audios]
    for s, a in zip(streams, audios):  # push everything at once: the engine batches the streams per step
        for i in range(0, len(a), PACKET_SAMPLES):
            s.push(a[i:i + PACKET_SAMPLES])
        s.finish()
    texts = []
    for s in streams:
        finals = []
        while True:
            ev = s.next_event(timeout=timeout)
            if ev is None:
                raise TimeoutError(f"stream {s.id}: no event within {timeout} s")
            if isinstance(ev, ps.Final) and ev.text:
                finals.append(ev.text)
            if isinstance(ev, ps.StreamFailed):
                raise RuntimeError(f"stream {s.id} failed: {ev.message}")
            if isinstance(ev, ps.StreamEnded):
                break
        texts.append(" ".join(finals))
        s.close()
    return texts


@dataclass(frozen=True)
class EouResult:
    """One utterance streamed with EOU endpointing."""

    finals: tuple[str, ...]  # the texts of its finals with words, in order
    latency: float | None  # seconds from the end of its last word to its first ``eou`` final; None: no eou final
    cut: bool  # an ``eou`` final came before the last word: the sentence was split


def with_noise_tail(audio, seconds: float = EOU_TAIL_S):
    """``audio`` followed by ``seconds`` of noise as loud as its own first 50 ms (the leading silence, where
    synthesis put only noise): the room keeps sounding after the speaker stops."""
    import numpy as np

    head = audio[: int(0.05 * MODEL_SAMPLE_RATE)]
    level = float(np.sqrt(np.mean(head ** 2))) if len(head) else 0.0
    rng = np.random.default_rng(len(audio))
    tail = (rng.standard_normal(int(seconds * MODEL_SAMPLE_RATE)) * level).astype(np.float32)
    return np.concatenate([audio, tail])


def _stream_eou(engine, audios: list, speech_ends: list[float], timeout: float) -> list[EouResult]:
    import parakeet_stream as ps

    opts = ps.EndpointingOptions(vad=False, eou=True, trailing_blank_ms=None)
    streams = [engine.open_stream(endpointing=opts) for _ in audios]
    for s, a in zip(streams, audios):
        for i in range(0, len(a), PACKET_SAMPLES):
            s.push(a[i:i + PACKET_SAMPLES])
        s.finish()
    results = []
    for s, speech_end in zip(streams, speech_ends):
        finals: list = []
        while True:
            ev = s.next_event(timeout=timeout)
            if ev is None:
                raise TimeoutError(f"stream {s.id}: no event within {timeout} s")
            if isinstance(ev, ps.Final) and ev.text:
                finals.append(ev)
            if isinstance(ev, ps.StreamFailed):
                raise RuntimeError(f"stream {s.id} failed: {ev.message}")
            if isinstance(ev, ps.StreamEnded):
                break
        s.close()
        eou = [f for f in finals if f.reason == "eou"]
        results.append(EouResult(finals=tuple(f.text for f in finals),
                                 latency=round(eou[0].audio_end - speech_end, 3) if eou else None,
                                 cut=len(finals) > 1 and finals[0].reason == "eou"))
    return results


def eou_summary(results: list[EouResult]) -> dict:
    """How EOU endpointing did over ``results``: latency percentiles (ms) of the utterances it ended, how many it
    cut mid-sentence and how many it never ended."""
    import numpy as np

    lat = [r.latency * 1000 for r in results if r.latency is not None]
    pct = (lambda q: round(float(np.percentile(lat, q)))) if lat else (lambda q: None)
    return dict(utterances=len(results), ended_by_eou=len(lat), latency_ms_p50=pct(50), latency_ms_p90=pct(90),
                cut_mid_sentence=sum(r.cut for r in results), never_ended=sum(r.latency is None for r in results))


def _summary(rows: list[dict]) -> dict:
    refs = [r["text"] for r in rows]
    return dict(utterances=len(rows), words=sum(len(t.split()) for t in refs),
                wer_stream=round(100 * word_error_rate(refs, [r["stream"] for r in rows]), 2),
                wer_offline=round(100 * word_error_rate(refs, [r["offline"] for r in rows]), 2),
                identical=sum(r["stream"] == r["offline"] for r in rows))


def evaluate(model_path: str, data_dir: str, *, device: str = "auto", dtype: str = "fp32", chunk_ms: int = 160,
             max_streams: int = 32, limit: int | None = None, timeout: float = 120.0,
             log: Callable[[str], None] | None = None, features_device: str = "auto") -> dict:
    """Decode the test manifest of ``data_dir`` with the checkpoint at ``model_path``; returns the report
    (``groups``: one summary per voice group; ``held_out``: all held-out-voice groups together)."""
    import soundfile as sf

    import parakeet_stream as ps

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    rows = load_manifest(data_dir, "test")
    if limit:
        rows = rows[:limit]
    t0 = time.time()
    engine = ps.Engine.load(ps.EngineConfig(model=str(Path(model_path).resolve()), device=device, dtype=dtype,
                                            chunk_ms=chunk_ms, max_streams=max_streams,
                                            features_device=features_device))
    has_eou = engine.info.has_eou and all("speech_end" in r for r in rows)
    try:
        results = []
        for i in range(0, len(rows), max_streams):
            batch = rows[i:i + max_streams]
            audios = [sf.read(r["audio_filepath"], dtype="float32")[0] for r in batch]
            streamed = _stream_batch(engine, audios, timeout)
            eou = (_stream_eou(engine, [with_noise_tail(a) for a in audios], [r["speech_end"] for r in batch],
                               timeout) if has_eou else [None] * len(batch))
            for r, a, st, e in zip(batch, audios, streamed, eou):
                results.append(dict(text=r["text"], voice=r["voice"], group=r["group"], stream=st,
                                    offline=engine.transcribe(a).text, **({"eou": asdict(e)} if e else {})))
            log(f"eval: {len(results)}/{len(rows)} utterances")
        info = engine.info
    finally:
        engine.close()
    # the groups of the data set as it was made (an older data version named its groups differently)
    groups = {g: _summary([r for r in results if r["group"] == g]) for g in dict.fromkeys(r["group"] for r in results)}
    held_out = [r for r in results if r["group"] not in SEEN_GROUPS]
    report = dict(model=str(model_path), chunk_ms=info.chunk_ms, device=info.device, dtype=info.dtype,
                  features_device=engine.features_device,
                  num_params=info.num_params, seconds=round(time.time() - t0, 1), groups=groups,
                  held_out=_summary(held_out) if held_out else None, all=_summary(results),
                  per_voice={v: _summary([r for r in results if r["voice"] == v])
                             for v in sorted({r["voice"] for r in held_out})},
                  mismatches=[r for r in results if r["stream"] != r["offline"]][:10],
                  eou=({g: eou_summary([EouResult(**{**r["eou"], "finals": tuple(r["eou"]["finals"])})
                                        for r in results if r["group"] == g or g == "all"])
                        for g in (*groups, "all")} if has_eou else None),
                  cuts=[r for r in results if r.get("eou", {}).get("cut")][:10],
                  errors=[r for r in held_out if r["stream"] != r["text"]][:10], results=results)
    stats = Path(data_dir) / "data.json"
    if stats.exists():  # what re-makes this test set: synth.split_sentences + synth.make_test_jobs
        made = data_settings(json.loads(stats.read_text()))
        report["data"] = {k: made[k] for k in ("n_train", "n_test", "seed", "version")}
    return report
