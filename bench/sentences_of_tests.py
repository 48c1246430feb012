"""The tests' own sentences heard by demo-model candidates: which ones each model gets word for word, and which
ones a candidate gets wrong where the first model (the bundled one) was right.

Tests that assert spoken words speak sentences the bundled model transcribes exactly (``tests/support.py``'s
``RELIABLE_SENTENCES``, the dalston sessions' list). A new model may mishear one of them without being worse:
run this before bundling a candidate to see which sentences change, in which voice and at which rate, and to
re-check those lists. Every string literal of four or more lower-case words under ``tests/`` is spoken by
espeak-ng (as the dalston fixture does: 0.25 s of silence before, 0.5 s after) in each voice at each rate and
transcribed offline (``Engine.transcribe``, the streamed text). Not a timing. Prints a table and the changes,
writes JSON.

    .venv/bin/python bench/sentences_of_tests.py --models espeak-demo-en,candidate=RUN/model.nemo [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from long_stream_wer import parse_models

SR = 16000
VOICES = ("en-us", "en-gb", "en")
RATES = (140, 160, 175, 200)
SENTENCE = re.compile(r'"([a-z]+(?: [a-z]+){3,})"')


def sentences_in(tests: Path) -> list[str]:
    """Every string literal of 4+ lower-case words in the tests' Python files."""
    found = {m.group(1) for path in tests.rglob("*.py") for m in SENTENCE.finditer(path.read_text())}
    return sorted(found)


def spoken(text: str, voice: str, rate: int) -> np.ndarray:
    from parakeet_services.speech import espeak

    return np.concatenate([np.zeros(SR // 4, np.float32), espeak(text, voice, rate), np.zeros(SR // 2, np.float32)])


def transcripts(model: str, audio: dict[str, np.ndarray]) -> dict[str, str]:
    import parakeet_stream as ps

    engine = ps.Engine.load(ps.EngineConfig(model=model, device="cpu", max_streams=4))
    try:
        return {key: engine.transcribe(a).text for key, a in audio.items()}
    finally:
        engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="espeak-demo-en",
                    help="comma list of model names or .nemo paths, each optionally LABEL=MODEL; the first is the "
                         "one the others are compared with")
    ap.add_argument("--tests", default="tests", help="where the sentences are read from")
    ap.add_argument("--out", default="bench/results/sentences-of-tests.json")
    args = ap.parse_args()
    t0 = time.time()
    sentences = sentences_in(Path(args.tests))
    cases = {f"{voice} {rate} | {text}": (text, voice, rate) for text in sentences for voice in VOICES
             for rate in RATES}
    audio = {key: spoken(*case) for key, case in cases.items()}
    models = parse_models(args.models)
    heard = {label: transcripts(model, audio) for label, model in models.items()}
    wrong = {label: sorted(k for k, text in out.items() if text != cases[k][0]) for label, out in heard.items()}
    base, *others = models
    print(f"{len(sentences)} sentences x voices {', '.join(VOICES)} x {', '.join(map(str, RATES))} wpm = "
          f"{len(cases)} transcripts\n")
    print("| model | wrong | right where " + base + " was wrong | wrong where " + base + " was right |")
    print("|---|---|---|---|")
    changes = {}
    for label in models:
        fixed = sorted(set(wrong[base]) - set(wrong[label]))
        broke = sorted(set(wrong[label]) - set(wrong[base]))
        changes[label] = dict(fixed=fixed, broke=broke)
        print(f"| {label} | {len(wrong[label])} | {len(fixed)} | {len(broke)} |")
    for label in others:
        for kind in ("broke", "fixed"):
            print(f"\n{label}, {'wrong where ' + base + ' was right' if kind == 'broke' else 'newly right'}:")
            for key in changes[label][kind]:
                print(f"  {key} -> {base}: {heard[base][key]!r}, {label}: {heard[label][key]!r}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(
        models=models, voices=VOICES, rates=RATES, sentences=sentences, seconds=round(time.time() - t0, 1),
        wrong={label: {k: heard[label][k] for k in keys} for label, keys in wrong.items()}, changes=changes),
        indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
