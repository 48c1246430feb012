#!/usr/bin/env bash
# The adapters against the newest livekit-agents and pipecat-ai that pyproject.toml allows, so that a framework
# release that breaks them is seen, not guessed. When the newest allowed versions are the ones in constraints.txt,
# the main test run already covers them and this says so; otherwise it builds .venv-newest (everything else as
# constrained) and runs tests/livekit and tests/pipecat there. Run by scripts/test.sh after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."

newest() {  # the newest release of $1 on the package index, or nothing when the index cannot be reached
  .venv/bin/pip index versions "$1" --disable-pip-version-check 2>/dev/null | sed -n "1s/^$1 (\(.*\))$/\1/p"
}
pinned() { sed -n "s/^$1==//p" constraints.txt; }

upgrades=()
for pkg in livekit-agents pipecat-ai; do
  latest=$(newest "$pkg")
  if [ -z "$latest" ]; then
    echo "==> newest $pkg: the package index cannot be reached; skipped"
    exit 0
  fi
  if [ "$latest" != "$(pinned "$pkg")" ]; then
    upgrades+=("$pkg==$latest")
  fi
done
if [ ${#upgrades[@]} -eq 0 ]; then
  echo "==> newest allowed livekit-agents $(pinned livekit-agents) and pipecat-ai $(pinned pipecat-ai) are the tested ones"
  exit 0
fi

echo "==> adapter tests with ${upgrades[*]} in .venv-newest"
grep -v -e '^livekit' -e '^pipecat-ai==' constraints.txt > .venv-newest.constraints
[ -x .venv-newest/bin/python ] || python3 -m venv .venv-newest
.venv-newest/bin/pip install -q --disable-pip-version-check -c .venv-newest.constraints -e '.[test]' "${upgrades[@]}"
.venv-newest/bin/python -m pytest -q -p no:cacheprovider -m "not realtime" tests/livekit tests/pipecat
