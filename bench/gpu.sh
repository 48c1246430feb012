#!/usr/bin/env bash
# One-command GPU benchmark for an H100/H200 host whose Python has CUDA torch but not NeMo.
#   bench/gpu.sh [extra `parakeet-stream bench` args]
# Installs the wheels of bench/gpu-python-deps.txt from bench/wheels/ (made by bench/fetch-gpu-wheels.sh; no
# network needed), then runs `xl` (0.6 B nemotron layout, random weights) bf16 @ 160 ms: engine ramp, per-stream
# baseline, VAD+offline baseline, NeMo pipeline. Time-boxed to finish in under 8 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-$ROOT/bench/wheels}
"$PY" -c 'import torch, sys; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0), file=sys.stderr)'
if ! "$PY" -c 'import nemo.collections.asr, silero_vad' 2>/dev/null; then
    [ -d "$WHEELS" ] || { echo "no wheel dir $WHEELS (run bench/fetch-gpu-wheels.sh where PyPI is reachable)" >&2; exit 2; }
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps -r <(grep -v '^#' bench/gpu-python-deps.txt)
fi
# the project itself from this checkout (no install: its pinned torch must not replace the host's CUDA build)
export PYTHONPATH="$ROOT/plugin:$ROOT/agent${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p bench/results
OUT=bench/results/xl-bf16-160ms-cuda-$(date +%Y%m%d-%H%M%S).json
timeout 470 "$PY" -m parakeet_services.bench_cmd --model xl --dtype bf16 --chunk-ms 160 --device cuda --threads 0 \
    --seconds 8 --spread 1.0 --budget 300 --out "$OUT" "$@"
