"""The RWKV-v5 forward pass in plain numba: the executable spec.

Read this file next to ``RWKV5_SPEC.md`` section 3; names follow the
checkpoint (``time_mix_k``, ``time_decay``, ``time_faaaa``) and the letters of
the math:

    r, k, v, g   receptance, key, value, gate projections of the token-shifted input
    w            per-channel decay exp(-exp(time_decay)), [H, N]
    u            per-channel bonus (time_faaaa, or exp(time_first) in v5.0), [H, N]
    S            wkv state [H, N(key i), N(value j)]

Everything is float32, computed in a fixed order with no fastmath, so results
are deterministic. A chunk of T tokens runs layer by layer (the same order the
C core uses); T = 1 is RNN mode. State layout: see rwkv_edge/state.py.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit


class Weights(NamedTuple):
    """All weights as float32, per-layer tensors stacked on a leading L axis."""

    ln1_w: np.ndarray  # [L, C]
    ln1_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    att_mix_k: np.ndarray  # [L, C]
    att_mix_v: np.ndarray
    att_mix_r: np.ndarray
    att_mix_g: np.ndarray  # zeros when the model has no gate (v5.0)
    att_w: np.ndarray  # [L, H, N] decay in (0, 1)
    att_u: np.ndarray  # [L, H, N] bonus
    att_r: np.ndarray  # [L, C, C]  (out, in)
    att_k: np.ndarray
    att_v: np.ndarray
    att_g: np.ndarray  # [L, C, C], or [L, 0, 0] without a gate
    att_o: np.ndarray
    lnx_w: np.ndarray  # [L, C]
    lnx_b: np.ndarray
    ffn_mix_k: np.ndarray  # [L, C]
    ffn_mix_r: np.ndarray
    ffn_k: np.ndarray  # [L, F, C]
    ffn_r: np.ndarray  # [L, C, C]
    ffn_v: np.ndarray  # [L, C, F]
    ln_out_w: np.ndarray  # [C]
    ln_out_b: np.ndarray
    head: np.ndarray  # [V, C]


@njit(cache=True)
def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm of each row of x [T, C] (biased variance)."""
    T, C = x.shape
    y = np.empty_like(x)
    for t in range(T):
        mean = np.float32(0.0)
        for c in range(C):
            mean += x[t, c]
        mean /= C
        var = np.float32(0.0)
        for c in range(C):
            d = x[t, c] - mean
            var += d * d
        var /= C
        inv = np.float32(1.0) / np.float32(math.sqrt(var + eps))
        for c in range(C):
            y[t, c] = (x[t, c] - mean) * inv * w[c] + b[c]
    return y


@njit(cache=True)
def matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """y[t, o] = sum_i W[o, i] * x[t, i]; 8 partial sums keep it fast yet fixed-order."""
    T, n_in = x.shape
    n_out = W.shape[0]
    y = np.empty((T, n_out), dtype=np.float32)
    n8 = n_in - n_in % 8
    for t in range(T):
        for o in range(n_out):
            acc = np.zeros(8, dtype=np.float32)
            for i in range(0, n8, 8):
                for j in range(8):
                    acc[j] += W[o, i + j] * x[t, i + j]
            s = np.float32(0.0)
            for j in range(8):
                s += acc[j]
            for i in range(n8, n_in):
                s += W[o, i] * x[t, i]
            y[t, o] = s
    return y


@njit(cache=True)
def token_shift(xx: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """sx[t] = xx[t-1], with the state's last row before the chunk."""
    sx = np.empty_like(xx)
    sx[0] = prev
    sx[1:] = xx[:-1]
    return sx


@njit(cache=True)
def mix(xx: np.ndarray, sx: np.ndarray, m: np.ndarray) -> np.ndarray:
    """xx * m + sx * (1 - m): interpolate the token with the previous one."""
    return xx * m + sx * (np.float32(1.0) - m)


@njit(cache=True)
def wkv5(
    r: np.ndarray, k: np.ndarray, v: np.ndarray, w: np.ndarray, u: np.ndarray, S: np.ndarray
) -> np.ndarray:
    """The WKV recurrence over T tokens; S [H, N, N] is updated in place.

    out[t,h,j] = sum_i r[t,h,i] * (u[h,i] * k[t,h,i] * v[t,h,j] + S[h,i,j])
    S[h,i,j]   = k[t,h,i] * v[t,h,j] + w[h,i] * S[h,i,j]
    """
    T = r.shape[0]
    H, N = w.shape
    out = np.zeros_like(r)
    for t in range(T):
        for h in range(H):
            for i in range(N):
                c = h * N + i
                rr, kk, ww, uu = r[t, c], k[t, c], w[h, i], u[h, i]
                for j in range(N):
                    a = kk * v[t, h * N + j]
                    out[t, h * N + j] += rr * (uu * a + S[h, i, j])
                    S[h, i, j] = a + ww * S[h, i, j]
    return out


@njit(cache=True)
def group_norm(x: np.ndarray, H: int, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """GroupNorm of each row of x [T, H*N] over H groups, then the per-channel affine."""
    T, C = x.shape
    N = C // H
    y = np.empty_like(x)
    for t in range(T):
        for h in range(H):
            mean = np.float32(0.0)
            for j in range(N):
                mean += x[t, h * N + j]
            mean /= N
            var = np.float32(0.0)
            for j in range(N):
                d = x[t, h * N + j] - mean
                var += d * d
            var /= N
            inv = np.float32(1.0) / np.float32(math.sqrt(var + eps))
            for j in range(N):
                c = h * N + j
                y[t, c] = (x[t, c] - mean) * inv * w[c] + b[c]
    return y


@njit(cache=True)
def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(cache=True)
def time_mixing(
    x: np.ndarray,
    li: int,
    wt: Weights,
    att_x: np.ndarray,
    S: np.ndarray,
    has_gate: bool,
    ln_eps: float,
    gn_eps: float,
) -> np.ndarray:
    """Attention block of layer li over a chunk; returns the residual update."""
    xx = layer_norm(x, wt.ln1_w[li], wt.ln1_b[li], ln_eps)
    sx = token_shift(xx, att_x)
    att_x[:] = xx[-1]
    r = matmul(mix(xx, sx, wt.att_mix_r[li]), wt.att_r[li])  # no activation on r in v5
    k = matmul(mix(xx, sx, wt.att_mix_k[li]), wt.att_k[li])
    v = matmul(mix(xx, sx, wt.att_mix_v[li]), wt.att_v[li])
    y = wkv5(r, k, v, wt.att_w[li], wt.att_u[li], S)
    y = group_norm(y, wt.att_w.shape[1], wt.lnx_w[li], wt.lnx_b[li], gn_eps)
    if has_gate:
        z = matmul(mix(xx, sx, wt.att_mix_g[li]), wt.att_g[li])
        y = y * (z * sigmoid(z))  # silu gate, applied after ln_x
    return matmul(y, wt.att_o[li])


@njit(cache=True)
def channel_mixing(
    x: np.ndarray, li: int, wt: Weights, ffn_x: np.ndarray, ln_eps: float
) -> np.ndarray:
    """FFN block of layer li over a chunk: sigmoid(r) * W_v relu(W_k x)^2."""
    xx = layer_norm(x, wt.ln2_w[li], wt.ln2_b[li], ln_eps)
    sx = token_shift(xx, ffn_x)
    ffn_x[:] = xx[-1]
    k = matmul(mix(xx, sx, wt.ffn_mix_k[li]), wt.ffn_k[li])
    k = np.maximum(k, np.float32(0.0))
    r = sigmoid(matmul(mix(xx, sx, wt.ffn_mix_r[li]), wt.ffn_r[li]))
    return r * matmul(k * k, wt.ffn_v[li])


@njit(cache=True)
def forward(
    x: np.ndarray,
    wt: Weights,
    state: np.ndarray,
    has_gate: bool,
    ln_eps: float,
    gn_eps: float,
    full_output: bool,
    want_logits: bool,
) -> np.ndarray:
    """Run embedded tokens x [T, C] through every layer, advancing state in place.

    Returns logits [T, V] (full_output), [1, V] (last position) or [0, V].
    """
    L = wt.ln1_w.shape[0]
    C = x.shape[1]
    H, N = wt.att_w.shape[1], wt.att_w.shape[2]
    per_layer = 2 * C + H * N * N
    for li in range(L):
        base = li * per_layer
        att_x = state[base : base + C]
        ffn_x = state[base + C : base + 2 * C]
        S = state[base + 2 * C : base + per_layer].reshape((H, N, N))
        x = x + time_mixing(x, li, wt, att_x, S, has_gate, ln_eps, gn_eps)
        x = x + channel_mixing(x, li, wt, ffn_x, ln_eps)
    return head_logits(x, wt.ln_out_w, wt.ln_out_b, wt.head, ln_eps, full_output, want_logits)


@njit(cache=True)
def head_logits(
    x: np.ndarray,
    ln_w: np.ndarray,
    ln_b: np.ndarray,
    head: np.ndarray,
    ln_eps: float,
    full_output: bool,
    want_logits: bool,
) -> np.ndarray:
    """LN_out and the head: logits [T, V] (full_output), [1, V] (last row) or [0, V]."""
    if not want_logits:
        return np.zeros((0, head.shape[0]), dtype=np.float32)
    if not full_output:
        x = x[-1:]
    return matmul(layer_norm(x, ln_w, ln_b, ln_eps), head)
