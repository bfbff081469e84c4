"""The C build, described once: which files make the core and the flags it ships with.

Every build of csrc/ reads this file: the extension setup.py builds
(rwkv_edge/_build_ffi.py), the test programs the tests build
(tests/test_c_kernels.py, tests/test_arm_model.py) and the scripts in tools/
(ci_arm.sh, clang_kernels.sh, sanitize.sh, fuzz.sh) through the command line
below. The shipped flags are the base of every build; a profile adds only what
its purpose needs (-Werror, sanitizers, libFuzzer), and a cross build changes the
compiler, never the flags, so the kernel tests test the code as it ships (the
sanitizer and fuzz builds also lower -O3 to -O1, see PROFILES).

Adding a C file to the core is one line: in KERNELS if the kernel test program
needs it (every kernel set and what they call), else in ENGINE_ONLY. Headers
need no entry. tests/test_c_kernels.py checks that every .c file under csrc/ is
listed here (or is a test program).

    python3 csrc/build.py shell PROFILE    bash assignments: kernel_srcs, engine_srcs,
                                           test_kernels_srcs, model_check_srcs (absolute
                                           paths), cflags (with -I csrc), ldflags
    python3 csrc/build.py cflags PROFILE   one flag a line (also: ldflags, sources GROUP)

This file is a plain script, not part of the installed package: it is loaded by
path (rwkv_edge/_build_ffi.py, tests/conftest.py's load_script).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent

# The kernel sets, the scalar block quantizers they share, and the CPU probe:
# everything csrc/tests/test_kernels.c links against.
KERNELS = (
    "kernels/kernels.c",
    "kernels/ref.c",
    "kernels/x86_avx2.c",
    "kernels/x86_avx512.c",
    "kernels/arm_neon.c",
    "quant/quant_ref.c",
    "cpu_features.c",
)
# The rest of the engine behind csrc/rwkv_edge.h.
ENGINE_ONLY = (
    "model.c",
    "gguf.c",
    "threadpool.c",
    "error.c",
    "bandwidth.c",
)
# Test programs under csrc/tests, each with the group it links against.
PROGRAMS = {
    "test_kernels": ("tests/test_kernels.c", "kernels"),
    "model_check": ("tests/model_check.c", "engine"),
}

# The shipped build: baseline flags for the architecture (SIMD kernels opt in
# per function with target attributes, so one build runs on every CPU of it).
BASE_CFLAGS = ("-O3", "-std=gnu11", "-Wall", "-Wextra", "-fno-strict-aliasing", "-pthread")
LIBRARIES = ("m",)
BASE_LDFLAGS = ("-pthread",)

_SANITIZERS = "-fsanitize=address,undefined"
# Profile -> (extra compile flags, extra link flags), added after the base ones.
PROFILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shipped": ((), ()),
    # test programs: the shipped code, where any warning fails the build
    "strict": (("-Werror",), ()),
    # ASan + UBSan (tools/sanitize.sh, RWKV_EDGE_SANITIZE=1 for the extension):
    # -g and frame pointers make the reports' stacks readable; -O1 because the
    # instrumented SIMD files build several times slower at -O3 (figures in the
    # commit that set it), and CI builds the core twice under the sanitizers
    "sanitize": (("-O1", "-g", "-fno-omit-frame-pointer", _SANITIZERS), (_SANITIZERS,)),
    # libFuzzer harness (clang only, tools/fuzz.sh): a UBSan finding must stop the
    # run; -O1 as above (the fuzzer wants executions per second, not -O3 code)
    "fuzz": (
        ("-O1", "-g", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined"),
        ("-fsanitize=fuzzer,address,undefined",),
    ),
}


def sources(group: str) -> list[Path]:
    """The .c files of a group: "kernels", "engine" (all of the core) or a PROGRAMS name."""
    if group in PROGRAMS:
        main, links = PROGRAMS[group]
        return [CSRC / main, *sources(links)]
    if group == "kernels":
        return [CSRC / f for f in KERNELS]
    if group == "engine":
        return [CSRC / f for f in (*KERNELS, *ENGINE_ONLY)]
    raise ValueError(f"unknown source group {group!r}")


def _profile(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if name not in PROFILES:
        raise ValueError(f"unknown build profile {name!r} (known: {', '.join(PROFILES)})")
    return PROFILES[name]


def cflags(profile: str = "shipped", include: bool = True) -> list[str]:
    """Compile flags: the shipped ones, then the profile's (and -I csrc unless include=False)."""
    extra, _ = _profile(profile)
    return [*BASE_CFLAGS, *extra, *([f"-I{CSRC}"] if include else [])]


def ldflags(profile: str = "shipped", libs: bool = True) -> list[str]:
    """Link flags, then the libraries (-lm) unless libs=False."""
    _, extra = _profile(profile)
    return [*BASE_LDFLAGS, *extra, *(f"-l{lib}" for lib in LIBRARIES if libs)]


def command(
    cc: str, group: str, profile: str, output: Path, extra_sources: tuple[Path, ...] = ()
) -> list[str]:
    """The compiler command line that builds one program of a group's sources."""
    srcs = [*extra_sources, *sources(group)]
    return [cc, *cflags(profile), "-o", str(output), *map(str, srcs), *ldflags(profile)]


def _bash_array(name: str, items: list[str] | list[Path]) -> str:
    return f"{name}=({' '.join(shlex.quote(str(i)) for i in items)})"


def shell(profile: str) -> str:
    """Bash assignments of every source group and of a profile's flags (for tools/*.sh)."""
    lines = [
        _bash_array("kernel_srcs", sources("kernels")),
        _bash_array("engine_srcs", sources("engine")),
        *(_bash_array(f"{p}_srcs", sources(p)) for p in PROGRAMS),
        _bash_array("cflags", cflags(profile)),
        _bash_array("ldflags", ldflags(profile)),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("shell", "cflags", "ldflags", "sources"):
        print(__doc__, file=sys.stderr)
        return 2
    what, arg = argv
    try:
        if what == "shell":
            print(shell(arg))
        elif what == "sources":
            print("\n".join(map(str, sources(arg))))
        else:
            print("\n".join(cflags(arg) if what == "cflags" else ldflags(arg)))
    except ValueError as e:
        print(f"csrc/build.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
