#!/usr/bin/env bash
# The whole test run, as the README's second command and CI do it:
#   1. install the package with its test extras (builds the C core via cffi);
#   2. lint (ruff);
#   3. the aarch64 kernels, cross-compiled and run under qemu-user;
#   4. pytest (every backend, every ISA this CPU has, plus a forced AVX2 run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
export RWKV_EDGE_REQUIRE_C=1  # a C build failure must fail the run, not fall back
python3 -m pip install -q ".[test]" 2>&1 | grep -v "Running pip as the 'root' user" || true
python3 -m ruff check .
python3 -m ruff format --check .
if [ -x tools/ci_arm.sh ]; then bash tools/ci_arm.sh; fi

# -P: keep the source tree off sys.path, so tests import the installed build.
exec python3 -P -m pytest -p no:cacheprovider -q "$@"
