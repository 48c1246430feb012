#!/usr/bin/env bash
# Install parakeet-stream for use on Debian/Ubuntu: .venv with the engine and every adapter (LiveKit, Pipecat,
# dalston), at the versions CI tests (constraints.txt; pyproject.toml holds the ranges a pip install may take).
# What only the tests need (espeak-ng, redis-server, the LiveKit server, pytest) is installed by
# scripts/install-test-deps.sh, which scripts/test.sh runs.
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> pip install -e .[all] (torch and NeMo are large: the first install takes minutes)"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all]'
echo "==> ready: .venv/bin/parakeet-stream --help"
