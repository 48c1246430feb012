"""A demo model's words in one long stream, as a LiveKit track or a dalston session carries them, against the same
sentences each in a stream of its own (as the model card's evaluation and most unit tests hear them).

The end-to-end tests speak the tests' voice (espeak-ng ``en-us``, its default rate and 160 words a minute) into
streams that stay open across sentences, through Opus when LiveKit carries them. A model can be good on isolated
utterances and still mishear words once earlier speech fills its attention context: version 4 and 5 of the demo
model did ("send a message to anna and say ..." -> "... to ten say ..."). This measures it: the test literals
(three times each) and held-out sentences, 1 s of silence before each and 1.5 s after, transcribed isolated and
as one stream, clean and through an Opus round trip (``train_demo.synth.opus_round_trip``). Prints a table and
writes JSON (with each long stream's differing words).

    .venv/bin/python bench/long_stream_wer.py [--models espeak-demo-en,LABEL=OTHER.nemo] [--held-out 40] [--out PATH]
"""
from __future__ import annotations

import argparse
import difflib
import json
import time
from pathlib import Path

import numpy as np

SR = 16000
# the sentences the end-to-end tests speak (tests/livekit/livekit_testkit.py, the CLI sample)
LITERALS = ("send a message to anna and say i will be late", "set a timer for twenty minutes",
            "call me at seven thirty tomorrow", "set an alarm for six o clock tomorrow morning",
            "turn off the lights in the kitchen", "set a timer for ten minutes",
            "call me at seven thirty tomorrow morning", "turn on the radio")
RATES = (None, 160)  # espeak-ng's default (175 wpm) and the unit tests' 160
OPUS_KBPS = (24, 16)


def spoken(sentences: list[str], rate: int | None) -> list[np.ndarray]:
    from parakeet_services.speech import espeak

    lead, tail = np.zeros(SR, np.float32), np.zeros(int(1.5 * SR), np.float32)
    return [np.concatenate([lead, espeak(s, "en-us", rate), tail]) for s in sentences]


def differences(ref: str, hyp: str) -> list[str]:
    r, h = ref.split(), hyp.split()
    return [f"{' '.join(r[a:b])} -> {' '.join(h[c:d])}" for op, a, b, c, d in
            difflib.SequenceMatcher(a=r, b=h, autojunk=False).get_opcodes() if op != "equal"]


def measure(model: str, sentences: list[str]) -> dict:
    import parakeet_stream as ps
    from parakeet_services.train_demo.evaluate import word_error_rate
    from parakeet_services.train_demo.synth import opus_round_trip

    engine = ps.Engine.load(ps.EngineConfig(model=model, device="cpu", max_streams=4))
    out: dict = {}
    try:
        for rate in RATES:
            parts = spoken(sentences, rate)
            voice = f"en-us {rate or 'default'}"
            isolated = [engine.transcribe(p).text for p in parts]
            out[f"{voice}, isolated"] = dict(wer=round(100 * word_error_rate(sentences, isolated), 2),
                                             wrong=[f"{s} -> {h}" for s, h in zip(sentences, isolated) if s != h])
            whole = np.concatenate(parts)
            for kbps in (None, *OPUS_KBPS):
                audio = opus_round_trip(whole, kbps * 1000) if kbps else whole
                text = engine.transcribe(audio).text
                ref = " ".join(sentences)
                out[f"{voice}, one stream" + (f", Opus {kbps} kbit/s" if kbps else "")] = dict(
                    wer=round(100 * word_error_rate([ref], [text]), 2), wrong=differences(ref, text))
    finally:
        engine.close()
    return out


def parse_models(text: str) -> dict[str, str]:
    """``--models``: a comma list of model names or .nemo paths, each optionally LABEL=MODEL -> {label: model}."""
    return dict(m.split("=", 1) if "=" in m else (m, m) for m in text.split(","))


def main() -> None:
    from parakeet_services.train_demo import sentences as sentences_mod

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="espeak-demo-en",
                    help="comma list of model names or .nemo paths, each optionally LABEL=MODEL")
    ap.add_argument("--held-out", type=int, default=40, help="held-out sentences of the demo model's test set")
    ap.add_argument("--out", default="bench/results/long-stream-wer.json")
    args = ap.parse_args()
    _, held_out = sentences_mod.split_sentences(0, 100, seed=1234)  # the test set's sentences: no model trained on them
    sentences = [*LITERALS * 3, *held_out[: args.held_out]]
    t0 = time.time()
    models = parse_models(args.models)
    results = {label: measure(model, sentences) for label, model in models.items()}
    conditions = list(next(iter(results.values())))
    print(f"WER % ({len(sentences)} sentences: the {len(LITERALS)} test literals x 3, {args.held_out} held-out)\n")
    print("| condition | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for c in conditions:
        print(f"| {c} | " + " | ".join(f"{r[c]['wer']:.2f}" for r in results.values()) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(models=models, sentences=sentences, seconds=round(time.time() - t0, 1),
                                              results=results), indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
