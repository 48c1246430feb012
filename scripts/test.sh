#!/usr/bin/env bash
# The test command: install what is missing, then run the whole suite. Tests start their own redis-server and
# livekit-server on free loopback ports; nothing is downloaded at test time (models are bundled or built).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
