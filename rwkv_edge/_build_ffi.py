"""cffi build script (API mode, out-of-line): compiles csrc/ into rwkv_edge._rwkv_edge_c.

The cdef is csrc/rwkv_edge.h with its preprocessor lines removed, so the one
ABI header is the whole boundary. Per-ISA kernel files get their own target
flags through function attributes inside the C files, so the whole core builds
with the distribution's default flags and runs on any CPU of the architecture.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


def _cdef_from_header(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines)
    body = body.replace('extern "C" {', "").replace("}\n", "}\n")
    # drop the C++ guard's lone closing brace
    return re.sub(r"^\s*}\s*$", "", body, flags=re.M)


def _sources() -> list[str]:
    srcs = sorted(p for p in CSRC.rglob("*.c") if "tests" not in p.parts)
    return [os.path.relpath(p, ROOT) for p in srcs]


def _compile_args() -> list[str]:
    # Baseline flags only: SIMD kernels opt in per function with target
    # attributes, so one build runs on every CPU of its architecture.
    args = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-fno-strict-aliasing", "-pthread"]
    if os.environ.get("RWKV_EDGE_SANITIZE"):  # ASan+UBSan build for CI's sanitizer job
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    return args


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header((CSRC / "rwkv_edge.h").read_text()))
ffibuilder.set_source(
    "rwkv_edge._rwkv_edge_c",
    '#include "rwkv_edge.h"',
    sources=_sources(),
    include_dirs=[os.path.relpath(CSRC, ROOT)],
    extra_compile_args=_compile_args(),
    extra_link_args=["-pthread"]
    + (["-fsanitize=address,undefined"] if os.environ.get("RWKV_EDGE_SANITIZE") else []),
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
