#!/usr/bin/env bash
# Run the C engine and the kernels under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   tools/sanitize.sh          a few minutes; exit 0 only with zero sanitizer reports
#
# 1. Builds the extension with RWKV_EDGE_SANITIZE=1 (csrc/build.py's "sanitize"
#    profile: the shipped flags + -fsanitize=address,undefined) into a private site dir, /tmp/rwe-site-sanitize.
# 2. Runs the C-engine pytest suites against it with libasan preloaded (python
#    itself is not instrumented, so the runtime must come first). Leak detection
#    is off: CPython's own allocations would drown real reports.
# 3. Builds csrc/tests/test_kernels.c with the same profile and runs it for
#    every kernel set this CPU supports.
# Every report goes to a log file (pytest would hide stderr of passing tests);
# any log file at the end is a failure, printed here.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${SANITIZE_WORK:-/tmp/rwe-sanitize-${USER:-ci}}
site=/tmp/rwe-site-sanitize
rm -rf "$work" && mkdir -p "$work/logs"

echo "== build (RWKV_EDGE_SANITIZE=1)"
RWKV_EDGE_SANITIZE=1 "$root/tools/dev_install.sh" sanitize >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log"
    exit 1
}
ls "$site"/rwkv_edge/_rwkv_edge_c*.so >/dev/null || { echo "no extension built"; exit 1; }

# libstdc++ right after libasan: python does not link it, and without it ASan
# cannot resolve __cxa_throw at start-up and aborts on the first C++ exception
# (torch, which the reference tests import, throws and catches internally).
preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$work/logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$work/logs/ubsan"
export RWKV_EDGE_UNDER_ASAN=1  # tests skip their address-space limits (ASan maps ~20 TB)

echo "== C engine suites under ASan+UBSan"
suites=(tests/test_c_engine.py tests/test_api_robustness.py tests/test_concurrency.py
        tests/test_batch.py
        tests/test_hostile_gguf.py::test_c_loader_refuses_every_lie
        tests/test_hostile_gguf.py::test_c_loader_truncated_and_flipped)
(cd "$root" && RWKV_EDGE_BACKENDS=c LD_PRELOAD=$preload PYTHONPATH=$site \
    pytest -q -p no:cacheprovider "${suites[@]}" 2>&1 | tail -8) \
    | tee "$work/pytest.log"
pytest_status=${PIPESTATUS[0]}
grep -qE "[0-9]+ passed" "$work/pytest.log" && ! grep -qE "[0-9]+ (failed|error)" "$work/pytest.log" \
    || pytest_status=1

echo "== kernel tests under ASan+UBSan"
build=$(python3 "$root/csrc/build.py" shell sanitize) # the shipped flags + ASan/UBSan
eval "$build"
gcc "${cflags[@]}" -o "$work/test_kernels" "${test_kernels_srcs[@]}" "${ldflags[@]}" \
    2>"$work/kernels-build.log" || {
    cat "$work/kernels-build.log"
    exit 1
}
kernel_status=0
for isa in $("$work/test_kernels" --list); do
    if "$work/test_kernels" "$isa" >"$work/kernels-$isa.log" 2>&1 \
        && ! grep -q "^FAIL" "$work/kernels-$isa.log"; then
        echo "kernels $isa: ok ($(tail -1 "$work/kernels-$isa.log"))"
    else
        kernel_status=1
        echo "kernels $isa: FAILED"; tail -20 "$work/kernels-$isa.log"
    fi
done

reports=$(find "$work/logs" -type f | wc -l)
echo "== sanitizer reports: $reports"
for f in $(find "$work/logs" -type f | head -5); do echo "--- $f"; head -40 "$f"; done
if ((reports || pytest_status || kernel_status)); then
    echo "sanitize: FAILED (reports=$reports pytest=$pytest_status kernels=$kernel_status)"
    exit 1
fi
echo "sanitize: ok, zero reports"
