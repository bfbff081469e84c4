"""Block formats in numpy: Q8_0, Q4_0, Q4_1 (layouts in csrc/quant/blocks.h).

The formulas are ggml's reference ones (``quantize_row_*_ref`` in
ggml-quants.c), evaluated in float32 in the same order, so the bytes equal
ggml's. Every block holds ``QK`` = 32 consecutive elements of one row:

    q8_0: x = d * q,        q = roundf(x / d) in [-127, 127], d = amax / 127
    q4_0: x = d * (n - 8),  n = min(15, trunc(x / d + 8.5)),  d = max / -8
    q4_1: x = d * n + m,    n = min(15, trunc((x - m) / d + 0.5)), d = (max - m) / 15

``max`` in q4_0 is the signed value of largest magnitude, so it maps onto -8
exactly. ``d`` and ``m`` are stored as IEEE fp16; ``roundf`` rounds half away
from zero. A zero scale gets an inverse of 0 (the all-zero block).

Quantizers also take precomputed scales (``quantize_q4_0_with_scale``) so the
offline scale search writes blocks through the same packing code.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import FormatError, ShapeError

QK = 32
# bytes per block
BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20}
QUANT_TYPES = tuple(BLOCK_BYTES)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def row_bytes(fmt: str, n_cols: int) -> int:
    """Bytes one row of ``n_cols`` elements takes in block format ``fmt``."""
    return n_cols // QK * BLOCK_BYTES[fmt]


def _blocks(x: npt.ArrayLike, name: str) -> F32:
    """View ``x`` as (n_blocks, 32) float32, refusing what cannot be quantized."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 0 or a.shape[-1] % QK:
        raise ShapeError(f"{name}: last dimension {a.shape[-1:]} is not a multiple of {QK}")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a.reshape(-1)))
        raise FormatError(
            f"tensor '{name}' holds {bad.size} non-finite values (first at flat index {bad[0]}); "
            "NaN/inf cannot be quantized"
        )
    return a.reshape(-1, QK)


def _inverse(d: F32) -> F32:
    """1/d with 1/0 = 0, in float32 like ggml's ``d ? 1.0f/d : 0.0f``."""
    out = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=out, where=d != 0)
    return out


def _roundf(x: F32) -> F32:
    """C roundf: half away from zero (numpy's round is half to even)."""
    # floor(a + 0.5) would round 0.49999997 up; split off the fraction instead
    a = np.abs(x)
    whole = np.floor(a)
    return np.copysign(whole + np.floor((a - whole) * np.float32(2)), x)


_FP16_MAX = np.float32(65504.0)


def _check_scale(d: F32, name: str) -> None:
    """A scale fp16 cannot hold would store inf: refuse it rather than write a broken block."""
    if d.size and np.abs(d).max() > _FP16_MAX:
        raise FormatError(
            f"tensor '{name}': a block scale of {float(np.abs(d).max()):.4g} "
            "overflows fp16 (weights too large for this block format)"
        )


def _fp16_bytes(v: F32) -> U8:
    """(n, 1) float32 -> (n, 2) little-endian fp16 bytes."""
    return v.astype("<f2").view(np.uint8).reshape(-1, 2)


def _pack_nibbles(n: npt.NDArray[np.uint8]) -> U8:
    """(n, 32) values in [0, 15] -> (n, 16) bytes: low nibble element i, high i + 16."""
    return n[:, : QK // 2] | (n[:, QK // 2 :] << np.uint8(4))


def _unpack_nibbles(qs: U8) -> U8:
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


# ---------------------------------------------------------------------------
# Q8_0
# ---------------------------------------------------------------------------


def quantize_q8_0(x: npt.ArrayLike, name: str = "tensor") -> U8:
    """Quantize to Q8_0 blocks; returns uint8 of shape (..., row_bytes)."""
    b = _blocks(x, name)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    _check_scale(d, name)
    q = _roundf(b * _inverse(d)).astype(np.int8)
    out = np.concatenate([_fp16_bytes(d), q.view(np.uint8)], axis=1)
    return out.reshape(_byte_shape(np.shape(x), "q8_0"))


def _dequantize_q8_0(blk: U8) -> F32:
    d = blk[:, :2].copy().view("<f2").astype(np.float32)
    return blk[:, 2:].view(np.int8).astype(np.float32) * d


# ---------------------------------------------------------------------------
# Q4_0
# ---------------------------------------------------------------------------


def q4_0_scales(b: F32) -> F32:
    """ggml's round-to-nearest scale per block: the signed max magnitude / -8."""
    idx = np.abs(b).argmax(axis=1)[:, None]  # first of equal magnitudes, as ggml's loop
    return np.take_along_axis(b, idx, axis=1) / np.float32(-8)


def q4_0_codes(b: F32, d: F32) -> npt.NDArray[np.uint8]:
    """Nibbles for blocks ``b`` under float32 scales ``d`` (n, 1), ggml's rounding."""
    # x/d + 8.5 >= 0 for ggml's own d, so trunc = floor; clip guards searched scales
    n = np.trunc(b * _inverse(d) + np.float32(8.5))
    return np.clip(n, 0, 15).astype(np.uint8)


def quantize_q4_0_with_scale(b: F32, d: F32) -> U8:
    """Q4_0 blocks (n, 18) from blocks (n, 32) and chosen float32 scales (n, 1)."""
    return np.concatenate([_fp16_bytes(d), _pack_nibbles(q4_0_codes(b, d))], axis=1)


def quantize_q4_0(x: npt.ArrayLike, name: str = "tensor") -> U8:
    """Round-to-nearest Q4_0, byte-identical to ggml's reference quantizer."""
    b = _blocks(x, name)
    d = q4_0_scales(b)
    _check_scale(d, name)
    out = quantize_q4_0_with_scale(b, d)
    return out.reshape(_byte_shape(np.shape(x), "q4_0"))


def _dequantize_q4_0(blk: U8) -> F32:
    d = blk[:, :2].copy().view("<f2").astype(np.float32)
    n = _unpack_nibbles(blk[:, 2:]).astype(np.int8) - np.int8(8)
    return n.astype(np.float32) * d


# ---------------------------------------------------------------------------
# Q4_1
# ---------------------------------------------------------------------------


def q4_1_codes(b: F32, d: F32, m: F32) -> npt.NDArray[np.uint8]:
    n = np.trunc((b - m) * _inverse(d) + np.float32(0.5))
    return np.clip(n, 0, 15).astype(np.uint8)


def quantize_q4_1_with_scale(b: F32, d: F32, m: F32) -> U8:
    """Q4_1 blocks (n, 20) from blocks (n, 32), scales and minimums (n, 1)."""
    codes = _pack_nibbles(q4_1_codes(b, d, m))
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(m), codes], axis=1)


def quantize_q4_1(x: npt.ArrayLike, name: str = "tensor") -> U8:
    """Min/max Q4_1, byte-identical to ggml's reference quantizer."""
    b = _blocks(x, name)
    lo = b.min(axis=1, keepdims=True)
    d = (b.max(axis=1, keepdims=True) - lo) / np.float32(15)
    _check_scale(d, name)
    _check_scale(lo, name)
    out = quantize_q4_1_with_scale(b, d, lo)
    return out.reshape(_byte_shape(np.shape(x), "q4_1"))


def _dequantize_q4_1(blk: U8) -> F32:
    d = blk[:, :2].copy().view("<f2").astype(np.float32)
    m = blk[:, 2:4].copy().view("<f2").astype(np.float32)
    return _unpack_nibbles(blk[:, 4:]).astype(np.float32) * d + m


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------

_QUANTIZE = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0, "q4_1": quantize_q4_1}
_DEQUANTIZE = {"q8_0": _dequantize_q8_0, "q4_0": _dequantize_q4_0, "q4_1": _dequantize_q4_1}


def _byte_shape(shape: tuple[int, ...], fmt: str) -> tuple[int, ...]:
    if not shape:
        raise ShapeError("cannot quantize a scalar")
    return (*shape[:-1], row_bytes(fmt, shape[-1]))


def quantize(x: npt.ArrayLike, fmt: str, name: str = "tensor") -> U8:
    """Round-to-nearest blocks of ``x`` (any shape whose last dim is a multiple of 32)."""
    if fmt not in _QUANTIZE:
        raise ShapeError(f"unknown block format {fmt!r} (known: {', '.join(QUANT_TYPES)})")
    return _QUANTIZE[fmt](x, name)


def dequantize(raw: npt.ArrayLike, fmt: str, shape: tuple[int, ...]) -> F32:
    """float32 values of ``shape`` from the uint8 blocks ``raw``."""
    if fmt not in _DEQUANTIZE:
        raise FormatError(f"unknown block format {fmt!r} (known: {', '.join(QUANT_TYPES)})")
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    n = int(np.prod(shape)) if shape else 1
    if n % QK or data.size != n // QK * BLOCK_BYTES[fmt]:
        raise FormatError(
            f"{fmt} data of {data.size} bytes does not hold a tensor of shape {shape}"
        )
    blk = data.reshape(-1, BLOCK_BYTES[fmt])
    return _DEQUANTIZE[fmt](blk).reshape(shape)
