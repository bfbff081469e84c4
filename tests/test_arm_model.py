"""The whole C core on aarch64, under qemu-user: the neon and dotprod kernel sets
against the ref set and against BlinkDL's reference, through the public ABI.

csrc/tests/model_check.c is cross-compiled with Debian's aarch64 gcc together
with the engine (model.c, gguf.c, the pool, every kernel file) and run on GGUF
versions of the tiny fixtures: f32 files against the reference's logits (1e-4,
RNN and sequence mode) and, like every file, teacher-forced against the ref
kernel set; quantized files teacher-forced only (see model_check.c for the
budgets).  tools/ci_arm.sh installs the cross compiler and qemu, and
tools/test.sh sets RWKV_EDGE_REQUIRE_ARM=1, so a full test run fails rather
than skips when they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import gguf_file, open_checkpoint

from .conftest import TEXT, TINY_V1, TINY_V2, cbuild

c_engine = pytest.importorskip("rwkv_edge._c_engine")

CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]
TOKENS = list(TEXT.encode("utf-8"))
QUANT_TOKENS = 128  # enough rows for the statistical budget; qemu is ~100x slower
# file name -> (checkpoint, matrix type)
FILES = {
    "v2-f32": (TINY_V2, None),
    "v1-f32": (TINY_V1, None),
    "v2-q8_0": (TINY_V2, "q8_0"),
    "v2-q4_0": (TINY_V2, "q4_0"),
    "v2-q4_1": (TINY_V2, "q4_1"),
}


@pytest.fixture(scope="module")
def arm_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [t for t in (CROSS_CC, QEMU[0]) if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (tools/ci_arm.sh installs them)"
        if os.environ.get("RWKV_EDGE_REQUIRE_ARM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    exe = tmp_path_factory.mktemp("arm") / "model_check"
    cmd = cbuild.command(CROSS_CC, "model_check", "strict", exe)  # shipped flags + -Werror
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return exe


@pytest.fixture(scope="module")
def workdir(tiny_v2: Path, tiny_v1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF files, the token files and the reference's logits of the f32 ones."""
    from .reference import reference_seq

    d = tmp_path_factory.mktemp("arm-files")
    np.array(TOKENS, np.int32).tofile(d / "tokens.i32")
    np.array(TOKENS[:QUANT_TOKENS], np.int32).tofile(d / "tokens-quant.i32")
    for name, (src, matrix_type) in FILES.items():
        with open_checkpoint(src) as ckpt:
            gguf_file.write_checkpoint_gguf(ckpt, d / f"{name}.gguf", matrix_type)
        if matrix_type is None:
            logits, _ = reference_seq(src, TOKENS)
            logits.astype(np.float32).tofile(d / f"{name}.expected.f32")
    return d


@pytest.mark.parametrize("name", list(FILES))
def test_neon_and_dotprod_whole_model(name: str, arm_binary: Path, workdir: Path) -> None:
    quantized = FILES[name][1] is not None
    args = [str(workdir / f"{name}.gguf")]
    tail = [str(workdir / ("tokens-quant.i32" if quantized else "tokens.i32"))]
    tail.append("--quantized" if quantized else str(workdir / f"{name}.expected.f32"))
    # qemu's default CPU has SDOT, so both sets run; the two runs in parallel
    procs = {
        isa: subprocess.Popen(
            [*QEMU, str(arm_binary), *args, isa, *tail],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for isa in ("neon", "dotprod")
    }
    try:
        outs = {isa: p.communicate(timeout=600)[0] for isa, p in procs.items()}
    finally:  # a hung qemu must not outlive the test
        for p in procs.values():
            p.kill()
    for isa, out in outs.items():
        assert procs[isa].returncode == 0, f"{isa}:\n{out}"
        checks = [line for line in out.splitlines() if line.startswith(("ok ", "FAIL"))]
        assert len(checks) == (4 if quantized else 6), out
