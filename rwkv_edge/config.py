"""Model hyper-parameters and RWKV version detection.

Detection looks at the whole set of tensor names and shapes, never at key
order (the reference's detection depends on key order and fails on 1-layer
v5.2 checkpoints, RWKV5_SPEC.md section 5.4).

Versions (the ``rwkv`` pip package's naming):
  5.0  ``att.ln_x`` present, no ``att.gate``; per-head ``time_decay`` [H] and
       ``time_first`` [H] (bonus ``u = exp(time_first)``).
  5.1  ``att.gate`` present; per-head ``time_decay`` [H] (bonus ``time_faaaa``
       [H] used raw, or ``time_first`` [H] as ``exp``).
  5.2  ``att.gate`` present and ``time_decay`` is per channel [H, N] (Eagle).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import FormatError, VersionError

LN_EPS = 1e-5
GN_EPS = 64e-5  # the reference's ln_x GroupNorm eps (rwkv.cpp uses 1e-5)

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of one RWKV-v5 model."""

    version: str  # "5.0" | "5.1" | "5.2"
    n_layer: int
    n_embd: int
    n_head: int
    head_size: int
    n_ffn: int
    n_vocab: int
    ln_eps: float = LN_EPS
    gn_eps: float = GN_EPS

    @property
    def version_code(self) -> int:
        """50, 51 or 52: the integer form used in GGUF metadata and the C ABI."""
        return int(self.version.replace(".", ""))

    @property
    def has_gate(self) -> bool:
        return self.version != "5.0"

    @property
    def layer_state_len(self) -> int:
        """Floats per layer: att shift, ffn shift, then the wkv matrix."""
        return 2 * self.n_embd + self.n_head * self.head_size * self.head_size

    @property
    def state_len(self) -> int:
        return self.n_layer * self.layer_state_len

    @staticmethod
    def from_version_code(code: int, **dims: int) -> ModelConfig:
        if code not in (50, 51, 52):
            raise VersionError(f"unsupported RWKV version code {code} (expected 50, 51 or 52)")
        return ModelConfig(version=f"{code // 10}.{code % 10}", **dims)


def _require(shapes: Mapping[str, Sequence[int]], name: str) -> tuple[int, ...]:
    if name not in shapes:
        raise FormatError(f"checkpoint has no tensor '{name}'")
    return tuple(int(d) for d in shapes[name])


def _refuse_other_architectures(names: set[str]) -> None:
    if any(".att.time_maa" in n or ".att.time_decay_w1" in n for n in names):
        raise VersionError("this is an RWKV v6 (Finch) checkpoint; only RWKV v5 is supported")
    if any(".att.x_r" in n or ".att.w1" in n or ".att.a0" in n for n in names):
        raise VersionError("this is an RWKV v7 (Goose) checkpoint; only RWKV v5 is supported")
    if not any(".att.ln_x." in n for n in names):
        if any(".att.time_decay" in n for n in names):
            raise VersionError(
                "this looks like an RWKV v4 checkpoint (no att.ln_x); only RWKV v5 is supported"
            )
        raise FormatError("not an RWKV checkpoint: no 'blocks.N.att.ln_x' tensors found")


def detect_config(shapes: Mapping[str, Sequence[int]]) -> ModelConfig:
    """Derive the version and dimensions from tensor names and shapes alone."""
    names = set(shapes)
    _refuse_other_architectures(names)
    layers = {int(m.group(1)) for n in names if (m := _BLOCK_RE.match(n))}
    if not layers:
        raise FormatError("not an RWKV checkpoint: no 'blocks.N.' layer tensors found")
    n_layer = max(layers) + 1
    missing = sorted(set(range(n_layer)) - layers)
    if missing:
        raise FormatError(f"checkpoint is missing layers {missing[:5]} of {n_layer}")
    n_vocab, n_embd = _require(shapes, "emb.weight")
    decay = _require(shapes, "blocks.0.att.time_decay")
    n_head = decay[0]
    if n_head <= 0 or n_embd % n_head:
        raise FormatError(f"time_decay shape {decay} does not divide n_embd {n_embd}")
    head_size = n_embd // n_head
    n_ffn = _require(shapes, "blocks.0.ffn.key.weight")[0]
    has_gate = "blocks.0.att.gate.weight" in names
    per_channel = len(decay) >= 2 and decay[1] > 1
    version = "5.0" if not has_gate else ("5.2" if per_channel else "5.1")
    return ModelConfig(version, n_layer, n_embd, n_head, head_size, n_ffn, n_vocab)
