#!/usr/bin/env bash
# Everything a short GPU lease is for, in one command that ends inside a time budget:
#   RESULTS=DIR [BUDGET_S=540] [TRAIN_MIN=0] [DECAY_STEPS=1500] [LEVELS=128,256,512,1024] [MAX_BATCH_VARIANTS=256]
#   [PROCESSES=2,4] [TRAIN_ARGS="--layers 8"]
#   bash scripts/gpu_session.sh
# 1. with TRAIN_MIN > 0 (e.g. 4), trains the demo model first (scripts/train_demo_gpu.sh: synthesis, TRAIN_MIN
#    minutes of training, DECAY_STEPS of annealing, evaluation, card; TRAIN_ARGS: more train-demo arguments, such as
#    --layers 8 for a deeper model from scratch); the bundled model is done, so by default not;
# 2. checks that streaming gives the offline text on the GPU (bench/streamed_vs_offline.py, the demo model), measures
#    the inference thread's per-stream Python with the demo model on the GPU and Silero VAD (bench/stream_overhead.py),
#    then runs the GPU benchmark (bench/gpu.sh: xl bf16 @ 160 ms at LEVELS, the engine cut into pipelined batches of
#    MAX_BATCH_VARIANTS [256] streams at the levels above that, the engine in PROCESSES [2,4] processes at the
#    levels from one process's limit up, per-stream baseline at 4) with the time left.
# Small results land in RESULTS (model.nemo, MODEL_CARD.md, eval.json, curve.csv, train_state.json, data.json,
# bench.json, streamed-vs-offline.json, stream-overhead.json, session.log: 10 files, ~11 MB; the card and bench.json
# name the GPU). Needs what bench/gpu-env.sh needs (carry bench/wheels and tmp/train-gpu, made by
# scripts/fetch-train-gpu-deps.sh). Each part runs even if the other failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RESULTS=${RESULTS:?set RESULTS to the folder that comes back}
BUDGET_S=${BUDGET_S:-540}
mkdir -p "$RESULTS"
LOG="$RESULTS/session.log"
if [ "${TRAIN_MIN:-0}" != "0" ]; then
    RUN_DIR=${RUN_DIR:-/tmp/train-demo-run} COPY_TO="$RESULTS" DECAY_STEPS=${DECAY_STEPS:-1500} \
        bash scripts/train_demo_gpu.sh --minutes "$TRAIN_MIN" --max-steps 20000 ${TRAIN_ARGS:-} 2>&1 \
        | grep --line-buffered -v '^synth .*[1-9] %' | tee -a "$LOG"
    rm -f "$RESULTS/gpu.txt"
    echo "== training done at ${SECONDS}s" | tee -a "$LOG"
fi
# 2a. streamed == offline on this GPU (bf16 and fp32, features on the GPU and on the CPU; ~2 min): batching and
#     the kept keys and values change the rounding on CUDA, so count the texts that differ before trusting the
#     throughput
(source bench/gpu-env.sh && timeout 240 "$PY" bench/streamed_vs_offline.py --device cuda --dtypes bf16,fp32 \
    --features-devices auto,cpu \
    --sentences "${TEXT_SENTENCES:-25}" --out "$RESULTS/streamed-vs-offline.json") 2>&1 \
    | grep --line-buffered -v '^synth ' | tee -a "$LOG"
echo "== text check done at ${SECONDS}s" | tee -a "$LOG"
# 2b. the inference thread's per-stream Python on this host (the demo model on the GPU, 1024 streams with Silero VAD;
#     ~30 s): what a step of a thousand streams spends outside the model and VAD, to read the benchmark against
(source bench/gpu-env.sh && timeout 90 "$PY" bench/stream_overhead.py --device cuda --vad --streams 1024 \
    --rounds 8 --repeats 1 --out "$RESULTS/stream-overhead.json") 2>&1 | grep --line-buffered -v '^synth ' \
    | tee -a "$LOG"
echo "== per-stream overhead done at ${SECONDS}s" | tee -a "$LOG"
left=$((BUDGET_S - SECONDS))
if [ "$left" -gt 60 ]; then
    # baseline 1 of issue 7: one stream per call of NeMo's own step (per_stream_nemo builds the model a second time)
    # the engine again with its steps cut into pipelined batches of MAX_BATCH_VARIANTS streams (at the levels
    # above the cap): whether overlapping the next batch's encoder with this batch's Python beats one big batch
    BENCH_TIMEOUT=$left bash bench/gpu.sh --streams "${LEVELS:-128,256,512,1024}" --baselines per_stream_nemo \
        --baseline-streams 4 --seconds 6 --budget $((left - 40)) --out "$RESULTS/bench.json" \
        --max-batch-variants "${MAX_BATCH_VARIANTS:-256}" --processes "${PROCESSES:-2,4}" ${BENCH_ARGS:-} 2>&1 \
        | tee -a "$LOG"
else
    echo "== no time left for the benchmark (${left}s)" | tee -a "$LOG"
fi
echo "== session done at ${SECONDS}s" | tee -a "$LOG"
