#!/usr/bin/env bash
# The whole test run, as the README's second command and CI do it:
#   1. install the package with its test extras (builds the C core via cffi);
#   2. lint (ruff) and type-check the installed package (mypy, tools/typecheck.sh);
#   3. the aarch64 kernels, cross-compiled and run under qemu-user;
#   4. the C core under ASan+UBSan (kernel tests and the C-engine suites);
#   5. the kernel tests built with clang; a short fixed-seed fuzz run of every
#      parser of untrusted bytes;
#   6. pytest (every backend, every ISA this CPU has, plus a forced AVX2 run, and
#      the whole C core cross-compiled for aarch64 and run under qemu-user).
# `bash tools/test.sh --quick` skips 3-5 (a faster local loop); extra arguments
# after it go to pytest. Steps 3 and 5 install Debian packages (cross gcc, qemu,
# clang) with apt-get when they are missing, and step 6 Chromium (for the chat page).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ ${1:-} == --quick ]]; then
    quick=1
    shift
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore # CI runs as root; pip's warning about it is noise
export RWKV_EDGE_REQUIRE_C=1  # a C build failure must fail the run, not fall back
# No pipe after pip: its exit status (a failed C build included) must stop the run.
python3 -m pip install -q ".[test]"
python3 -m ruff check .
python3 -m ruff format --check .
bash tools/typecheck.sh

if ((!quick)); then
    bash tools/ci_arm.sh
    export RWKV_EDGE_REQUIRE_ARM=1 # ci_arm.sh installed the cross gcc and qemu: no skipping
    bash tools/sanitize.sh
    # libFuzzer's runtime is only a Recommends of clang: name it, or -fsanitize=fuzzer fails.
    if ! command -v clang >/dev/null || ! clang -print-file-name=libclang_rt.fuzzer-x86_64.a \
        | grep -q /; then
        bash tools/apt_install.sh clang libclang-rt-dev
    fi
    bash tools/clang_kernels.sh
    bash tools/fuzz.sh
fi

# The chat page of `rwkv-edge serve` is tested in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null; then
    bash tools/apt_install.sh chromium
fi
export RWKV_EDGE_REQUIRE_BROWSER=1 # installed above: a missing browser fails, not skips

# -P: keep the source tree off sys.path, so tests import the installed build.
# Last, so the run closes on pytest's summary line.
exec python3 -P -m pytest -p no:cacheprovider -q "$@"
