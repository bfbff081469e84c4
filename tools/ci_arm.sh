#!/usr/bin/env bash
# aarch64 CI on an x86 host: cross-compile the C kernel tests with Debian's
# gcc-aarch64-linux-gnu (csrc/build.py's flags: baseline -march, the dotprod
# kernels opt in per function) and run them under qemu-user:
#   1. qemu's default "max" CPU: the neon and dotprod kernel sets both run;
#   2. -cpu cortex-a53 (ARMv8.0, no SDOT): dotprod must be detected as absent.
# Installs the toolchain and qemu with apt-get when missing (root or sudo).
# Exits non-zero on any build error or failed check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
bash "$root/tools/apt_install.sh" "${need[@]}"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build=$(python3 "$root/csrc/build.py" shell strict) # the shipped flags + -Werror
eval "$build"
aarch64-linux-gnu-gcc "${cflags[@]}" -o "$out/test_kernels" "${test_kernels_srcs[@]}" "${ldflags[@]}"

run() { qemu-aarch64 -L /usr/aarch64-linux-gnu "$@"; }

echo "== qemu-aarch64 (max CPU): ref, neon, dotprod"
run "$out/test_kernels" | tee "$out/max.log" | grep -v '^PASS' || true
grep -q '^PASS neon ' "$out/max.log" && grep -q '^PASS dotprod ' "$out/max.log" \
    || { echo "neon/dotprod kernels did not run"; exit 1; }
grep -q ' 0 failed$' "$out/max.log" || exit 1

echo "== qemu-aarch64 -cpu cortex-a53 (no dotprod): neon only"
run -cpu cortex-a53 "$out/test_kernels" neon dotprod | tee "$out/a53.log" | grep -v '^PASS' || true
grep -q '^SKIP dotprod' "$out/a53.log" || { echo "dotprod not detected as missing"; exit 1; }
grep -q ' 0 failed$' "$out/a53.log"
