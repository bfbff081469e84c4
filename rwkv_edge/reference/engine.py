"""NumbaEngine: loads any checkpoint into float32 Weights and runs rwkv5.forward.

This is the executable spec and the fallback when the C extension is missing.
It dequantizes everything to float32, so it needs 4 bytes per parameter of
memory: meant for small models, tests and debugging, not for 7B decode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..checkpoint import Checkpoint, open_checkpoint
from ..config import ModelConfig
from ..errors import FormatError, ShapeError
from ..gguf_schema import emb_ln_dtype
from ..tensors import round_bf16
from . import rwkv5

F32 = npt.NDArray[np.float32]


class NumbaEngine:
    """The Engine protocol (rwkv_edge/model.py) over the numba forward pass."""

    name = "numba"

    def __init__(self, ckpt: Checkpoint) -> None:
        ckpt.check_complete()
        self.config: ModelConfig = ckpt.config
        self._emb = ckpt["emb.weight"].to_f32()
        self._ln0 = (_vec(ckpt, "blocks.0.ln0.weight"), _vec(ckpt, "blocks.0.ln0.bias"))
        self._emb_round = _emb_rounding(ckpt)
        self._weights = load_weights(ckpt)
        self._time_state = _time_state(ckpt)

    @classmethod
    def open(cls, path: Path) -> NumbaEngine:
        with open_checkpoint(path) as ckpt:
            return cls(ckpt)

    def initial_state(self) -> npt.NDArray[np.float32]:
        cfg = self.config
        state = np.zeros(cfg.state_len, dtype=np.float32)
        if self._time_state is not None:
            per = cfg.layer_state_len
            for i, s in enumerate(self._time_state):
                state[i * per + 2 * cfg.n_embd : (i + 1) * per] = s.reshape(-1)
        return state

    def embed(self, tokens: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """LN(emb[t]; ln0), rounded as the reference rounds it (spec section 5.3)."""
        x = rwkv5.layer_norm(self._emb[tokens], *self._ln0, self.config.ln_eps)
        return self._emb_round(x)

    def forward(
        self,
        tokens: npt.NDArray[np.int32],
        state: npt.NDArray[np.float32],
        full_output: bool,
        want_logits: bool = True,
    ) -> npt.NDArray[np.float32]:
        logits = self._run(self.embed(tokens), state, full_output, want_logits)
        return logits if full_output else logits[0]

    def _run(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32], full: bool, want: bool
    ) -> npt.NDArray[np.float32]:
        """Logits [T or 1 or 0, V] of embedded tokens x [T, C]; state advanced in place."""
        cfg = self.config
        return rwkv5.forward(
            x, self._weights, state, cfg.has_gate, cfg.ln_eps, cfg.gn_eps, full, want
        )

    def close(self) -> None:
        self._weights = None  # type: ignore[assignment]


def _vec(ckpt: Checkpoint, name: str) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(ckpt[name].to_f32().reshape(-1))


def _emb_rounding(ckpt: Checkpoint) -> Callable[[F32], F32]:
    """The reference runs LN(emb) in the checkpoint's dtype: round like it does."""
    dtype = emb_ln_dtype(ckpt.metadata, ckpt.source_dtype)
    if dtype == "bf16":
        return round_bf16
    if dtype == "f16":
        return lambda x: x.astype(np.float16).astype(np.float32)
    return lambda x: x


def _decay_and_bonus(ckpt: Checkpoint, i: int) -> tuple[np.ndarray, np.ndarray]:
    """w = exp(-exp(time_decay)) and u, both broadcast to [H, N]."""
    cfg = ckpt.config
    shape = (cfg.n_head, cfg.head_size)
    p = f"blocks.{i}.att."
    decay = ckpt[p + "time_decay"].to_f32().reshape(cfg.n_head, -1)
    w = np.exp(-np.exp(decay.astype(np.float32)))
    if p + "time_faaaa" in ckpt:
        u = ckpt[p + "time_faaaa"].to_f32().reshape(cfg.n_head, -1)
    elif p + "time_first" in ckpt:
        u = np.exp(ckpt[p + "time_first"].to_f32().reshape(cfg.n_head, -1))
    else:
        raise FormatError(f"layer {i} has neither time_faaaa nor time_first")
    try:
        return (
            np.ascontiguousarray(np.broadcast_to(w, shape), dtype=np.float32),
            np.ascontiguousarray(np.broadcast_to(u, shape), dtype=np.float32),
        )
    except ValueError:
        raise ShapeError(f"layer {i}: time_decay/bonus do not fit [H, N] = {shape}") from None


def _stack(ckpt: Checkpoint, suffix: str, flat: bool = False) -> npt.NDArray[np.float32]:
    arrs = [ckpt[f"blocks.{i}.{suffix}"].to_f32() for i in range(ckpt.config.n_layer)]
    if flat:
        arrs = [a.reshape(-1) for a in arrs]
    return np.ascontiguousarray(np.stack(arrs), dtype=np.float32)


def load_weights(ckpt: Checkpoint) -> rwkv5.Weights:
    """Every tensor as float32, per-layer ones stacked; checks shapes on the way."""
    cfg = ckpt.config
    L, C = cfg.n_layer, cfg.n_embd
    decays = [_decay_and_bonus(ckpt, i) for i in range(L)]
    gate = _stack(ckpt, "att.gate.weight") if cfg.has_gate else np.zeros((L, 0, 0), np.float32)
    mix_g = _stack(ckpt, "att.time_mix_g", True) if cfg.has_gate else np.zeros((L, C), np.float32)
    wt = rwkv5.Weights(
        ln1_w=_stack(ckpt, "ln1.weight"),
        ln1_b=_stack(ckpt, "ln1.bias"),
        ln2_w=_stack(ckpt, "ln2.weight"),
        ln2_b=_stack(ckpt, "ln2.bias"),
        att_mix_k=_stack(ckpt, "att.time_mix_k", True),
        att_mix_v=_stack(ckpt, "att.time_mix_v", True),
        att_mix_r=_stack(ckpt, "att.time_mix_r", True),
        att_mix_g=mix_g,
        att_w=np.stack([d[0] for d in decays]),
        att_u=np.stack([d[1] for d in decays]),
        att_r=_stack(ckpt, "att.receptance.weight"),
        att_k=_stack(ckpt, "att.key.weight"),
        att_v=_stack(ckpt, "att.value.weight"),
        att_g=gate,
        att_o=_stack(ckpt, "att.output.weight"),
        lnx_w=_stack(ckpt, "att.ln_x.weight"),
        lnx_b=_stack(ckpt, "att.ln_x.bias"),
        ffn_mix_k=_stack(ckpt, "ffn.time_mix_k", True),
        ffn_mix_r=_stack(ckpt, "ffn.time_mix_r", True),
        ffn_k=_stack(ckpt, "ffn.key.weight"),
        ffn_r=_stack(ckpt, "ffn.receptance.weight"),
        ffn_v=_stack(ckpt, "ffn.value.weight"),
        ln_out_w=_vec(ckpt, "ln_out.weight"),
        ln_out_b=_vec(ckpt, "ln_out.bias"),
        head=np.ascontiguousarray(ckpt["head.weight"].to_f32()),
    )
    _check_shapes(cfg, wt)
    return wt


def _check_shapes(cfg: ModelConfig, wt: rwkv5.Weights) -> None:
    L, C, F, V = cfg.n_layer, cfg.n_embd, cfg.n_ffn, cfg.n_vocab
    expect = {
        "att_r": (L, C, C),
        "att_k": (L, C, C),
        "att_v": (L, C, C),
        "att_o": (L, C, C),
        "ffn_k": (L, F, C),
        "ffn_r": (L, C, C),
        "ffn_v": (L, C, F),
        "head": (V, C),
        "ln1_w": (L, C),
        "lnx_w": (L, C),
        "att_mix_k": (L, C),
    }
    if cfg.has_gate:
        expect["att_g"] = (L, C, C)
    for name, shape in expect.items():
        got = getattr(wt, name).shape
        if got != shape:
            raise ShapeError(f"tensor group {name} has shape {got}, expected {shape}")


def _time_state(ckpt: Checkpoint) -> list[np.ndarray] | None:
    """State-tuned checkpoints carry att.time_state; the initial S is its transpose."""
    names = [f"blocks.{i}.att.time_state" for i in range(ckpt.config.n_layer)]
    if not all(n in ckpt for n in names):
        return None
    H, N = ckpt.config.n_head, ckpt.config.head_size
    return [ckpt[n].to_f32().reshape(H, N, N).transpose(0, 2, 1).copy() for n in names]
