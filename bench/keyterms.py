"""Keyterm boosting on the bundled demo model: what it recovers, and what it costs the batch.

    .venv/bin/python bench/keyterms.py [--weights 1,2,4] [--streams 64,256] [--rounds 20] [--repeats 3]
        [--out bench/results/keyterms-cpu.json]

Proof: sentences with names and words the demo model mishears, spoken by espeak-ng voices it was not trained on,
decoded offline (``Engine.transcribe``, the same decoding as streaming) without and with their keyterms. Per
weight: the recall of the boosted terms (the term's words appear in order in the hypothesis) and the WER of the
rest of each sentence (the term's words taken out of reference and hypothesis), against no boosting.

Cost: ``bench/stream_overhead.py``'s rounds of 160 ms for N streams, with no stream boosted and with half of them
boosted (every other one, three keyterms each), interleaved in fresh processes; the inference thread's time per
stream-step (model, decoding and Python together), medians of the repeats. Prints markdown tables, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from interleaved import write_result

# (sentence, keyterm): names outside the demo model's closed vocabulary (spelled from its subwords) and words of
# it that unseen voices blur
CASES = [
    ("play the song by radiohead", "radiohead"),
    ("call doctor zubrowski at seven", "zubrowski"),
    ("remind kim to water the plants", "kim"),
    ("set a timer for ten minutes for the pasta", "pasta"),
    ("text sarah that the meeting moved", "sarah"),
    ("send the report to priya on monday", "priya"),
    ("book a table at moretti for saturday", "moretti"),
    ("the password is kubernetes", "kubernetes"),
    ("open the spotify app", "spotify"),
    ("call nadia at five thirty", "nadia"),
]
VOICES = ("en-gb", "en-sc", "en-us+f3", "en-gb-x-rp")
COST_KEYTERMS = ("radiohead", "zubrowski", "kubernetes")


def word_errors(ref: list[str], hyp: list[str]) -> int:
    from parakeet_services.train_demo.evaluate import word_errors as errors

    return errors(" ".join(ref), " ".join(hyp))


def contains(hyp: list[str], term: list[str]) -> bool:
    return any(hyp[i:i + len(term)] == term for i in range(len(hyp) - len(term) + 1))


def without(words: list[str], term: list[str]) -> list[str]:
    return [w for w in words if w not in term]


def proof(weights: list[float]) -> dict:
    import parakeet_stream as ps
    from parakeet_services.speech import espeak

    engine = ps.Engine.load(ps.EngineConfig(model="espeak-demo-en", device="cpu", max_streams=2))
    rows = {w: {"hits": 0, "errors": 0, "words": 0} for w in [0.0, *weights]}
    examples = []
    try:
        for sentence, term in CASES:
            ref, t = sentence.split(), term.split()
            for voice in VOICES:
                audio = espeak(sentence, voice, 160, trim=True)
                for w in rows:
                    hyp = engine.transcribe(audio, **({"keyterms": [term], "keyterm_weight": w} if w else {}))
                    words = hyp.text.split()
                    rows[w]["hits"] += contains(words, t)
                    rows[w]["errors"] += word_errors(without(ref, t), without(words, t))
                    rows[w]["words"] += len(without(ref, t))
                    examples.append({"sentence": sentence, "voice": voice, "weight": w, "text": hyp.text})
    finally:
        engine.close()
    n = len(CASES) * len(VOICES)
    table = [{"weight": w, "term_recall": round(r["hits"] / n, 3), "rest_wer": round(r["errors"] / r["words"], 4)}
             for w, r in rows.items()]
    print(f"\n{n} utterances ({len(CASES)} sentences x {len(VOICES)} voices)\n")
    print("| keyterm weight | recall of the term | WER of the rest |")
    print("|---|---|---|")
    for row in table:
        label = "none (no boosting)" if not row["weight"] else f"{row['weight']:g}"
        print(f"| {label} | {row['term_recall']:.0%} | {row['rest_wer']:.1%} |")
    return {"table": table, "examples": examples}


def cost(levels: list[int], rounds: int, repeats: int) -> dict:
    script = str(Path(__file__).resolve())
    runs: dict[str, dict[int, list[dict]]] = {"none": {n: [] for n in levels}, "half": {n: [] for n in levels}}
    for r in range(repeats):
        for n in levels:
            for side in runs:
                print(f"[{r + 1}/{repeats}] {n} streams, {side} boosted ...", file=sys.stderr, flush=True)
                out = subprocess.run([sys.executable, script, "--child", str(n), "--rounds", str(rounds),
                                      "--side", side], capture_output=True, text=True, check=True)
                runs[side][n].append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = []
    print("\n| streams | none boosted: us / stream-step | half boosted | ratio |")
    print("|---|---|---|---|")
    for n in levels:
        none = statistics.median(x["thread_us_per_stream_step"] for x in runs["none"][n])
        half = statistics.median(x["thread_us_per_stream_step"] for x in runs["half"][n])
        table.append({"streams": n, "none_us": none, "half_us": half, "ratio": round(half / none, 3)})
        print(f"| {n} | {none:g} | {half:g} | {half / none:.2f} |")
    return {"table": table, "runs": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="1,2,4")
    p.add_argument("--streams", default="64,256")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/results/keyterms-cpu.json")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--side", default="none", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        import parakeet_stream  # noqa: F401  (first: it sets the CPU runtime before torch loads)
        from stream_overhead import run_level, speech_audio

        audio = speech_audio(args.rounds * 0.16 + 1.0)
        share = 0.5 if args.side == "half" else 0.0
        print(json.dumps(run_level(args.child, args.rounds, audio, boosted_share=share, keyterms=COST_KEYTERMS)))
        return 0
    boosting = proof([float(w) for w in args.weights.split(",")])
    costs = cost([int(n) for n in args.streams.split(",")], args.rounds, args.repeats)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_result(args.out, "keyterms", {"this": commit}, costs["runs"], costs["table"], "cpu",
                 proof=boosting, rounds=args.rounds, repeats=args.repeats, cost_keyterms=COST_KEYTERMS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
