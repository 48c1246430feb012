#!/usr/bin/env bash
# Download the wheels bench/gpu.sh installs (Python 3.12 manylinux, ~45 MB) into bench/wheels/, on a machine
# with PyPI access. Carry bench/wheels/ to the GPU host with the checkout.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
mkdir -p wheels
grep -v -e '^#' -e '^antlr4-python3-runtime' gpu-python-deps.txt > wheels/.reqs
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any -d wheels -r wheels/.reqs
# antlr4-python3-runtime 4.9.3 exists only as an sdist: build its pure-Python wheel
"$PY" -m pip wheel --no-deps -w wheels antlr4-python3-runtime==4.9.3
rm wheels/.reqs
du -sh wheels
