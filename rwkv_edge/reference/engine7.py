"""NumbaEngine7: loads an RWKV-7 checkpoint into float32 Weights7 and runs rwkv7.forward7.

Like the v5 NumbaEngine it dequantizes everything to float32 (4 bytes per
parameter): the executable spec and, until the C core has the v7 kernels,
the engine that runs v7 files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..checkpoint import Checkpoint, open_checkpoint
from ..config import ModelConfig
from . import rwkv5, rwkv7
from .engine import NumbaEngine, _vec


class NumbaEngine7(NumbaEngine):
    """The Engine protocol (rwkv_edge/model.py) over the numba x070 forward pass."""

    def __init__(self, ckpt: Checkpoint) -> None:
        # Not NumbaEngine.__init__: that one loads v5 tensors.
        self.config: ModelConfig = ckpt.config
        self._emb = ckpt["emb.weight"].to_f32()
        self._ln0 = (_vec(ckpt, "blocks.0.ln0.weight"), _vec(ckpt, "blocks.0.ln0.bias"))
        self._weights7 = load_weights7(ckpt)

    def initial_state(self) -> npt.NDArray[np.float32]:
        return np.zeros(self.config.state_len, dtype=np.float32)

    def embed(self, tokens: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """LN(emb[t]; ln0) in float32: the v7 reference upcasts before the LayerNorm."""
        return rwkv5.layer_norm(self._emb[tokens], *self._ln0, self.config.ln_eps)

    def _run(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32], full: bool, want: bool
    ) -> npt.NDArray[np.float32]:
        cfg = self.config
        return rwkv7.forward7(
            x, self._weights7, state, cfg.n_head, cfg.ln_eps, cfg.gn_eps, full, want
        )

    def close(self) -> None:
        self._weights7 = None  # type: ignore[assignment]


def open_numba_engine(path: Path) -> NumbaEngine | NumbaEngine7:
    """The numba engine for whichever version the file holds."""
    with open_checkpoint(path) as ckpt:
        return NumbaEngine7(ckpt) if ckpt.config.is_v7 else NumbaEngine(ckpt)


def _stack(ckpt: Checkpoint, suffix: str, *, flat: bool = False, t: bool = False) -> np.ndarray:
    """One tensor per layer stacked on L; flat: [1, 1, C] -> [C]; t: transposed matrices."""
    arrs = [ckpt[f"blocks.{i}.{suffix}"].to_f32() for i in range(ckpt.config.n_layer)]
    if flat:
        arrs = [a.reshape(-1) for a in arrs]
    if t:
        arrs = [a.T for a in arrs]
    return np.ascontiguousarray(np.stack(arrs), dtype=np.float32)


def _value_lora(ckpt: Checkpoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """v0, v1^T, v2^T stacked; layer 0 (never read) gets zeros whether or not the file has it."""
    cfg = ckpt.config
    C, D = cfg.n_embd, cfg.lora_v
    v0 = np.zeros((cfg.n_layer, C), np.float32)
    v1 = np.zeros((cfg.n_layer, D, C), np.float32)
    v2 = np.zeros((cfg.n_layer, C, D), np.float32)
    for i in range(1, cfg.n_layer):
        p = f"blocks.{i}.att."
        v0[i] = ckpt[p + "v0"].to_f32().reshape(-1)
        v1[i] = ckpt[p + "v1"].to_f32().T
        v2[i] = ckpt[p + "v2"].to_f32().T
    return v0, v1, v2


def load_weights7(ckpt: Checkpoint) -> rwkv7.Weights7:
    """Every tensor as float32, per-layer ones stacked (shapes were checked at detection)."""
    v0, v1, v2 = _value_lora(ckpt)
    mixes = {m: _stack(ckpt, f"att.{m}", flat=True) for m in ("x_r", "x_w", "x_k", "x_v")}
    return rwkv7.Weights7(
        ln1_w=_stack(ckpt, "ln1.weight"),
        ln1_b=_stack(ckpt, "ln1.bias"),
        ln2_w=_stack(ckpt, "ln2.weight"),
        ln2_b=_stack(ckpt, "ln2.bias"),
        **mixes,
        x_a=_stack(ckpt, "att.x_a", flat=True),
        x_g=_stack(ckpt, "att.x_g", flat=True),
        w0=_stack(ckpt, "att.w0", flat=True),
        w1=_stack(ckpt, "att.w1", t=True),
        w2=_stack(ckpt, "att.w2", t=True),
        a0=_stack(ckpt, "att.a0", flat=True),
        a1=_stack(ckpt, "att.a1", t=True),
        a2=_stack(ckpt, "att.a2", t=True),
        v0=v0,
        v1=v1,
        v2=v2,
        g1=_stack(ckpt, "att.g1", t=True),
        g2=_stack(ckpt, "att.g2", t=True),
        k_k=_stack(ckpt, "att.k_k", flat=True),
        k_a=_stack(ckpt, "att.k_a", flat=True),
        r_k=_stack(ckpt, "att.r_k", flat=True),
        att_r=_stack(ckpt, "att.receptance.weight"),
        att_k=_stack(ckpt, "att.key.weight"),
        att_v=_stack(ckpt, "att.value.weight"),
        att_o=_stack(ckpt, "att.output.weight"),
        lnx_w=_stack(ckpt, "att.ln_x.weight"),
        lnx_b=_stack(ckpt, "att.ln_x.bias"),
        ffn_x_k=_stack(ckpt, "ffn.x_k", flat=True),
        ffn_k=_stack(ckpt, "ffn.key.weight"),
        ffn_v=_stack(ckpt, "ffn.value.weight"),
        ln_out_w=_vec(ckpt, "ln_out.weight"),
        ln_out_b=_vec(ckpt, "ln_out.bias"),
        head=np.ascontiguousarray(ckpt["head.weight"].to_f32()),
    )
