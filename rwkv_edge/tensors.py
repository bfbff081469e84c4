"""A lazily read tensor: raw storage (usually a view into a memory map) plus its dtype.

numpy has no bfloat16, so bf16 data stays as ``uint16`` and is widened on
demand; ``to_f32()`` is the only place that converts.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from .errors import FormatError, IoError

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


MAX_RANK = 8  # no tensor of an RWKV model has more than 3 dimensions
MAX_DIM = 1 << 48  # far beyond any real dimension; keeps every product of dims small


def quote(text: str, limit: int = 80) -> str:
    """A str from a file, safe to put in a message: repr of at most ``limit`` characters."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def checked_dims(value: object, what: str) -> tuple[int, ...]:
    """A shape (or stride, offsets) read from a file: a list/tuple of at most MAX_RANK
    plain ints in [0, MAX_DIM). Checked before anything is computed from it, so a hostile
    value (a float, a huge int, a self-referencing list) never reaches int() or math.prod.
    """
    if type(value) not in (tuple, list):
        raise FormatError(f"{what} is a {type(value).__name__}, not a list of ints")
    items: list[object] = list(value[: MAX_RANK + 1])  # type: ignore[index]
    if len(items) > MAX_RANK:
        raise FormatError(f"{what} has more than {MAX_RANK} dimensions")
    for d in items:
        # type() is int, not isinstance: bool is an int, and 1.5 must not become 1
        if type(d) is not int:
            raise FormatError(f"{what} holds a {type(d).__name__}, not an int")
        if not 0 <= d < MAX_DIM:
            shown = d if abs(d) < 1 << 64 else "a huge int"
            raise FormatError(f"{what} holds {shown}, outside the possible sizes [0, 2**48)")
    return tuple(items)  # type: ignore[arg-type]


def open_regular(path: str | os.PathLike[str], name: str | None = None) -> BinaryIO:
    """Open a regular file for reading; refuse FIFOs, devices, sockets and directories.

    The file is opened non-blocking (opening a FIFO would otherwise wait for a
    writer forever) and checked with fstat on the open descriptor, so it cannot be
    swapped between the check and the read.
    """
    p = Path(path)
    name = name or p.name
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise FormatError(f"{name}: is a directory, not a file") from None
    except OSError as e:
        raise IoError(f"cannot open {p}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, device or socket"
            raise FormatError(f"{name}: is {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
