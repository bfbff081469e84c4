#!/usr/bin/env bash
# Fuzz the readers of untrusted bytes with a fixed seed and a fixed number of runs.
#
#   tools/fuzz.sh           CI: about two minutes in all (fixed runs per target)
#   tools/fuzz.sh --long    on demand: FUZZ_SECONDS (default 600) per target
#
# Targets: the Python checkpoint reader (raw bytes, and structure-aware: whole
# .pth and safetensors models with lies in their pickle opcodes, zip layout or
# header, tests/fuzz/structured.py), the Python GGUF reader and the World
# tokenizer (atheris, tests/fuzz/fuzz_python.py), and the C model loader
# (libFuzzer + ASan + UBSan, tests/fuzz/fuzz_gguf_c.c; skipped with a note when
# clang is missing: apt-get install clang). The package must be importable
# (installed, or PYTHONPATH=/tmp/rwe-site-NAME). A crash, timeout or OOM writes
# the input to $FUZZ_WORK/artifacts and makes the script fail: copy it into
# tests/fuzz/regressions/<target>/ (tests/test_hostile_files.py runs every file
# there through both engines, `info` and `quantize` under a memory limit).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/tmp/rwe-fuzz-${USER:-ci}}
long=0
[[ ${1:-} == --long ]] && long=1
mkdir -p "$work/artifacts"
cd "$work" || exit 1  # run from outside the source tree so the installed package is used

# runs per target in CI mode: each takes 10-30 s on one core
declare -A RUNS=([checkpoint]=30000 [pth]=2500 [safetensors]=2500 [gguf]=8000 [tokenizer]=150000 [c]=6000)

limits() {  # libFuzzer options shared by every target
    local t=$1
    if ((long)); then echo "-max_total_time=${FUZZ_SECONDS:-600}"; else echo "-runs=${RUNS[$t]}"; fi
    echo "-seed=1 -rss_limit_mb=2048 -timeout=30 -max_len=65536"
    # structure-aware targets: every input byte is a decision, long ones from the start
    [[ $t == pth || $t == safetensors ]] && echo "-len_control=0 -max_len=4096"
    echo "-artifact_prefix=$work/artifacts/$t- -print_final_stats=1"
}

rm -rf "$work/seeds"  # seeds are rebuilt from this checkout every run
# CI mode starts from the seeds alone, so a run is the same wherever it runs; --long keeps
# the corpus it grew before.
((long)) || rm -rf "$work"/corpus-*
python "$root/tests/fuzz/make_seeds.py" "$work/seeds" || exit 1
status=0
summary=$work/summary.txt
: >"$summary"
run_target() {  # name, command...
    local t=$1
    shift
    mkdir -p "$work/corpus-$t" "$root/tests/fuzz/regressions/$t"
    echo "== fuzz $t"
    local seeds=$work/seeds/$t
    [[ $t == c ]] && seeds=$work/seeds/gguf
    if "$@" $(limits "$t") "$work/corpus-$t" "$seeds" \
        "$root/tests/fuzz/regressions/$t" >"$work/$t.log" 2>&1; then
        echo "$t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" \
            | grep -o '[0-9]*$') executions" | tee -a "$summary"
    else
        status=1
        echo "$t: FINDING, see $work/$t.log and $work/artifacts/" | tee -a "$summary"
        tail -30 "$work/$t.log"
    fi
}

if python -c "import atheris" 2>/dev/null; then
    for t in checkpoint pth safetensors gguf tokenizer; do
        run_target "$t" python "$root/tests/fuzz/fuzz_python.py" "$t"
    done
else
    echo "python targets: skipped (no atheris; pip install atheris)" | tee -a "$summary"
fi

if command -v clang >/dev/null; then
    build=$(python3 "$root/csrc/build.py" shell fuzz) # shipped flags + libFuzzer, ASan, UBSan
    eval "$build"
    if clang "${cflags[@]}" -o "$work/fuzz_gguf_c" "$root/tests/fuzz/fuzz_gguf_c.c" \
        "${engine_srcs[@]}" "${ldflags[@]}" 2>"$work/c-build.log"; then
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 run_target c "$work/fuzz_gguf_c"
    else
        status=1
        echo "c: the harness does not build, see $work/c-build.log" | tee -a "$summary"
    fi
else
    echo "c: skipped (no clang; apt-get install clang)" | tee -a "$summary"
fi
echo "== summary ($summary)"
cat "$summary"
exit $status
