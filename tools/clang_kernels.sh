#!/usr/bin/env bash
# The kernel tests built with clang (csrc/build.py's flags + -Werror) and run for every
# kernel set: on this x86 CPU, and for aarch64 (clang --target, linked by
# Debian's cross gcc, run under qemu-user like tools/ci_arm.sh) when those
# tools are here. clang is the compiler of macOS and the Android NDK, and
# GCC's `#pragma GCC target` means nothing to it (the x86 files carry a clang
# form too; arm_neon.c names the dotprod feature clang's way). Exits non-zero
# on a build error or a failed check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build=$(python3 "$root/csrc/build.py" shell strict) # the shipped flags + -Werror
eval "$build"

clang "${cflags[@]}" -o "$out/test_kernels" "${test_kernels_srcs[@]}" "${ldflags[@]}"
for isa in $("$out/test_kernels" --list); do
    "$out/test_kernels" "$isa" | tail -n 1 | sed "s/^/clang x86 kernels $isa: /"
done

if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
    mkdir "$out/arm"
    for f in "${test_kernels_srcs[@]}"; do
        clang --target=aarch64-linux-gnu -isystem /usr/aarch64-linux-gnu/include "${cflags[@]}" \
            -c "$f" -o "$out/arm/$(basename "$f" .c).o"
    done
    aarch64-linux-gnu-gcc -o "$out/arm/test_kernels" "$out"/arm/*.o "${ldflags[@]}"
    # neon and dotprod only: the ref set is the portable C that the x86 run above
    # and ci_arm.sh (gcc, aarch64) already test, and under qemu it costs ~25 s
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/arm/test_kernels" neon dotprod | tail -n 1 \
        | sed "s/^/clang aarch64 kernels (qemu max: neon, dotprod): /"
else
    echo "clang aarch64 kernels: skipped (no aarch64 cross gcc or qemu-aarch64)"
fi
