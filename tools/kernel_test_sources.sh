# Sourced by the scripts that build csrc/tests/test_kernels.c (ci_arm.sh,
# sanitize.sh, clang_kernels.sh), so its source list lives in one place:
# sets the array kernel_test_srcs from $root (the checkout).
kernel_test_srcs=("$root/csrc/tests/test_kernels.c" "$root"/csrc/kernels/*.c
    "$root/csrc/quant/quant_ref.c" "$root/csrc/cpu_features.c")
