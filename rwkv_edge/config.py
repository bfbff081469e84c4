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

_BLOCK_RE = re.compile(r"^blocks\.([0-9]+)\.")


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


def _require(
    shapes: Mapping[str, Sequence[int]], name: str, rank: tuple[int, ...]
) -> tuple[int, ...]:
    """The shape of a tensor detection needs: present, of an expected rank, no zero dims."""
    if name not in shapes:
        raise FormatError(f"checkpoint has no tensor '{name}'")
    shape = tuple(int(d) for d in shapes[name])
    if len(shape) not in rank or any(d <= 0 for d in shape):
        want = " or ".join(f"{r}-D" for r in rank)
        raise FormatError(f"tensor '{name}' has shape {list(shape)}; expected {want}, no zeros")
    return shape


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


def _layer_count(names: set[str]) -> int:
    """n_layer from the 'blocks.N.' names, bounded by the names themselves: a name
    'blocks.99999999999.x' cannot make anything of size N."""
    layers: set[int] = set()
    for n in names:
        m = _BLOCK_RE.match(n)
        if m:
            digits = m.group(1)
            if len(digits) > 9:
                raise FormatError(f"tensor name 'blocks.{digits[:12]}...' has an absurd layer")
            layers.add(int(digits))
    if not layers:
        raise FormatError("not an RWKV checkpoint: no 'blocks.N.' layer tensors found")
    n_layer = max(layers) + 1
    if n_layer > len(layers):  # some layer in [0, n_layer) has no tensor
        missing = [i for i in range(len(layers) + 1) if i not in layers][:5]
        raise FormatError(f"checkpoint is missing layers {missing} of {n_layer}")
    return n_layer


def detect_config(shapes: Mapping[str, Sequence[int]]) -> ModelConfig:
    """Derive the version and dimensions from tensor names and shapes alone."""
    names = set(shapes)
    _refuse_other_architectures(names)
    n_layer = _layer_count(names)
    n_vocab, n_embd = _require(shapes, "emb.weight", (2,))
    decay = _require(shapes, "blocks.0.att.time_decay", (1, 2))
    n_head = decay[0]
    if n_embd % n_head:
        raise FormatError(f"time_decay shape {list(decay)} does not divide n_embd {n_embd}")
    head_size = n_embd // n_head
    n_ffn = _require(shapes, "blocks.0.ffn.key.weight", (2,))[0]
    has_gate = "blocks.0.att.gate.weight" in names
    per_channel = len(decay) >= 2 and decay[1] > 1
    version = "5.0" if not has_gate else ("5.2" if per_channel else "5.1")
    return ModelConfig(version, n_layer, n_embd, n_head, head_size, n_ffn, n_vocab)


# ---------------------------------------------------------------------------
# The one check of every tensor against the config (before any engine sees it)
# ---------------------------------------------------------------------------

FLOAT_TYPES = frozenset(("f32", "f16", "bf16", "f64"))
# q5_0/q5_1 only come from rwkv.cpp files, which the quantizer reads (and re-encodes)
MATRIX_TYPES = FLOAT_TYPES | {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}
_VECTORS = ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.ln_x.weight",
            "att.ln_x.bias", "att.time_mix_k", "att.time_mix_v", "att.time_mix_r",
            "ffn.time_mix_k", "ffn.time_mix_r")  # fmt: skip


def _vector(n: int) -> tuple[tuple[int, ...], ...]:
    """[n], [1, n] and [1, 1, n]: the same vector as files store it."""
    return ((n,), (1, n), (1, 1, n))


def expected_tensors(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Every tensor an RWKV-v5 model of ``cfg`` needs -> the shapes it may have."""
    C, H, N, F, V = cfg.n_embd, cfg.n_head, cfg.head_size, cfg.n_ffn, cfg.n_vocab
    head = ((H, N),) if cfg.version == "5.2" else ((H,), (H, 1))
    out = {
        "emb.weight": ((V, C),),
        "blocks.0.ln0.weight": _vector(C),
        "blocks.0.ln0.bias": _vector(C),
        "ln_out.weight": _vector(C),
        "ln_out.bias": _vector(C),
        "head.weight": ((V, C),),
    }
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        out.update({b + v: _vector(C) for v in _VECTORS})
        out.update({b + f"att.{m}.weight": ((C, C),) for m in ("receptance", "key", "value")})
        out[b + "att.output.weight"] = ((C, C),)
        out[b + "att.time_decay"] = head
        out[b + "ffn.key.weight"] = ((F, C),)
        out[b + "ffn.receptance.weight"] = ((C, C),)
        out[b + "ffn.value.weight"] = ((C, F),)
        if cfg.has_gate:
            out[b + "att.gate.weight"] = ((C, C),)
            out[b + "att.time_mix_g"] = _vector(C)
    return out


def _optional_tensors(cfg: ModelConfig, layer: str) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per-layer tensors a model may have; the bonus is one of the first two (required)."""
    H, N = cfg.n_head, cfg.head_size
    return {
        layer + "att.time_faaaa": ((H,), (H, 1), (H, N)),
        layer + "att.time_first": ((H,), (H, 1)),
        layer + "att.time_state": ((H, N, N),),
    }


def check_tensors(
    cfg: ModelConfig,
    tensors: Mapping[str, tuple[tuple[int, ...], str]],
    file: str,
    *,
    complete: bool = False,
) -> None:
    """Check every tensor's rank, shape and dtype against ``cfg``; ``complete``: and that
    none is missing. ``tensors`` maps name -> (shape, dtype). Tensors rwkv-edge does
    not know are left alone (engines never read them). Raises FormatError naming
    ``file`` and the tensor.
    """
    if min(cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size, cfg.n_ffn, cfg.n_vocab) <= 0:
        raise FormatError(f"{file}: a model dimension is zero ({cfg})")
    if cfg.n_head * cfg.head_size != cfg.n_embd:
        raise FormatError(f"{file}: n_head x head_size != n_embd ({cfg})")
    want = expected_tensors(cfg)
    for i in range(cfg.n_layer):
        want.update(_optional_tensors(cfg, f"blocks.{i}."))
    for name, (shape, dtype) in tensors.items():
        shapes = want.get(name)
        if shapes is None:
            continue
        if shape not in shapes:
            alts = " or ".join(str(list(s)) for s in shapes)
            raise FormatError(
                f"{file}: tensor '{name}' has shape {list(shape)}, expected {alts} "
                f"for this v{cfg.version} {cfg.n_layer}x{cfg.n_embd} model"
            )
        allowed = MATRIX_TYPES if len(shapes[0]) == 2 and name.endswith(".weight") else FLOAT_TYPES
        if dtype not in allowed:
            raise FormatError(f"{file}: tensor '{name}' has dtype {dtype}, expected a float type")
    if complete:
        _check_complete(cfg, tensors, file)


def _check_complete(
    cfg: ModelConfig,
    tensors: Mapping[str, object],
    file: str,
) -> None:
    missing = [n for n in expected_tensors(cfg) if n not in tensors]
    for i in range(cfg.n_layer):
        b = f"blocks.{i}.att."
        if b + "time_faaaa" not in tensors and b + "time_first" not in tensors:
            missing.append(b + "time_faaaa")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FormatError(f"{file}: the model has no tensor {', '.join(missing[:3])}{more}")
