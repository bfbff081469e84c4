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
  7.0  RWKV-7 "Goose" (x070, the G1 models): ``att.r_k``, ``att.x_r`` ...;
       see ``detect_v7_config`` and docs/RWKV7_SPEC.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import FormatError, VersionError

LN_EPS = 1e-5
GN_EPS = 64e-5  # the reference's ln_x GroupNorm eps (rwkv.cpp uses 1e-5)

_BLOCK_RE = re.compile(r"^blocks\.([0-9]+)\.")
V7_VERSION = "7.0"


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of one RWKV model (v5, or v7 with its LoRA ranks)."""

    version: str  # "5.0" | "5.1" | "5.2" | "7.0"
    n_layer: int
    n_embd: int
    n_head: int
    head_size: int
    n_ffn: int
    n_vocab: int
    ln_eps: float = LN_EPS
    gn_eps: float = GN_EPS
    # RWKV-7 low-rank sizes (0 for v5): decay w, in-context rate a, value residual v, gate g.
    # Out of repr so that a v5 config's repr, which Model.model_id hashes (states saved
    # before v7 existed stay bound to their model), is what it was.
    lora_w: int = field(default=0, repr=False)
    lora_a: int = field(default=0, repr=False)
    lora_v: int = field(default=0, repr=False)
    lora_g: int = field(default=0, repr=False)

    @property
    def version_code(self) -> int:
        """50, 51, 52 or 70: the integer form used in GGUF metadata and the C ABI."""
        return int(self.version.replace(".", ""))

    @property
    def has_gate(self) -> bool:
        return self.version != "5.0"

    @property
    def is_v7(self) -> bool:
        return self.version == V7_VERSION

    @property
    def layer_state_len(self) -> int:
        """Floats per layer: att shift, ffn shift, then the wkv matrix."""
        return 2 * self.n_embd + self.n_head * self.head_size * self.head_size

    @property
    def state_len(self) -> int:
        return self.n_layer * self.layer_state_len

    @staticmethod
    def from_version_code(code: int, **dims: int) -> ModelConfig:
        if code not in (50, 51, 52, 70):
            raise VersionError(f"unsupported RWKV version code {code} (expected 50, 51, 52 or 70)")
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
    if is_v7_names(names):
        return detect_v7_config(shapes)
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
    """Every tensor a model of ``cfg`` needs -> the shapes it may have."""
    if cfg.version == V7_VERSION:
        return expected_v7_tensors(cfg)
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
    """Per-layer tensors a model may have; v5's bonus is one of the first two (required)."""
    H, N, C = cfg.n_head, cfg.head_size, cfg.n_embd
    if cfg.version == V7_VERSION:
        opt: dict[str, tuple[tuple[int, ...], ...]] = {layer + "att.time_state": ((H, N, N),)}
        if layer == "blocks.0.":  # layer 0 keeps v_first = v and never reads these
            opt[layer + "att.v0"] = _vector(C)
            opt[layer + "att.v1"] = ((C, cfg.lora_v),)
            opt[layer + "att.v2"] = ((cfg.lora_v, C),)
        return opt
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
    for i in range(cfg.n_layer if cfg.version != V7_VERSION else 0):
        b = f"blocks.{i}.att."
        if b + "time_faaaa" not in tensors and b + "time_first" not in tensors:
            missing.append(b + "time_faaaa")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FormatError(f"{file}: the model has no tensor {', '.join(missing[:3])}{more}")


# RWKV-7 (x070)
# ---------------------------------------------------------------------------

# Per-layer tensors of a BlinkDL x070 checkpoint (suffixes after "blocks.N.").
V7_MIXES = ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")
V7_VECTORS = (*V7_MIXES, "w0", "a0", "k_k", "k_a")  # [1, 1, C] each
V7_LORAS = {"w": ("w1", "w2"), "a": ("a1", "a2"), "v": ("v1", "v2"), "g": ("g1", "g2")}
V7_MATRICES = ("receptance", "key", "value", "output")
_V7_LAYER = frozenset(
    [f"att.{n}" for n in (*V7_VECTORS, "v0", "r_k")]
    + [f"att.{n}" for pair in V7_LORAS.values() for n in pair]
    + [f"att.{m}.weight" for m in V7_MATRICES]
    + ["att.ln_x.weight", "att.ln_x.bias", "ffn.x_k", "ffn.key.weight", "ffn.value.weight"]
    + [f"{ln}.{wb}" for ln in ("ln1", "ln2") for wb in ("weight", "bias")]
)
_V7_TOP = frozenset(
    (
        "emb.weight",
        "head.weight",
        "ln_out.weight",
        "ln_out.bias",
        "blocks.0.ln0.weight",
        "blocks.0.ln0.bias",
    )
)
# Layer 0 takes v_first = v and never reads these; BlinkDL files may carry them.
V7_LAYER0_OPTIONAL = ("att.v0", "att.v1", "att.v2")
_V7_MARKERS = (".att.r_k", ".att.x_r", ".att.w0", ".att.k_a")


def is_v7_names(names: set[str]) -> bool:
    """True when tensor names say RWKV-7 (BlinkDL names; HF ones are mapped before)."""
    return any(n.endswith(_V7_MARKERS) for n in names)


def _refuse_v7_variants(names: set[str]) -> None:
    """rwkv7a (DeepEmbed: ffn.s_emb/s0/s1/s2) and rwkv7b add tensors x070 does not read."""
    extra = sorted(
        n
        for n in names
        if n not in _V7_TOP and not ((m := _BLOCK_RE.match(n)) and n[m.end() :] in _V7_LAYER)
    )
    if extra:
        variant = (
            "an rwkv7a/rwkv7b (DeepEmbed) variant"
            if any(".s_emb" in n or re.search(r"\.s\d$", n) for n in extra)
            else "not a plain RWKV-7 (x070) model"
        )
        shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
        raise FormatError(
            f"this checkpoint is {variant}: it has tensors the x070 architecture does not "
            f"use ({shown}); only plain RWKV-7 (x070, e.g. the G1 models) is supported"
        )


def _v7_rank(shapes: Mapping[str, Sequence[int]], layer: int, key: str, C: int) -> int:
    """The low-rank size D of one LoRA pair, from X1 [C, D] and X2 [D, C]."""
    n1, n2 = V7_LORAS[key]
    one = _require(shapes, f"blocks.{layer}.att.{n1}", (2,))
    two = _require(shapes, f"blocks.{layer}.att.{n2}", (2,))
    if one[0] != C or two[1] != C or one[1] != two[0]:
        raise FormatError(
            f"layer {layer}: att.{n1} {one} and att.{n2} {two} are not a [C, D] x [D, C] "
            f"low-rank pair for C = {C}"
        )
    return one[1]


def expected_v7_tensors(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Every tensor the x070 forward pass reads -> the shapes it may have (layer 0's
    v0/v1/v2, which it never reads, are in _optional_tensors)."""
    C, F, V, H, N = cfg.n_embd, cfg.n_ffn, cfg.n_vocab, cfg.n_head, cfg.head_size
    ranks = {"w": cfg.lora_w, "a": cfg.lora_a, "v": cfg.lora_v, "g": cfg.lora_g}
    want: dict[str, tuple[tuple[int, ...], ...]] = {
        "emb.weight": ((V, C),),
        "head.weight": ((V, C),),
        "ln_out.weight": _vector(C),
        "ln_out.bias": _vector(C),
        "blocks.0.ln0.weight": _vector(C),
        "blocks.0.ln0.bias": _vector(C),
    }
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2", "att.ln_x"):
            want[p + ln + ".weight"] = want[p + ln + ".bias"] = _vector(C)
        for v in V7_VECTORS:
            want[p + "att." + v] = _vector(C)
        want[p + "att.r_k"] = ((H, N),)
        for key, (n1, n2) in V7_LORAS.items():
            if i or key != "v":
                want[p + "att." + n1] = ((C, ranks[key]),)
                want[p + "att." + n2] = ((ranks[key], C),)
        if i:
            want[p + "att.v0"] = _vector(C)
        for m in V7_MATRICES:
            want[p + f"att.{m}.weight"] = ((C, C),)
        want[p + "ffn.x_k"] = _vector(C)
        want[p + "ffn.key.weight"] = ((F, C),)
        want[p + "ffn.value.weight"] = ((C, F),)
    return want


def _check_v7_shapes(shapes: Mapping[str, Sequence[int]], cfg: ModelConfig) -> None:
    """Every tensor the x070 forward pass reads, present and of its shape."""
    optional = _optional_tensors(cfg, "blocks.0.")
    for name, allowed in (expected_v7_tensors(cfg) | optional).items():
        if name in optional and name not in shapes:
            continue
        got = _require(shapes, name, tuple({len(a) for a in allowed}))
        if got not in allowed:
            alts = " or ".join(str(list(a)) for a in allowed)
            raise FormatError(f"tensor '{name}' has shape {list(got)}, expected {alts}")


def detect_v7_config(shapes: Mapping[str, Sequence[int]]) -> ModelConfig:
    """RWKV-7 dimensions from names and shapes; LoRA ranks from the low-rank matrices."""
    names = set(shapes)
    _refuse_v7_variants(names)
    n_layer = _layer_count(names)
    n_vocab, C = _require(shapes, "emb.weight", (2,))
    H, N = r_k = _require(shapes, "blocks.0.att.r_k", (2,))
    if H * N != C:
        raise FormatError(f"att.r_k shape {r_k} (heads x head size) does not make n_embd {C}")
    n_ffn = _require(shapes, "blocks.0.ffn.key.weight", (2,))[0]
    # Layer 0 may lack v1/v2; a 1-layer model without them has no value residual at all.
    v_layer = next((i for i in range(n_layer) if f"blocks.{i}.att.v1" in names), None)
    cfg = ModelConfig(
        version=V7_VERSION,
        n_layer=n_layer,
        n_embd=C,
        n_head=H,
        head_size=N,
        n_ffn=n_ffn,
        n_vocab=n_vocab,
        lora_w=_v7_rank(shapes, 0, "w", C),
        lora_a=_v7_rank(shapes, 0, "a", C),
        lora_v=0 if v_layer is None else _v7_rank(shapes, v_layer, "v", C),
        lora_g=_v7_rank(shapes, 0, "g", C),
    )
    if n_layer > 1 and v_layer is None:
        raise FormatError("checkpoint has no att.v1 in any layer: layers 1+ need the value LoRA")
    _check_v7_shapes(shapes, cfg)
    return cfg
