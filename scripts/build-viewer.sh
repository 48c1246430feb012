#!/usr/bin/env bash
# Rebuilds the captions page's script (agent/parakeet_services/viewer/static/captions.js) from web/captions-page:
# livekit-client and the page's source bundled by esbuild into one ES module. The bundle is committed, so running
# the page needs neither npm nor a CDN; run this after changing web/captions-page or its locked dependencies.
set -euo pipefail
cd "$(dirname "$0")/../web/captions-page"
npm ci --no-audit --no-fund
npm run build
