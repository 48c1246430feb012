"""espeak-ng and flite speech for training and testing: 16 kHz mono WAVs plus NeMo manifests.

Layout of a data directory (portable: manifests hold paths relative to it, so data synthesized on one host can
be carried to another that has no espeak-ng)::

    DATA/train/000000.wav ...       DATA/train_manifest.json   one JSON object per line
    DATA/test/000000.wav ...        DATA/test_manifest.json    (+ "group": which voice group spoke it)
    DATA/data.json                  what was made: counts, hours, voices, seconds taken

Augmentation (``augment``): 50-400 ms silence at each end, half the utterances in a reverberant room, a random
peak gain from -30 to -0.5 dBFS, white, pink or brown noise at 8-45 dB SNR (one in ten left in digital
silence, as synthesized or gated audio is), and one in ten band-limited as a telephone line is. Each row
records ``speech_end``, where the spoken words end, so that end-of-utterance latency can be measured from it.
A quarter of the training files are then coded with Opus and decoded again (``opus_round_trip``), as a WebRTC
call (LiveKit) carries a microphone: a model that has only heard clean PCM mishears words through the codec.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Callable

import numpy as np
from parakeet_stream.audio import MODEL_SAMPLE_RATE as SAMPLE_RATE

from ..speech import espeak, flite, synthesizer_binary, trim_trailing_silence
from . import pronunciation
from . import sentences as sentences_mod
from . import voices as voices_mod

TEST_SEED_BASE = 10_000_000  # per-utterance seeds of test and train never collide
# What ``augment`` and ``voices`` make; data.json records it, and data made by another version is re-made.
# 1: training accents x 10 variants, 130-200 wpm, 15-45 dB white/brown noise; 2: every variant, reverb, wider
# noise and delivery, one utterance per file; 3: some training files hold two utterances; 5: the present code (a
# share of the training utterances spoken by flite, two more test groups); 6: the present code (a share of the
# training files Opus-coded; the test set is version 5's). (4 was a trial: made-up accents.)
DATA_VERSION = 6
# Training files that hold two sentences with a pause between (data version 3): the model must hear words after
# its own <EOU>, or it learns that nothing follows one and drops the start of the next utterance.
JOINED = 0.3
PAUSE_S = (0.3, 1.5)


@dataclass(frozen=True)
class SynthJob:
    index: int
    text: str
    seed: int
    wav_path: str  # absolute
    voices: tuple[str, ...]
    pron_noise: float = 0.0  # chance that this utterance is spoken with pronunciation noise (pronunciation.py)
    follow: str = ""  # a second sentence, spoken by the same voice after a pause (``JOINED``)
    opus: float = 0.0  # chance that the file is Opus-coded (``OPUS_SHARE``; training files only)


def speak(text: str, delivery: voices_mod.Delivery) -> np.ndarray:
    if voices_mod.is_flite(delivery.voice):  # (flite ends with silence of its own: the augmentation adds it)
        return trim_trailing_silence(flite(text, **delivery.flite_settings()))
    return espeak(text, delivery.voice, delivery.speed, args=delivery.espeak_args())


@dataclass(frozen=True)
class Augmented:
    audio: np.ndarray
    speech_end: float  # seconds: where the spoken words end (before the trailing silence)


def room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room: the direct path, then exponentially decaying noise that falls 60 dB in ``rt60`` s."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SAMPLE_RATE)] = 0.0  # the first reflections arrive a few ms after the direct sound
    h = tail * rng.uniform(0.1, 0.5) / (np.sqrt(np.sum(tail ** 2)) + 1e-9)
    h[0] = 1.0
    return h.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance white, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    white = rng.standard_normal(n)
    kind = rng.integers(3)
    if kind:
        spec = np.fft.rfft(white)
        f = np.maximum(np.arange(len(spec)), 1.0)
        spec /= f ** (0.5 * kind)
        white = np.fft.irfft(spec, n)
    return (white / (white.std() + 1e-9)).astype(np.float32)


def band_limit(x: np.ndarray, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    spec[(f < low) | (f > high)] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


AUGMENTATION = ("50-400 ms silence at each end, half in a reverberant room (RT60 0.15-0.8 s), one in ten "
                "band-limited to 300-3400 Hz, peak gain -30 to -0.5 dBFS, white, pink or brown noise at 8-45 dB SNR "
                "(one in ten without noise)")


def augment(x: np.ndarray, rng: np.random.Generator) -> Augmented:
    """``x`` as heard in a room, on a line, at a level and in noise, all drawn from ``rng`` (see ``AUGMENTATION``)."""
    sr = SAMPLE_RATE
    lead, trail = (np.zeros(int(rng.uniform(0.05, 0.4) * sr), np.float32) for _ in range(2))
    speech_end = (len(lead) + len(x)) / sr
    x = np.concatenate([lead, x, trail])
    if rng.random() < 0.5:
        x = np.convolve(x, room_impulse(rng, rng.uniform(0.15, 0.8)))[: len(x)].astype(np.float32)
    if rng.random() < 0.1:
        x = band_limit(x)
    x = x / (np.abs(x).max() + 1e-6) * 10 ** (rng.uniform(-30, -0.5) / 20)
    snr_db = rng.uniform(8, 45)
    if rng.random() < 0.1:  # the end of an utterance must be heard in digital silence too, not only in noise
        return Augmented(np.clip(x, -1, 1).astype(np.float32), round(speech_end, 3))
    p_sig = np.mean(x ** 2) + 1e-12
    noise = coloured_noise(rng, len(x))
    return Augmented(np.clip(x + noise * np.sqrt(p_sig / 10 ** (snr_db / 10)), -1, 1).astype(np.float32),
                     round(speech_end, 3))


# Training files coded with Opus at one of the bitrates WebRTC voice calls run at (libopus, VoIP mode, 20 ms frames)
OPUS_SHARE = 0.25
OPUS_BITRATES = (12_000, 16_000, 24_000, 32_000)
OPUS_RATE = 48_000  # WebRTC's Opus runs at 48 kHz
OPUS_FRAME = 960  # 20 ms at 48 kHz
OPUS_DELAY = 312  # samples at 48 kHz that libopus's encoder delays its output by (its look-ahead)


def opus_available() -> bool:
    """Whether PyAV (which bundles libopus; livekit-agents installs it) can code Opus here."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def opus_round_trip(x: np.ndarray, bitrate: int) -> np.ndarray:
    """16 kHz ``x`` as a WebRTC peer hears it: resampled to 48 kHz, Opus-coded in 20 ms frames at ``bitrate``
    bits a second, decoded, resampled back; aligned with ``x`` and of its length."""
    import av
    import soxr

    hi = soxr.resample(x, SAMPLE_RATE, OPUS_RATE)
    pcm = (np.clip(hi, -1.0, 1.0) * 32767).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros((-len(pcm)) % OPUS_FRAME + OPUS_FRAME, np.int16)])  # whole frames + delay
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = OPUS_RATE, "mono", "s16", bitrate
    encoder.options = {"application": "voip"}
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = OPUS_RATE, "mono"
    decoded = []
    frames = [pcm[i: i + OPUS_FRAME] for i in range(0, len(pcm), OPUS_FRAME)]
    for i, block in enumerate([*frames, None]):
        frame = None
        if block is not None:
            frame = av.AudioFrame.from_ndarray(block[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts = OPUS_RATE, i * OPUS_FRAME
        for packet in encoder.encode(frame):
            decoded += [d.to_ndarray().reshape(-1) for d in decoder.decode(packet)]
    out = np.concatenate(decoded)[OPUS_DELAY: OPUS_DELAY + len(hi)].astype(np.float32) / 32768
    return soxr.resample(out, OPUS_RATE, SAMPLE_RATE)[: len(x)].astype(np.float32)


def synth_one(job: SynthJob) -> dict:
    import soundfile as sf

    rng = random.Random(job.seed)
    delivery = voices_mod.draw_delivery(rng, job.voices)
    texts = [t for t in (job.text, job.follow) if t]
    spoken, noise = texts, {}
    # (no draw at 0: older data sets stay identical; pronunciation noise is spoken in espeak-ng's phonemes only)
    if job.pron_noise > 0 and rng.random() < job.pron_noise and not voices_mod.is_flite(delivery.voice):
        perturbed = [pronunciation.perturb(pronunciation.phonemes_of(t, delivery.voice), rng) for t in texts]
        spoken = [pronunciation.as_espeak_input(phonemes) for phonemes, _ in perturbed]
        noise = dict(phonemes_changed=sum(changed for _, changed in perturbed))
    audio = speak(spoken[0], delivery)
    if job.follow:
        pause = np.zeros(int(rng.uniform(*PAUSE_S) * SAMPLE_RATE), np.float32)
        audio = np.concatenate([audio, pause, speak(spoken[1], delivery)])
    aug = augment(audio, np.random.default_rng(job.seed))
    heard, codec = aug.audio, {}
    if job.opus > 0 and rng.random() < job.opus:  # (no draw at 0: the test set stays data version 5's)
        bitrate = rng.choice(OPUS_BITRATES)
        heard, codec = opus_round_trip(heard, bitrate), dict(opus_bitrate=bitrate)
    sf.write(job.wav_path, heard, SAMPLE_RATE, subtype="PCM_16")
    joined = dict(eou_after=[len(job.text.split())]) if job.follow else {}
    return dict(index=job.index, duration=round(len(heard) / SAMPLE_RATE, 3), speech_end=aug.speech_end,
                text=" ".join(texts), **joined, **asdict(delivery), **noise, **codec)


def _run_jobs(jobs: list[SynthJob], procs: int, label: str, log: Callable[[str], None]) -> list[dict]:
    t0 = time.time()
    rows: list[dict] = []
    step = max(1, len(jobs) // 20)
    with Pool(procs) as pool:
        for row in pool.imap_unordered(synth_one, jobs, chunksize=max(1, min(32, len(jobs) // (procs * 8)))):
            rows.append(row)
            n = len(rows)
            if n % step == 0 or n == len(jobs):
                el = time.time() - t0
                log(f"synth {label}: {n}/{len(jobs)} ({100 * n // len(jobs)} %), "
                    f"{sum(r['duration'] for r in rows) / 3600:.2f} h audio, {el:.0f} s, "
                    f"eta {el / n * (len(jobs) - n):.0f} s")
    rows.sort(key=lambda r: r["index"])
    return rows


def _write_manifest(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def make_test_jobs(test_texts: list[str], wav_dir: Path) -> tuple[list[SynthJob], list[str]]:
    """Every held-out sentence once per voice group, and the group of each job. Seeds depend only on the position,
    so any subset can be re-made elsewhere exactly (the bundled model's test does). Data versions 2 and 3 share
    this test set."""
    jobs, groups = [], []
    for group in voices_mod.GROUPS:
        pool = voices_mod.voices_of_group(group)
        for i, text in enumerate(test_texts):
            k = len(jobs)
            # round-robin over the group's voices so each held-out voice speaks its share
            voices = pool if group == voices_mod.SEEN_GROUP else (pool[i % len(pool)],)
            jobs.append(SynthJob(k, text, TEST_SEED_BASE + k, str((wav_dir / f"{k:06d}.wav").resolve()), voices))
            groups.append(group)
    return jobs, groups


def data_settings(stats: dict) -> dict:
    """The numbers that decide a data set, from its ``data.json``: equal settings make identical data. A data set
    made before ``pron_noise`` existed had none, one made before ``version`` existed is version 1, and one made
    before the shares were settings had its version's (flite from version 5, Opus from version 6)."""
    version = stats.get("version", 1)
    defaults = dict(pron_noise=0.0, version=1, flite_share=voices_mod.FLITE_SHARE if version >= 5 else 0.0,
                    opus_share=OPUS_SHARE if version >= 6 else 0.0)
    return {k: stats.get(k, defaults.get(k))
            for k in ("n_train", "n_test", "seed", "pron_noise", "version", "flite_share", "opus_share")}


def synthesize(data_dir: str | os.PathLike, n_train: int, n_test: int, procs: int = 2, seed: int = 1234,
               pron_noise: float = 0.0, log: Callable[[str], None] | None = None, *,
               flite_share: float = voices_mod.FLITE_SHARE, opus_share: float = OPUS_SHARE) -> dict:
    """Make (or keep, when ``data.json`` says it was made with the same numbers) the data set in ``data_dir``.

    ``n_test`` held-out sentences are each spoken once per voice group (``voices.GROUPS``), so the groups' WERs
    differ only by who speaks; training utterances are spoken by ``voices.TRAINING_VOICES`` (a fraction
    ``flite_share`` by flite's training voices instead), a fraction ``pron_noise`` of them with pronunciation
    noise and a fraction ``opus_share`` of the files Opus-coded (never the test set). The test set depends on
    ``n_test`` and ``seed`` only, and the first training sentences on ``seed`` only: a larger ``n_train`` adds
    new sentences after the same ones."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    data = Path(data_dir)
    stats_path = data / "data.json"
    wanted = dict(n_train=n_train, n_test=n_test, seed=seed, pron_noise=pron_noise, version=DATA_VERSION,
                  flite_share=flite_share, opus_share=opus_share)
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        if data_settings(stats) == wanted:
            log(f"data: reusing {data} ({stats['train']['utterances']} train, {stats['test']['utterances']} test)")
            return stats
    synthesizer_binary("espeak-ng")
    synthesizer_binary("flite")  # (a test group speaks with flite's voices whatever the training share)
    if opus_share > 0 and not opus_available():
        opus_share = 0.0
        log("data: PyAV (pip install av) is missing: no training file is Opus-coded (data.json records how many are)")
    t0 = time.time()
    train_texts, test_texts = sentences_mod.split_sentences(n_train, n_test, seed=seed)
    stats: dict = dict(wanted)
    for split in ("train", "test"):
        (data / split).mkdir(parents=True, exist_ok=True)
    test_jobs, groups = make_test_jobs(test_texts, data / "test")
    join, engine = random.Random(seed + 1), random.Random(seed + 2)
    train_jobs = [SynthJob(i, t, seed * 1_000_003 + i, str((data / "train" / f"{i:06d}.wav").resolve()),
                           voices_mod.TRAIN_FLITE_VOICES if engine.random() < flite_share
                           else voices_mod.TRAINING_VOICES, pron_noise,
                           follow=join.choice(train_texts) if join.random() < JOINED else "", opus=opus_share)
                  for i, t in enumerate(train_texts)]
    for split, jobs in (("test", test_jobs), ("train", train_jobs)):
        t = time.time()
        rows = _run_jobs(jobs, procs, split, log)
        for r in rows:
            r["audio_filepath"] = f"{split}/{r['index']:06d}.wav"
            if split == "test":
                r["group"] = groups[r["index"]]
            del r["index"]
        _write_manifest(data / f"{split}_manifest.json", rows)
        stats[split] = dict(utterances=len(rows), hours=round(sum(r["duration"] for r in rows) / 3600, 3),
                            seconds=round(time.time() - t, 1), voices=sorted({r["voice"] for r in rows}))
    stats["test"]["sentences"] = len(test_texts)
    stats["test"]["groups"] = {g: list(voices_mod.voices_of_group(g)) for g in voices_mod.HELD_OUT_VOICES}
    stats["words"] = len({w for t in train_texts for w in t.split()})
    stats["train"]["joined"] = sum("eou_after" in r for r in rows)
    stats["train"]["flite"] = sum(voices_mod.is_flite(r["voice"]) for r in rows)
    stats["train"]["opus"] = sum("opus_bitrate" in r for r in rows)
    if pron_noise:
        stats["train"]["pron_noise"] = dict(asdict(pronunciation.NoiseLevel()), utterances=sum(
            "phonemes_changed" in r for r in rows))
    stats["synth_seconds"] = round(time.time() - t0, 1)
    stats["procs"] = procs
    stats_path.write_text(json.dumps(stats, indent=1) + "\n")
    log(f"data: {stats['train']['utterances']} train utterances ({stats['train']['hours']} h), "
        f"{stats['test']['utterances']} test, {stats['words']} distinct training words, {stats['synth_seconds']} s")
    return stats


def load_manifest(data_dir: str | os.PathLike, split: str) -> list[dict]:
    """Rows of ``split`` with ``audio_filepath`` made absolute (manifests store them relative to the data dir)."""
    data = Path(data_dir).resolve()
    rows = []
    with open(data / f"{split}_manifest.json") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                r["audio_filepath"] = str(data / r["audio_filepath"])
                rows.append(r)
    return rows


def has_data(data_dir: str | os.PathLike) -> bool:
    d = Path(data_dir)
    return all((d / f).is_file() for f in ("train_manifest.json", "test_manifest.json"))
