#!/usr/bin/env bash
# Install everything parakeet-stream and its tests need on Debian/Ubuntu (as root or with sudo):
#   - system packages: espeak-ng (test speech), redis-server (dalston tests), sox, libsndfile1
#   - the LiveKit server v1.13.5 for end-to-end tests, built with `go install` when Go is present
#   - .venv with the project (editable) and every adapter + test extra, pinned in pyproject.toml
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v sox >/dev/null || missing+=(sox)
ldconfig -p 2>/dev/null | grep -q libsndfile.so || missing+=(libsndfile1)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

LIVEKIT_MODULE="github.com/livekit/livekit-server/cmd/server@v1.13.5"
if ! command -v livekit-server >/dev/null && [ ! -x /usr/local/bin/server ] && [ ! -x "$HOME/go/bin/server" ]; then
  if command -v go >/dev/null; then
    echo "==> go install $LIVEKIT_MODULE (LiveKit server for the end-to-end tests)"
    GOBIN="$HOME/go/bin" go install "$LIVEKIT_MODULE"
  else
    echo "warning: Go is not installed; the LiveKit end-to-end tests will fail until livekit-server is on PATH" >&2
  fi
fi

# `docker compose config` validates docker-compose.yml in the tests. The docker CLI may come without the Compose
# v2 plugin, and no engine is needed to check a file: build the plugin from the Go module proxy when missing.
COMPOSE_MODULE="github.com/docker/compose/v2@v2.40.3"
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 && command -v go >/dev/null; then
  echo "==> building the Docker Compose v2 CLI plugin ($COMPOSE_MODULE) to check docker-compose.yml"
  src=$(go mod download -json "$COMPOSE_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$HOME/.docker/cli-plugins"
  (cd "$src" && go build -o "$HOME/.docker/cli-plugins/docker-compose" ./cmd)
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> pip install -e .[test] (torch and NeMo are large: the first install takes minutes)"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "==> ready: .venv/bin/parakeet-stream --help"
