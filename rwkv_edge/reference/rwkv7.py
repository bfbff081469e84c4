"""The RWKV-7 (x070) forward pass in plain numba: the executable spec.

Read this file next to ``docs/RWKV7_SPEC.md``; names follow the checkpoint
(``x_r``, ``w0/w1/w2``, ``k_k``...) and the letters of the math:

    r, k, v      receptance, key, value projections of the token-shifted input
    w            per-channel decay exp(-0.606531 * sigmoid(w0 + tanh(xw W1) W2)), in (0, 1)
    a            in-context learning rate sigmoid(a0 + xa A1 A2)
    g            output gate sigmoid(xg G1) G2
    kk           per-head L2-normalised k * k_k (the "removal" key)
    S            wkv state [H, N(value i), N(key j)], the reference's own layout

Everything is float32, computed in a fixed order with no fastmath, so results
are deterministic. A chunk of T tokens runs layer by layer; T = 1 is RNN mode.
The generic pieces (LayerNorm, matmul, GroupNorm, sigmoid, token shift) are
rwkv5's. Low-rank matrices are stored transposed here ([out, in], like every
other matrix), so that one matmul serves all of them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .rwkv5 import group_norm, head_logits, layer_norm, matmul, sigmoid, token_shift

# The reference's constant (it comments it as exp(-0.5), which is 0.60653066).
DECAY_SCALE = np.float32(0.606531)
L2_EPS = np.float32(1e-12)  # torch.nn.functional.normalize's default eps


class Weights7(NamedTuple):
    """All weights as float32, per-layer tensors stacked on a leading L axis."""

    ln1_w: np.ndarray  # [L, C]
    ln1_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    x_r: np.ndarray  # [L, C] token-shift mixes
    x_w: np.ndarray
    x_k: np.ndarray
    x_v: np.ndarray
    x_a: np.ndarray
    x_g: np.ndarray
    w0: np.ndarray  # [L, C]
    w1: np.ndarray  # [L, Dw, C]  (checkpoint w1 [C, Dw], transposed)
    w2: np.ndarray  # [L, C, Dw]
    a0: np.ndarray  # [L, C]
    a1: np.ndarray  # [L, Da, C]
    a2: np.ndarray  # [L, C, Da]
    v0: np.ndarray  # [L, C]; layer 0's row is never read
    v1: np.ndarray  # [L, Dv, C]
    v2: np.ndarray  # [L, C, Dv]
    g1: np.ndarray  # [L, Dg, C]
    g2: np.ndarray  # [L, C, Dg]
    k_k: np.ndarray  # [L, C]
    k_a: np.ndarray  # [L, C]
    r_k: np.ndarray  # [L, C]  (checkpoint [H, N], flattened)
    att_r: np.ndarray  # [L, C, C]  (out, in)
    att_k: np.ndarray
    att_v: np.ndarray
    att_o: np.ndarray
    lnx_w: np.ndarray  # [L, C]
    lnx_b: np.ndarray
    ffn_x_k: np.ndarray  # [L, C]
    ffn_k: np.ndarray  # [L, F, C]
    ffn_v: np.ndarray  # [L, C, F]
    ln_out_w: np.ndarray  # [C]
    ln_out_b: np.ndarray
    head: np.ndarray  # [V, C]


@njit(cache=True)
def mix7(xx: np.ndarray, d: np.ndarray, m: np.ndarray) -> np.ndarray:
    """xx + (prev - xx) * m, the reference's form (d = prev - xx)."""
    return xx + d * m


@njit(cache=True)
def lora(x: np.ndarray, down: np.ndarray, up: np.ndarray, squash_tanh: bool) -> np.ndarray:
    """(x @ X1) @ X2, with tanh between the two when squash_tanh (the decay's LoRA)."""
    h = matmul(x, down)
    if squash_tanh:
        h = np.tanh(h)
    return matmul(h, up)


@njit(cache=True)
def l2_normalize_heads(x: np.ndarray, H: int) -> np.ndarray:
    """x / max(||x_h||, 1e-12) for each head h of each row of x [T, H*N]."""
    T, C = x.shape
    N = C // H
    y = np.empty_like(x)
    for t in range(T):
        for h in range(H):
            ss = np.float32(0.0)
            for j in range(N):
                ss += x[t, h * N + j] * x[t, h * N + j]
            norm = max(np.float32(math.sqrt(ss)), L2_EPS)
            for j in range(N):
                y[t, h * N + j] = x[t, h * N + j] / norm
    return y


@njit(cache=True)
def wkv7(
    r: np.ndarray,
    w: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    kk: np.ndarray,
    a: np.ndarray,
    S: np.ndarray,
) -> np.ndarray:
    """The WKV7 recurrence over T tokens; S [H, N, N] is updated in place.

    Per token and head, with the OLD S on the right-hand side:
      sa[i]    = sum_j S[i,j] * (-kk[j])
      S[i,j]   = S[i,j] * w[j] + sa[i] * (kk[j] * a[j]) + v[i] * k[j]
      out[i]   = sum_j S[i,j] * r[j]          (the UPDATED S)
    """
    T = r.shape[0]
    H, N = S.shape[0], S.shape[1]
    out = np.zeros_like(r)
    for t in range(T):
        for h in range(H):
            b = h * N
            for i in range(N):
                sa = np.float32(0.0)
                for j in range(N):
                    sa += S[h, i, j] * -kk[t, b + j]
                vi = v[t, b + i]
                y = np.float32(0.0)
                for j in range(N):
                    s = (
                        S[h, i, j] * w[t, b + j]
                        + sa * (kk[t, b + j] * a[t, b + j])
                        + vi * k[t, b + j]
                    )
                    S[h, i, j] = s
                    y += s * r[t, b + j]
                out[t, b + i] = y
    return out


@njit(cache=True)
def bonus(r: np.ndarray, k: np.ndarray, v: np.ndarray, r_k: np.ndarray, H: int) -> np.ndarray:
    """Per head: sum_j(r * k * r_k) * v, the current token's direct term."""
    T, C = r.shape
    N = C // H
    out = np.empty_like(r)
    for t in range(T):
        for h in range(H):
            s = np.float32(0.0)
            for j in range(N):
                c = h * N + j
                s += r[t, c] * k[t, c] * r_k[c]
            for j in range(N):
                out[t, h * N + j] = s * v[t, h * N + j]
    return out


@njit(cache=True)
def time_mixing7(
    x: np.ndarray,
    li: int,
    wt: Weights7,
    att_x: np.ndarray,
    S: np.ndarray,
    v_first: np.ndarray,
    ln_eps: float,
    gn_eps: float,
) -> np.ndarray:
    """Attention block of layer li over a chunk; returns the residual update.

    Layer 0 fills v_first [T, C]; later layers mix their v towards it.
    """
    H = S.shape[0]
    xx = layer_norm(x, wt.ln1_w[li], wt.ln1_b[li], ln_eps)
    d = token_shift(xx, att_x) - xx
    att_x[:] = xx[-1]
    xv = mix7(xx, d, wt.x_v[li])
    r = matmul(mix7(xx, d, wt.x_r[li]), wt.att_r[li])
    w = lora(mix7(xx, d, wt.x_w[li]), wt.w1[li], wt.w2[li], True)
    k = matmul(mix7(xx, d, wt.x_k[li]), wt.att_k[li])
    v = matmul(xv, wt.att_v[li])
    a = sigmoid(wt.a0[li] + lora(mix7(xx, d, wt.x_a[li]), wt.a1[li], wt.a2[li], False))
    g = matmul(sigmoid(matmul(mix7(xx, d, wt.x_g[li]), wt.g1[li])), wt.g2[li])
    kk = l2_normalize_heads(k * wt.k_k[li], H)
    k = k * (np.float32(1.0) + (a - np.float32(1.0)) * wt.k_a[li])
    if li == 0:
        v_first[:] = v
    else:
        v = v + (v_first - v) * sigmoid(wt.v0[li] + lora(xv, wt.v1[li], wt.v2[li], False))
    w = np.exp(-DECAY_SCALE * sigmoid(wt.w0[li] + w))
    y = wkv7(r, w, k, v, kk, a, S)
    y = group_norm(y, H, wt.lnx_w[li], wt.lnx_b[li], gn_eps)
    y = y + bonus(r, k, v, wt.r_k[li], H)
    return matmul(y * g, wt.att_o[li])


@njit(cache=True)
def channel_mixing7(
    x: np.ndarray, li: int, wt: Weights7, ffn_x: np.ndarray, ln_eps: float
) -> np.ndarray:
    """FFN block of layer li over a chunk: W_v relu(W_k xk)^2 (no receptance in v7)."""
    xx = layer_norm(x, wt.ln2_w[li], wt.ln2_b[li], ln_eps)
    d = token_shift(xx, ffn_x) - xx
    ffn_x[:] = xx[-1]
    k = matmul(mix7(xx, d, wt.ffn_x_k[li]), wt.ffn_k[li])
    k = np.maximum(k, np.float32(0.0))
    return matmul(k * k, wt.ffn_v[li])


@njit(cache=True)
def forward7(
    x: np.ndarray,
    wt: Weights7,
    state: np.ndarray,
    n_head: int,
    ln_eps: float,
    gn_eps: float,
    full_output: bool,
    want_logits: bool,
) -> np.ndarray:
    """Run embedded tokens x [T, C] through every layer, advancing state in place.

    State per layer (rwkv_edge/state.py): att_x [C], ffn_x [C], S [H, N, N].
    Returns logits [T, V] (full_output), [1, V] (last position) or [0, V].
    """
    L = wt.ln1_w.shape[0]
    T, C = x.shape
    N = C // n_head
    per_layer = 2 * C + n_head * N * N
    v_first = np.zeros((T, C), dtype=np.float32)
    for li in range(L):
        base = li * per_layer
        att_x = state[base : base + C]
        ffn_x = state[base + C : base + 2 * C]
        S = state[base + 2 * C : base + per_layer].reshape((n_head, N, N))
        x = x + time_mixing7(x, li, wt, att_x, S, v_first, ln_eps, gn_eps)
        x = x + channel_mixing7(x, li, wt, ffn_x, ln_eps)
    return head_logits(x, wt.ln_out_w, wt.ln_out_b, wt.head, ln_eps, full_output, want_logits)
