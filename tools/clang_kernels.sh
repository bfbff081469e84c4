#!/usr/bin/env bash
# The kernel tests built with clang (-Wall -Wextra -Werror) and run for every
# kernel set this CPU has: clang is the compiler of macOS and the Android NDK,
# and GCC's `#pragma GCC target` means nothing to it (the x86 files carry a
# clang form too). Exits non-zero on a build error or a failed check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
clang -O2 -std=gnu11 -Wall -Wextra -Werror -I "$root/csrc" -o "$out/test_kernels" \
    "$root/csrc/tests/test_kernels.c" "$root"/csrc/kernels/*.c "$root/csrc/quant/quant_ref.c" \
    "$root/csrc/cpu_features.c" -lm -pthread
for isa in $("$out/test_kernels" --list); do
    "$out/test_kernels" "$isa" | tail -n 1 | sed "s/^/clang kernels $isa: /"
done
