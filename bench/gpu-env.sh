# Sourced by bench/gpu.sh and scripts/train_demo_gpu.sh: make a CUDA PyTorch host (Python 3.12, no network) ready
# to run this checkout. Installs the wheels of bench/gpu-python-deps.txt from bench/wheels/ when NeMo is missing
# (bench/fetch-gpu-wheels.sh makes them), puts the espeak-ng and flite packed in tmp/train-gpu/espeak.tar.gz on PATH
# when the host has none (scripts/fetch-train-gpu-deps.sh makes it), and puts plugin/ and agent/ on PYTHONPATH (no install:
# the project's pinned torch must not replace the host's CUDA build).
# Needs ROOT (the checkout) set; honours PYTHON, WHEELS, ESPEAK_ROOT and GPU_ENV_ALLOW_CPU=1 (a dry run on a CPU host).
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-$ROOT/bench/wheels}
ESPEAK_ROOT=${ESPEAK_ROOT:-$ROOT/tmp/train-gpu/espeak}

if [ -z "${GPU_ENV_ALLOW_CPU:-}" ]; then
    "$PY" -c 'import torch, sys; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0), file=sys.stderr)'
fi
if ! "$PY" -c 'import nemo.collections.asr, silero_vad, lightning' 2>/dev/null; then
    [ -d "$WHEELS" ] || { echo "no wheel dir $WHEELS (run bench/fetch-gpu-wheels.sh where PyPI is reachable)" >&2; exit 2; }
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps -r <(grep -v '^#' "$ROOT/bench/gpu-python-deps.txt")
fi
"$PY" -c 'import sentencepiece, soundfile, soxr' || { echo "the host Python lacks sentencepiece/soundfile/soxr" >&2; exit 2; }

if [ ! -d "$ESPEAK_ROOT" ] && [ -f "$ESPEAK_ROOT.tar.gz" ]; then  # packed by scripts/fetch-train-gpu-deps.sh
    packed="$ESPEAK_ROOT.tar.gz"
    ESPEAK_ROOT=${TMPDIR:-/tmp}/parakeet-train-gpu-speech
    mkdir -p "$ESPEAK_ROOT"
    tar -C "$ESPEAK_ROOT" -xzf "$packed"
fi
if ! command -v espeak-ng >/dev/null && [ -x "$ESPEAK_ROOT/usr/bin/espeak-ng" ]; then
    export PATH="$ESPEAK_ROOT/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$ESPEAK_ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export ESPEAK_DATA_PATH="$ESPEAK_ROOT/usr/lib/x86_64-linux-gnu"
fi
if ! command -v flite >/dev/null && [ -x "$ESPEAK_ROOT/usr/bin/flite" ]; then
    export PATH="$ESPEAK_ROOT/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$ESPEAK_ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if command -v espeak-ng >/dev/null; then
    [ "$(espeak-ng --stdout -v en-us "ready" | wc -c)" -gt 1000 ] || { echo "espeak-ng does not speak here" >&2; exit 2; }
fi
export PYTHONPATH="$ROOT/plugin:$ROOT/agent${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
