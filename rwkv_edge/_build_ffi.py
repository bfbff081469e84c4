"""cffi build script (API mode, out-of-line): compiles csrc/ into rwkv_edge._rwkv_edge_c.

The cdef is csrc/rwkv_edge.h with its preprocessor lines removed, so the one
ABI header is the whole boundary. The sources and flags are csrc/build.py's
(the one description every C build reads): its "shipped" profile, or
"sanitize" (ASan + UBSan) with RWKV_EDGE_SANITIZE=1 for CI's sanitizer job.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

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


def _load_build_description() -> ModuleType:
    """csrc/build.py, by path: it is a script of the source tree, not a package module."""
    spec = importlib.util.spec_from_file_location("rwkv_edge_csrc_build", CSRC / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cbuild = _load_build_description()
profile = "sanitize" if os.environ.get("RWKV_EDGE_SANITIZE") else "shipped"

ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header((CSRC / "rwkv_edge.h").read_text()))
ffibuilder.set_source(
    "rwkv_edge._rwkv_edge_c",
    '#include "rwkv_edge.h"',
    # relative paths: setuptools puts the objects under build/ by them
    sources=[os.path.relpath(p, ROOT) for p in cbuild.sources("engine")],
    include_dirs=[os.path.relpath(CSRC, ROOT)],
    extra_compile_args=cbuild.cflags(profile, include=False),
    extra_link_args=cbuild.ldflags(profile, libs=False),
    libraries=list(cbuild.LIBRARIES),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
