/*
 * Run-time CPU probing: which compiled kernel sets this CPU can run.
 *   x86-64:  cpuid for the instruction sets, xgetbv for the register state
 *            the OS saves (an AVX-512 CPU under an OS that does not enable
 *            ZMM state must not run AVX-512 code).
 *   aarch64: getauxval(AT_HWCAP) on Linux, sysctl on macOS.
 * The RWKV_EDGE_ISA override lives in Python, which passes an explicit isa.
 */
#include "rwkv_edge.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* XCR0 bits: 1 SSE, 2 AVX (YMM), 5-7 opmask / ZMM_Hi256 / Hi16_ZMM. */
#define RWE_XCR0_YMM 0x06u
#define RWE_XCR0_ZMM 0xe6u

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int x86_supports(rwe_isa isa) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(osxsave && avx && fma && f16c))
        return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & RWE_XCR0_YMM) != RWE_XCR0_YMM)
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    int avx2 = (b >> 5) & 1;
    if (isa == RWE_ISA_AVX2)
        return avx2;
    int avx512 = ((b >> 16) & 1) /* F */ && ((b >> 30) & 1) /* BW */ && ((b >> 31) & 1) /* VL */
                 && ((c >> 11) & 1) /* VNNI */;
    return isa == RWE_ISA_AVX512 && avx2 && avx512 && (xcr0 & RWE_XCR0_ZMM) == RWE_XCR0_ZMM;
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define RWE_HWCAP_ASIMD (1ul << 1)
#define RWE_HWCAP_ASIMDDP (1ul << 20)

static int arm_supports(rwe_isa isa) {
    unsigned long hw = getauxval(AT_HWCAP);
    if (isa == RWE_ISA_NEON)
        return (hw & RWE_HWCAP_ASIMD) != 0;
    return isa == RWE_ISA_DOTPROD && (hw & RWE_HWCAP_ASIMD) && (hw & RWE_HWCAP_ASIMDDP);
}
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>

static int arm_supports(rwe_isa isa) {
    if (isa == RWE_ISA_NEON)
        return 1; /* Advanced SIMD is mandatory on arm64 macOS */
    int v = 0;
    size_t len = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) != 0)
        return 0;
    return isa == RWE_ISA_DOTPROD && v;
}
#endif

int rwe_cpu_supports(rwe_isa isa) {
    if (isa == RWE_ISA_AUTO || isa == RWE_ISA_REF)
        return 1;
#if defined(__x86_64__)
    if (isa == RWE_ISA_AVX2 || isa == RWE_ISA_AVX512)
        return x86_supports(isa);
#endif
#if defined(__aarch64__) && (defined(__linux__) || defined(__APPLE__))
    if (isa == RWE_ISA_NEON || isa == RWE_ISA_DOTPROD)
        return arm_supports(isa);
#endif
    return 0;
}

rwe_isa rwe_cpu_best_isa(void) {
    static const rwe_isa best_first[] = {RWE_ISA_AVX512, RWE_ISA_AVX2, RWE_ISA_DOTPROD,
                                         RWE_ISA_NEON};
    for (size_t i = 0; i < sizeof best_first / sizeof best_first[0]; i++)
        if (rwe_cpu_supports(best_first[i]))
            return best_first[i];
    return RWE_ISA_REF;
}
