"""Shared fixtures: paths to ../shared material and the reference (rwkv pip) loader."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RWKV_EDGE_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
TINY_V2 = MODELS / "tiny-rwkv-5v2-730K.pth"  # rwkv pip calls it 5.2
TINY_V1 = MODELS / "tiny-rwkv-5v1-730K.pth"  # rwkv pip calls it 5.0 (rwkv.cpp: 5v1)
WORLD_VOCAB = SHARED / "tokenizer" / "rwkv_vocab_v20230424.txt"


def load_script(rel: str) -> ModuleType:
    """A script of the checkout by its path from the repository root (csrc/build.py,
    benchmarks/*.py are not installed packages)."""
    src = REPO / rel
    spec = importlib.util.spec_from_file_location(f"{src.stem}_under_test", src)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# csrc/build.py: the C sources and flags every build reads (test programs: "strict").
cbuild = load_script("csrc/build.py")

# A paragraph of real English for logit comparisons (byte-level: 1 byte = 1 token).
TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening, counting each "
    "step as his father had taught him. At the top he trimmed the wick, polished the "
    "great lens, and watched the ships pass safely beyond the rocks. Nobody in the "
    "village remembered a night when the light had failed."
)


def shared_fixture(path: Path) -> Path:
    """A file of ../shared: skipped where it is missing on a developer's machine, but a
    failure in CI (CI=true), where a missing fixture would silently skip the oracle tests."""
    if not path.exists():
        msg = f"fixture missing: {path} (set RWKV_EDGE_SHARED to the shared/ directory)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def tiny_v2() -> Path:
    return shared_fixture(TINY_V2)


@pytest.fixture(scope="session")
def tiny_v1() -> Path:
    return shared_fixture(TINY_V1)


@pytest.fixture(scope="session")
def text_tokens() -> list[int]:
    return list(TEXT.encode("utf-8"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where the C core is required (CI), its absence is a failure, not a skip."""
    if os.environ.get("RWKV_EDGE_REQUIRE_C"):
        from rwkv_edge import c_backend_available

        if not c_backend_available():
            raise pytest.UsageError("RWKV_EDGE_REQUIRE_C is set but the C extension is missing")
