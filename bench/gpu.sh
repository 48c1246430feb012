#!/usr/bin/env bash
# One-command GPU benchmark for an H100/H200 host whose Python has CUDA torch but not NeMo.
#   bench/gpu.sh [extra `parakeet-stream bench` args]
# Prepares the host with bench/gpu-env.sh (NeMo from the wheels in bench/wheels/, espeak-ng and flite from
# tmp/train-gpu/espeak.tar.gz when the host has none: make both with scripts/fetch-train-gpu-deps.sh and carry
# them; no network needed), then runs `xl` (0.6 B nemotron layout, random weights) bf16 @ 160 ms: engine ramp, per-stream
# baseline, VAD+offline baseline, NeMo pipeline. Time-boxed to finish in under 8 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source bench/gpu-env.sh
mkdir -p bench/results
RESULT=bench/results/xl-bf16-160ms-cuda-$(date +%Y%m%d-%H%M%S).json
timeout "${BENCH_TIMEOUT:-470}" "$PY" -m parakeet_services.bench_cmd --model xl --dtype bf16 --chunk-ms 160 --device cuda --threads 0 \
    --seconds 8 --spread 1.0 --budget 300 --out "$RESULT" "$@"
