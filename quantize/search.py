"""4-bit scale search: per block, the fp16 scale that minimises weighted squared error.

ggml's round-to-nearest Q4_0 maps the largest magnitude onto -8 exactly. That
wastes a level whenever the block's extreme is positive (+7 is never used on
its side) and lets one outlier stretch the step for the other 31 values.
Here each block tries a grid of scales around that one, on both signs, and
for each also the least-squares scale of the codes it produced
(``d = sum w x q / sum w q^2``); every candidate is rounded to fp16 and
scored with the codes the packer will really emit. The best is kept, so the
result is never worse than round-to-nearest under the same weights.

Errors are weighted per element by its magnitude term (see
``_block_weights``) times, when calibration ran, ``importance``: one weight
per column (per input channel), broadcast over rows.

``_search_numpy`` is the reference, in numpy; ``search_q4_0`` (what the
converter runs) is the same search compiled with numba, byte for byte equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from rwkv_edge.errors import ShapeError
from rwkv_edge.quant import BLOCK_BYTES, QK, q4_0_scales, quantize_q4_0_with_scale

F32 = npt.NDArray[np.float32]

# Divisors of the signed block maximum: 8 is round-to-nearest (max -> -8),
# negative ones map the max onto +7 side instead.
_Q4_0_DIVISORS = np.concatenate([-np.linspace(6.5, 10.5, 17), np.linspace(5.5, 8.5, 13)])


def _fp16(d: F32) -> F32:
    """Round to the fp16 the block will store (and back, for scoring)."""
    return d.astype(np.float16).astype(np.float32)


def _floored_importance(importance: F32, cols: int) -> F32:
    """Column importances (1, cols), floored at a small fraction of their mean."""
    imp = np.asarray(importance, np.float32).reshape(1, cols)
    # floor at a small fraction of the mean so no column is ignored entirely
    return np.maximum(imp, np.float32(1e-3) * imp.mean() + np.float32(1e-12))


def _block_weights(b: F32, importance: F32 | None, rows: int, cols: int) -> F32:
    """Error weight of every element: its magnitude term times its column's importance.

    ``sqrt(mean(x^2) + x^2)`` (llama.cpp's weighting) makes large weights
    cost more to move; plain MSE let the search clip outliers, which measured
    worse than round-to-nearest on the fixtures.
    """
    w = np.sqrt((b * b).mean(axis=1, keepdims=True) + b * b)
    if importance is None:
        return w
    imp = _floored_importance(importance, cols)
    return w * np.broadcast_to(imp, (rows, cols)).reshape(-1, QK)


def _signed_codes(b: F32, d16: F32) -> F32:
    """q4_0_codes(b, d16) - 8 as float32: the same arithmetic, without the uint8 round trip."""
    inv = np.zeros_like(d16)
    np.divide(np.float32(1.0), d16, out=inv, where=d16 != 0)
    q = np.trunc(b * inv + np.float32(8.5))
    np.clip(q, 0, 15, out=q)
    q -= np.float32(8)
    return q


def _q4_0_error(b: F32, w: F32, d: F32) -> tuple[F32, F32]:
    """(weighted error per block, fp16-rounded scale) for candidate scales d (n, 1)."""
    d16 = _fp16(d)
    r = b - d16 * _signed_codes(b, d16)
    return (w * r * r).sum(axis=1, keepdims=True), d16


def _refit(b: F32, w: F32, d: F32) -> F32:
    """Weighted least-squares scale for the codes ``d`` gives."""
    q = _signed_codes(b, _fp16(d))
    num = (w * b * q).sum(axis=1, keepdims=True)
    den = (w * q * q).sum(axis=1, keepdims=True)
    out = d.copy()
    np.divide(num, den, out=out, where=den > 0)
    return out


def _search_numpy(x: F32, importance: F32 | None = None) -> npt.NDArray[np.uint8]:
    """The search in numpy, the reference (~1M weights/s); ``search_q4_0`` equals it."""
    rows, cols = x.shape
    b = np.ascontiguousarray(x, np.float32).reshape(-1, QK)
    w = _block_weights(b, importance, rows, cols)
    rtn = q4_0_scales(b)
    best_err, best_d = _q4_0_error(b, w, rtn)
    signed_max = rtn * np.float32(-8)
    for div in _Q4_0_DIVISORS:
        cand = (signed_max / np.float32(-div)).astype(np.float32)
        for d in (cand, _refit(b, w, cand)):
            err, d16 = _q4_0_error(b, w, d)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_d = np.where(better, d16, best_d)
    return quantize_q4_0_with_scale(b, best_d).reshape(rows, -1)


# ---------------------------------------------------------------------------
# The same search compiled with numba (~10x the numpy speed on one core, and
# parallel over blocks).
#
# Every value is computed with the float32 operations of the numpy version, in
# the same order, so every comparison and so every byte agree with it
# (tests/test_quantizer.py checks them against ``_search_numpy``):
# - a sum over a block's 32 elements is numpy's pairwise sum (8 lanes, each
#   lane summed in order, then ((0+1)+(2+3))+((4+5)+(6+7))) added to 0.0;
# - fp16 rounding (numba has no float16 casts on the CPU) is done on the bits:
#   ``_half_bits`` is numpy's own algorithm (npy_floatbits_to_halfbits) for
#   the stored scale, ``_round_scales`` a branch-free equivalent for scoring;
#   both agree with numpy on every float32 bit pattern;
# - a later candidate replaces the best only when strictly better, as there.
# ---------------------------------------------------------------------------

_NEG_DIVISORS = np.array([np.float32(-div) for div in _Q4_0_DIVISORS], np.float32)
_LANES = 16  # blocks searched side by side
_GROUPS = 32  # groups of _LANES blocks a parallel iteration takes


def _f32_bits_typing(typingctx: Any, x: Any) -> Any:
    """The IEEE bits of a float32, as uint32."""
    if x != types.float32:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


def _bits_f32_typing(typingctx: Any, u: Any) -> Any:
    """The float32 whose IEEE bits are the uint32 ``u``."""
    if u != types.uint32:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


# numba calls the typing functions above while compiling; jitted code calls the
# intrinsics with the value alone, which is the type they have here.
_f32_bits = cast(Callable[[np.float32], np.uint32], intrinsic(_f32_bits_typing))
_bits_f32 = cast(Callable[[np.uint32], np.float32], intrinsic(_bits_f32_typing))


@njit(cache=True)
def _half_bits(x: np.float32) -> int:
    """fp16 bits of a float32, as numpy's astype(float16) rounds (npy_floatbits_to_halfbits)."""
    f = np.int64(_f32_bits(x))
    h_sgn = (f >> 16) & 0x8000
    f_exp = f & 0x7F800000
    if f_exp >= 0x47800000:  # overflow to inf; inf; NaN keeping its top payload bits
        f_sig = f & 0x7FFFFF
        if f_exp == 0x7F800000 and f_sig != 0:
            ret = 0x7C00 + (f_sig >> 13)
            return h_sgn + (ret + 1 if ret == 0x7C00 else ret)
        return h_sgn + 0x7C00
    if f_exp <= 0x38000000:  # fp16 subnormal or zero
        if f_exp < 0x33000000:
            return h_sgn
        f_sig = (0x800000 + (f & 0x7FFFFF)) >> (113 - (f_exp >> 23))
        # round half to even; the shift may have dropped up to 11 low bits of f
        if (f_sig & 0x3FFF) != 0x1000 or (f & 0x7FF) != 0:
            f_sig += 0x1000
        return h_sgn + (f_sig >> 13)
    f_sig = f & 0x7FFFFF
    if (f_sig & 0x3FFF) != 0x1000:
        f_sig += 0x1000
    # a carry out of the significand bumps the exponent (to inf at the top): still right
    return h_sgn + (f_sig >> 13) + ((f_exp - 0x38000000) >> 13)


@njit(cache=True)
def _half_bits_array(x: F32) -> npt.NDArray[np.uint16]:
    """``_half_bits`` of every element of a 1-D float32 array (for the tests)."""
    out = np.empty(x.shape[0], np.uint16)
    for i in range(x.shape[0]):
        out[i] = _half_bits(x[i])
    return out


@njit(cache=True)
def _half_value(h: int) -> np.float32:
    """The float32 value of fp16 bits ``h`` (exact)."""
    sgn = (h & 0x8000) << 16
    exp = h & 0x7C00
    if exp == 0:  # zero or subnormal: m * 2^-24 is exact in float32
        mag = np.float32(h & 0x3FF) * np.float32(2.0**-24)
        return _bits_f32(np.uint32(np.int64(_f32_bits(mag)) | sgn))
    if exp == 0x7C00:
        return _bits_f32(np.uint32(sgn | 0x7F800000 | ((h & 0x3FF) << 13)))
    return _bits_f32(np.uint32(sgn | (((h & 0x7FFF) + 0x1C000) << 13)))


@njit(cache=True)
def _fp16_scalar(x: np.float32) -> np.float32:
    """``_fp16`` of one float32."""
    return _half_value(_half_bits(x))


@njit(cache=True, error_model="numpy")
def _code(x: np.float32, inv: np.float32) -> np.float32:
    """trunc(x * inv + 8.5) clipped to [0, 15], as float32 (clip then trunc: the same)."""
    v = x * inv + np.float32(8.5)
    v = min(max(v, np.float32(0.0)), np.float32(15.0))
    return np.float32(np.int32(v))


@njit(cache=True)
def _lane_sums(e: F32, out: F32) -> None:
    """out[l] = numpy's float32 sum of e[:, l] (32 values): 8 pairwise lanes, added to 0.0."""
    for lane in range(e.shape[1]):
        r0 = e[0, lane] + e[8, lane] + e[16, lane] + e[24, lane]
        r1 = e[1, lane] + e[9, lane] + e[17, lane] + e[25, lane]
        r2 = e[2, lane] + e[10, lane] + e[18, lane] + e[26, lane]
        r3 = e[3, lane] + e[11, lane] + e[19, lane] + e[27, lane]
        r4 = e[4, lane] + e[12, lane] + e[20, lane] + e[28, lane]
        r5 = e[5, lane] + e[13, lane] + e[21, lane] + e[29, lane]
        r6 = e[6, lane] + e[14, lane] + e[22, lane] + e[30, lane]
        r7 = e[7, lane] + e[15, lane] + e[23, lane] + e[31, lane]
        out[lane] = np.float32(0.0) + (((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)))


@njit(cache=True, error_model="numpy")
def _round_scales(d: F32, d16: F32, inv: F32) -> None:
    """d16 = _fp16(d) and inv = 1 / d16 (0 for 0), per lane, without branches (SIMD).

    The value numpy's float16 round trip gives (round half to even): mantissa
    rounding on the bits in the normal range, the 2^-24 grid (by adding and
    taking away 2^23) below it, inf from 65520 up; a NaN stays a NaN.
    """
    for lane in range(d.shape[0]):
        x = d[lane]
        u = np.int64(_f32_bits(x))
        a = u & 0x7FFFFFFF
        normal = (a + 0xFFF + ((a >> 13) & 1)) & 0x7FFFE000
        y = abs(x) * np.float32(2.0**24)
        sub = ((y + np.float32(2.0**23)) - np.float32(2.0**23)) * np.float32(2.0**-24)
        r = normal if a >= 0x38800000 else np.int64(_f32_bits(sub))
        r = 0x7F800000 if a >= 0x477FF000 else r
        r = a if a > 0x7F800000 else r
        v = _bits_f32(np.uint32(r | (u & 0x80000000)))
        d16[lane] = v
        t = np.float32(1.0) / v
        inv[lane] = t if v != 0 else np.float32(0.0)


@njit(cache=True, error_model="numpy")
def _tree(r: F32, out: F32) -> None:
    """out[l] = 0 + ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) of lane sums r (8, lanes)."""
    for lane in range(r.shape[1]):
        out[lane] = np.float32(0.0) + (
            ((r[0, lane] + r[1, lane]) + (r[2, lane] + r[3, lane]))
            + ((r[4, lane] + r[5, lane]) + (r[6, lane] + r[7, lane]))
        )


@njit(cache=True, error_model="numpy")
def _error(b: F32, w: F32, i: int, lane: int, d16: np.float32, inv: np.float32) -> np.float32:
    """w * r * r of element i, r = b - d16 * (code - 8)."""
    r = b[i, lane] - d16 * (_code(b[i, lane], inv) - np.float32(8.0))
    return w[i, lane] * r * r


@njit(cache=True, error_model="numpy")
def _errors(b: F32, w: F32, d16: F32, inv: F32, r: F32, err: F32) -> None:
    """err = weighted squared error per lane (block), summed in numpy's order (_lane_sums)."""
    for j in range(8):
        for lane in range(b.shape[1]):
            d, v = d16[lane], inv[lane]
            r[j, lane] = (
                _error(b, w, j, lane, d, v)
                + _error(b, w, j + 8, lane, d, v)
                + _error(b, w, j + 16, lane, d, v)
                + _error(b, w, j + 24, lane, d, v)
            )
    _tree(r, err)


@njit(cache=True, error_model="numpy")
def _terms(
    b: F32, w: F32, wb: F32, i: int, lane: int, d16: np.float32, inv: np.float32
) -> tuple[np.float32, np.float32, np.float32]:
    """(w r r, w b q, w q q) of element i: its error and its refit terms."""
    q = _code(b[i, lane], inv) - np.float32(8.0)
    r = b[i, lane] - d16 * q
    return w[i, lane] * r * r, wb[i, lane] * q, w[i, lane] * q * q


@njit(cache=True, error_model="numpy")
def _errors_and_fit(
    b: F32,
    w: F32,
    wb: F32,
    d16: F32,
    inv: F32,
    r: F32,
    r_num: F32,
    r_den: F32,
    err: F32,
    num: F32,
    den: F32,
) -> None:
    """``_errors`` plus the sums of the least-squares refit of the same codes."""
    for j in range(8):
        for lane in range(b.shape[1]):
            d, v = d16[lane], inv[lane]
            e0, n0, q0 = _terms(b, w, wb, j, lane, d, v)
            e1, n1, q1 = _terms(b, w, wb, j + 8, lane, d, v)
            e2, n2, q2 = _terms(b, w, wb, j + 16, lane, d, v)
            e3, n3, q3 = _terms(b, w, wb, j + 24, lane, d, v)
            r[j, lane] = e0 + e1 + e2 + e3
            r_num[j, lane] = n0 + n1 + n2 + n3
            r_den[j, lane] = q0 + q1 + q2 + q3
    _tree(r, err)
    _tree(r_num, num)
    _tree(r_den, den)


@njit(cache=True, error_model="numpy")
def _keep_better(err: F32, d16: F32, best_err: F32, best_d: F32) -> None:
    for lane in range(err.shape[0]):
        if err[lane] < best_err[lane]:  # strictly: the earlier candidate wins ties
            best_err[lane] = err[lane]
            best_d[lane] = d16[lane]


@njit(parallel=True, cache=True, error_model="numpy")
def _search_kernel(x: F32, imp: F32, neg_div: F32, out: npt.NDArray[np.uint8]) -> None:
    """Scale search of blocks x (n, 32) with column importances imp (cols,) into out (n, 18).

    Blocks go _LANES at a time, transposed to (32, lanes) so that every
    element operation runs across blocks in SIMD; each lane's arithmetic is
    still exactly its own block's.
    """
    n = x.shape[0]
    per_row = imp.shape[0] // QK
    n_groups = (n + _LANES - 1) // _LANES
    for c in prange((n_groups + _GROUPS - 1) // _GROUPS):
        b = np.zeros((QK, _LANES), np.float32)
        w = np.zeros((QK, _LANES), np.float32)
        wb = np.zeros((QK, _LANES), np.float32)
        e = np.zeros((QK, _LANES), np.float32)
        r = np.zeros((8, _LANES), np.float32)
        r_num = np.zeros((8, _LANES), np.float32)
        r_den = np.zeros((8, _LANES), np.float32)
        mean = np.zeros(_LANES, np.float32)
        d = np.zeros(_LANES, np.float32)
        cand = np.zeros(_LANES, np.float32)
        signed_max = np.zeros(_LANES, np.float32)
        d16 = np.zeros(_LANES, np.float32)
        inv = np.zeros(_LANES, np.float32)
        err = np.zeros(_LANES, np.float32)
        num = np.zeros(_LANES, np.float32)
        den = np.zeros(_LANES, np.float32)
        best_err = np.zeros(_LANES, np.float32)
        best_d = np.zeros(_LANES, np.float32)
        for g in range(c * _GROUPS, min(n_groups, (c + 1) * _GROUPS)):
            k0 = g * _LANES
            lanes = min(_LANES, n - k0)
            for lane in range(_LANES):  # spare lanes of the last group stay 0 (w = 0)
                if lane < lanes:
                    for i in range(QK):
                        b[i, lane] = x[k0 + lane, i]
                else:
                    for i in range(QK):
                        b[i, lane] = np.float32(0.0)
            for i in range(QK):
                for lane in range(_LANES):
                    e[i, lane] = b[i, lane] * b[i, lane]
            _lane_sums(e, mean)
            for lane in range(_LANES):
                mean[lane] = mean[lane] / np.float32(QK)
                col0 = ((k0 + lane) % per_row) * QK
                amax = np.float32(-1.0)
                idx = 0
                for i in range(QK):
                    w[i, lane] = np.sqrt(mean[lane] + e[i, lane]) * imp[col0 + i]
                    wb[i, lane] = w[i, lane] * b[i, lane]
                    a = abs(b[i, lane])
                    if a > amax:  # the first of equal magnitudes, as argmax
                        amax = a
                        idx = i
                d[lane] = b[idx, lane] / np.float32(-8.0)  # round-to-nearest's scale
                signed_max[lane] = d[lane] * np.float32(-8.0)
            _round_scales(d, best_d, inv)
            _errors(b, w, best_d, inv, r, best_err)
            for j in range(neg_div.shape[0]):
                for lane in range(_LANES):
                    cand[lane] = signed_max[lane] / neg_div[j]
                _round_scales(cand, d16, inv)
                _errors_and_fit(b, w, wb, d16, inv, r, r_num, r_den, err, num, den)
                _keep_better(err, d16, best_err, best_d)
                # the least-squares refit for these codes (_refit)
                for lane in range(_LANES):
                    d[lane] = num[lane] / den[lane] if den[lane] > 0 else cand[lane]
                _round_scales(d, d16, inv)
                _errors(b, w, d16, inv, r, err)
                _keep_better(err, d16, best_err, best_d)
            for lane in range(lanes):
                k = k0 + lane
                h = _half_bits(best_d[lane])
                out[k, 0] = h & 0xFF
                out[k, 1] = h >> 8
                inv_best = np.float32(1.0) / best_d[lane] if best_d[lane] != 0 else np.float32(0)
                for i in range(QK // 2):
                    lo = np.int32(_code(b[i, lane], inv_best))
                    hi = np.int32(_code(b[i + QK // 2, lane], inv_best))
                    out[k, 2 + i] = lo | (hi << 4)


def search_q4_0(x: F32, importance: F32 | None = None) -> npt.NDArray[np.uint8]:
    """Q4_0 blocks of a 2-D matrix (rows, cols) with searched scales; uint8 (rows, bytes).

    Byte for byte ``_search_numpy``; parallel over blocks on numba's threads.
    """
    rows, cols = x.shape
    if cols % QK:
        raise ShapeError(f"search_q4_0: {cols} columns is not a multiple of {QK}")
    b = np.ascontiguousarray(x, np.float32).reshape(-1, QK)
    if importance is None:
        imp = np.ones(cols, np.float32)  # w * 1 is w exactly: the unweighted case
    else:
        imp = np.ascontiguousarray(_floored_importance(importance, cols).reshape(-1))
    out = np.empty((b.shape[0], BLOCK_BYTES["q4_0"]), np.uint8)
    _search_kernel(b, imp, _NEG_DIVISORS, out)
    return out.reshape(rows, -1)


# q4_1 keeps ggml's min/max: a (scale, min) grid search measured no consistent
# perplexity gain over it on the fixtures (better on one, worse on the other).
SEARCHERS = {"q4_0": search_q4_0}
