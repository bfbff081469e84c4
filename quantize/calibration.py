"""Activation statistics for importance-weighted quantization.

Runs the float model over calibration tokens and records, for every matrix,
the mean squared value of each *input* channel: ``E[x_j^2]`` where the
matrix computes ``W @ x``. The squared error a weight change adds to an
output is ``sum_j dW_j^2 x_j^2`` on average, so these are the weights the
scale search minimises under (the diagonal of the Hessian ``E[x x^T]``).

The forward pass here is a plain float32 numpy transcription of
RWKV5_SPEC.md section 3, batched over time except for the wkv recurrence.
It serves calibration only (and returns logits so it can be checked
against the reference); the runtime engines live in ``rwkv_edge``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from rwkv_edge.config import ModelConfig
from rwkv_edge.errors import ArgumentError

F32 = npt.NDArray[np.float32]
Weights = Callable[[str], F32]  # name -> float32 values


def _ln(x: F32, w: F32, b: F32, eps: float) -> F32:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(eps)) * w + b).astype(np.float32)


def _shift(xx: F32) -> F32:
    """The previous token's values, zeros before the first (the initial state)."""
    return np.concatenate([np.zeros_like(xx[:1]), xx[:-1]])


def _mix(xx: F32, sx: F32, mix: F32) -> F32:
    return (xx * mix + sx * (1 - mix)).astype(np.float32)


class _Recorder:
    """Accumulates sum of x^2 per input channel for each matrix name."""

    def __init__(self) -> None:
        self.sums: dict[str, F32] = {}
        self.count = 0

    def matmul(self, name: str, x: F32, w: Weights) -> F32:
        sq = np.einsum("tc,tc->c", x, x, dtype=np.float64).astype(np.float32)
        self.sums[name] = self.sums.get(name, 0) + sq
        return (x @ w(name).T).astype(np.float32)

    def means(self) -> dict[str, F32]:
        return {n: (s / max(self.count, 1)).astype(np.float32) for n, s in self.sums.items()}


def _decay_bonus(w: Weights, p: str, cfg: ModelConfig) -> tuple[F32, F32]:
    """Per-channel decay w and bonus u, both (H, N): spec section 3 and its v5.0 note."""
    decay = np.exp(-np.exp(w(p + "time_decay").astype(np.float64))).astype(np.float32)
    if cfg.version == "5.2":
        u = w(p + "time_faaaa")
    else:  # per head; time_first is the log bonus, time_faaaa the raw one
        try:
            u = np.exp(w(p + "time_first"))
        except KeyError:
            u = w(p + "time_faaaa")
    shape = (cfg.n_head, -1)
    return (
        np.broadcast_to(decay.reshape(shape), (cfg.n_head, cfg.head_size)),
        np.broadcast_to(u.reshape(shape), (cfg.n_head, cfg.head_size)),
    )


def _wkv(r: F32, k: F32, v: F32, decay: F32, u: F32) -> F32:
    """The per-head recurrence over time; r, k, v are (T, H, N)."""
    h, n = decay.shape
    s = np.zeros((h, n, n), np.float32)
    out = np.empty_like(r)
    for t in range(r.shape[0]):
        a = k[t][:, :, None] * v[t][:, None, :]  # (H, N key, N value)
        out[t] = np.einsum("hi,hij->hj", r[t], u[:, :, None] * a + s)
        s = a + decay[:, :, None] * s
    return out


def _time_mix(x: F32, w: Weights, p: str, cfg: ModelConfig, rec: _Recorder) -> F32:
    xx = _ln(x, w(p + "ln1.weight"), w(p + "ln1.bias"), cfg.ln_eps)
    sx, a = _shift(xx), p + "att."
    mixed = {
        c: _mix(xx, sx, w(f"{a}time_mix_{c}").reshape(-1))
        for c in ("k", "v", "r") + (("g",) if cfg.has_gate else ())
    }
    r = rec.matmul(a + "receptance.weight", mixed["r"], w)
    k = rec.matmul(a + "key.weight", mixed["k"], w)
    v = rec.matmul(a + "value.weight", mixed["v"], w)
    heads = (x.shape[0], cfg.n_head, cfg.head_size)
    out = _wkv(r.reshape(heads), k.reshape(heads), v.reshape(heads), *_decay_bonus(w, a, cfg))
    mu = out.mean(-1, keepdims=True)
    var = ((out - mu) ** 2).mean(-1, keepdims=True)
    y = ((out - mu) / np.sqrt(var + np.float32(cfg.gn_eps))).reshape(x.shape)
    y = y * w(a + "ln_x.weight") + w(a + "ln_x.bias")
    if cfg.has_gate:
        z = rec.matmul(a + "gate.weight", mixed["g"], w)
        y = y * (z / (1 + np.exp(-z)))
    return x + rec.matmul(a + "output.weight", y.astype(np.float32), w)


def _channel_mix(x: F32, w: Weights, p: str, cfg: ModelConfig, rec: _Recorder) -> F32:
    xx = _ln(x, w(p + "ln2.weight"), w(p + "ln2.bias"), cfg.ln_eps)
    sx, f = _shift(xx), p + "ffn."
    xk = _mix(xx, sx, w(f + "time_mix_k").reshape(-1))
    xr = _mix(xx, sx, w(f + "time_mix_r").reshape(-1))
    kk = np.maximum(rec.matmul(f + "key.weight", xk, w), 0) ** 2
    rr = rec.matmul(f + "receptance.weight", xr, w)
    one = np.float32(1)  # float32 throughout, as the engines compute it
    return x + one / (one + np.exp(-rr)) * rec.matmul(f + "value.weight", kk, w)


def run_float_model(
    w: Weights, cfg: ModelConfig, tokens: Sequence[int], rec: _Recorder | None = None
) -> F32:
    """Logits (T, V) of ``tokens`` from the zero state; ``rec`` collects matmul inputs."""
    rec = rec or _Recorder()
    rec.count += len(tokens)
    x = w("emb.weight")[np.asarray(tokens)]
    x = _ln(x, w("blocks.0.ln0.weight"), w("blocks.0.ln0.bias"), cfg.ln_eps)
    for i in range(cfg.n_layer):
        x = _time_mix(x, w, f"blocks.{i}.", cfg, rec)
        x = _channel_mix(x, w, f"blocks.{i}.", cfg, rec)
    x = _ln(x, w("ln_out.weight"), w("ln_out.bias"), cfg.ln_eps)
    return rec.matmul("head.weight", x, w)


def collect_stats(
    weights: Mapping[str, F32] | Weights, cfg: ModelConfig, tokens: Sequence[int], chunk: int = 512
) -> dict[str, F32]:
    """Mean squared input activation per channel, for every matrix (name -> [in])."""
    if cfg.is_v7:
        raise ArgumentError(
            "--calibration runs the v5 forward pass; it is not available for RWKV-7 yet "
            "(quantize without --calibration)"
        )
    w = weights if callable(weights) else weights.__getitem__
    rec = _Recorder()
    # Independent chunks from the zero state: bounded memory, same statistics shape.
    for start in range(0, len(tokens), chunk):
        run_float_model(w, cfg, tokens[start : start + chunk], rec)
    return rec.means()


def log_softmax_nll(logits: F32, targets: Sequence[int]) -> float:
    """Sum of -log p(target) over positions (float64)."""
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    return float((lse - z[np.arange(len(targets)), np.asarray(targets)]).sum())
