"""Builds csrc/tests/test_kernels.c with the kernel sources and runs it per ISA.

Built with the shipped flags plus -Werror (csrc/build.py's "strict" profile),
so the kernels tested are the kernels shipped. The C program compares every
SIMD kernel with its scalar twin (ref.c) and the reference with
dequantize-then-dot; one pytest case per kernel set, skipped where this CPU or
build lacks it.  `avx2` run alone is the CI proof that the non-AVX-512 kernels
are exercised on an AVX-512 machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import cbuild

ALL_ISAS = ["ref", "avx2", "avx512", "neon", "dotprod"]


@pytest.fixture(scope="module")
def kernel_test_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """csrc/tests/test_kernels.c with the shipped flags plus -Werror (csrc/build.py)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("ckernels") / "test_kernels"
    build = subprocess.run(
        cbuild.command(cc, "test_kernels", "strict", exe), capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    return exe


def test_every_c_file_is_in_the_build_description() -> None:
    """A .c file under csrc/ that csrc/build.py does not list would be built by nothing."""
    listed = {*cbuild.sources("engine"), *(cbuild.sources(p)[0] for p in cbuild.PROGRAMS)}
    assert set(cbuild.CSRC.rglob("*.c")) == listed
    assert cbuild.cflags("strict")[: len(cbuild.BASE_CFLAGS)] == list(cbuild.BASE_CFLAGS)


@pytest.fixture(scope="module")
def supported_isas(kernel_test_binary: Path) -> list[str]:
    out = subprocess.run(
        [str(kernel_test_binary), "--list"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _run(exe: Path, isa: str) -> str:
    res = subprocess.run([str(exe), isa], capture_output=True, text=True, timeout=300)
    failures = [ln for ln in res.stdout.splitlines() if ln.startswith("FAIL")]
    assert res.returncode == 0 and not failures, "\n".join(failures) or res.stdout[-2000:]
    return res.stdout


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_kernel_set(kernel_test_binary: Path, supported_isas: list[str], isa: str) -> None:
    if isa not in supported_isas:
        pytest.skip(f"{isa} kernels not compiled for or not supported by this CPU")
    out = _run(kernel_test_binary, isa)
    summary = out.strip().splitlines()[-1]
    passed, failed = (int(w) for w in summary.replace(",", "").split()[::2][:2])
    assert failed == 0
    assert passed >= 100, summary  # every op x size x input actually ran
    assert f"PASS {isa}" in out


def test_avx2_alone_on_avx512_host(kernel_test_binary: Path, supported_isas: list[str]) -> None:
    """CI requirement: the non-AVX-512 x86 kernels run even where AVX-512 exists."""
    if "avx2" not in supported_isas:
        pytest.skip("no AVX2 on this CPU")
    out = _run(kernel_test_binary, "avx2")
    assert "avx512" not in out
    assert "PASS avx2    matmul_q4_0 cols=7168" in out
