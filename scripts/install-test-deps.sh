#!/usr/bin/env bash
# What the test suite needs beyond the product (scripts/install.sh): as root or with sudo on Debian/Ubuntu.
#   - system packages: espeak-ng (test speech), flite (train-demo's second synthesizer), redis-server (dalston tests), sox, chromium (captions page tests,
#     driven by Playwright with executable_path: Playwright's own browser download is never used)
#   - the LiveKit server v1.13.5 for end-to-end tests, built with `go install` when Go is present
#   - the Docker Compose v2 CLI plugin, to check docker-compose.yml (`docker compose config`; no engine needed)
#   - the test extra (pytest and friends) in .venv
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v flite >/dev/null || missing+=(flite)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v sox >/dev/null || missing+=(sox)
command -v chromium >/dev/null || missing+=(chromium)
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

COMPOSE_MODULE="github.com/docker/compose/v2@v2.40.3"
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1 && command -v go >/dev/null; then
  echo "==> building the Docker Compose v2 CLI plugin ($COMPOSE_MODULE) to check docker-compose.yml"
  src=$(go mod download -json "$COMPOSE_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$HOME/.docker/cli-plugins"
  (cd "$src" && go build -o "$HOME/.docker/cli-plugins/docker-compose" ./cmd)
fi

echo "==> pip install -e .[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
