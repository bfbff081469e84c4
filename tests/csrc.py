"""The C sources that tests compile themselves (setup.py builds the extension)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
# Every kernel set, the scalar quantizers they share, and the CPU probe.
KERNEL_SOURCES = [
    *sorted((CSRC / "kernels").glob("*.c")),
    CSRC / "quant" / "quant_ref.c",
    CSRC / "cpu_features.c",
]
# The whole engine behind csrc/rwkv_edge.h: model.c, gguf.c, the pool, errors.
ENGINE_SOURCES = sorted({*CSRC.glob("*.c"), *KERNEL_SOURCES})
