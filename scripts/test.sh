#!/usr/bin/env bash
# The test command: install what is missing, then run the whole suite. Tests start their own redis-server and
# livekit-server on free loopback ports; nothing is downloaded at test time (models are bundled or built).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-test-deps.sh
# Two processes: every thread that runs torch ops keeps an OpenMP pool, and once the unit tests have run models
# on the main thread, an engine thread in the same process steps ~1.8x slower on 2 cores (docs/engine-api.md).
# The realtime end-to-end tests (captions over WebRTC) must keep up with live audio, so they get a fresh process.
.venv/bin/python -m pytest -q -p no:cacheprovider -m "not realtime" "$@" tests
.venv/bin/python -m pytest -q -p no:cacheprovider -m realtime "$@" tests
bash scripts/test-newest.sh
