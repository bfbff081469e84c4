"""A lazily read tensor: raw storage (usually a view into a memory map) plus its dtype.

numpy has no bfloat16, so bf16 data stays as ``uint16`` and is widened on
demand; ``to_f32()`` is the only place that converts.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from .errors import FormatError

FLOAT_DTYPES = ("f32", "f16", "bf16")


def bf16_to_f32(raw: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]:
    """Exact widening: a bf16 is the top half of an fp32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]:
    """Round to nearest even, as torch does (NaN stays NaN)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = np.uint16(0x7FC0)
    return out


def round_bf16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """fp32 -> bf16 -> fp32."""
    return bf16_to_f32(f32_to_bf16(x))


@dataclass(frozen=True)
class Tensor:
    """One named tensor of a checkpoint or model file.

    ``raw`` holds the stored values: float32/float16 arrays for f32/f16,
    uint16 for bf16, and for block formats (``q8_0``...) a uint8 array of the
    blocks with ``shape`` giving the logical element shape.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    raw: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)

    def to_f32(self) -> npt.NDArray[np.float32]:
        """The values as a new float32 array of ``shape`` (reads the data)."""
        if self.dtype == "bf16":
            return bf16_to_f32(np.asarray(self.raw)).reshape(self.shape)
        if self.dtype in ("f32", "f16", "f64"):
            return np.asarray(self.raw, dtype=np.float32).reshape(self.shape)
        from .quant import dequantize  # block formats live in one module

        return dequantize(self.raw, self.dtype, self.shape)


def map_readonly(f: BinaryIO, name: str) -> mmap.mmap:
    """Map an open file read-only; an unmappable one (empty, a pipe) is closed and refused."""
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError) as e:
        f.close()
        raise FormatError(f"{name}: cannot map the file ({e}); is it empty?") from None


@contextlib.contextmanager
def closing_on_error(mm: mmap.mmap, f: BinaryIO) -> Iterator[None]:
    """Close a file and its map when parsing it fails, not at some later collection.

    Views made before the error may still hold the map; then it closes when they go.
    """
    try:
        yield
    except BaseException:
        with contextlib.suppress(BufferError):
            mm.close()
        f.close()
        raise
