"""Which tensor gets which storage type; recorded as JSON in the output file.

Rules, in order:
  * vectors and small parameters (``time_*``, LayerNorm/GroupNorm ``ln*``,
    biases, anything not 2-D) stay f32: they are a rounding error of the
    file size and the recurrence is sensitive to them (decay is
    ``exp(-exp(w))``);
  * matrices whose rows are not whole 32-element blocks fall back to f16;
  * ``emb.weight`` and ``head.weight`` take their own types (below);
  * every other matrix takes the requested type.

For RWKV-7 the same rules keep float everything llama.cpp keeps float: the
LoRA matrices ``w1/w2 a1/a2 v1/v2 g1/g2`` and ``r_k`` are 2-D but not
``*.weight``, and the vectors ``x_*``, ``w0 a0 v0 k_k k_a`` are not 2-D; so only
``att.{receptance,key,value,output}``, ``ffn.{key,value}``, emb and head are
quantized (tests/test_v7_gguf.py checks the types).

``emb`` and ``head`` defaults for 4-bit types were chosen by byte-level
perplexity on held-out text with both tiny fixtures (q4_0 search, rest fixed):
emb q8_0 instead of q4_0 cut perplexity by 1.0-1.4% for +1.6% file size, the
most per byte of any change tried; head q4_0 vs q8_0 moved it by -0.7..+0.3%
(noise), so the head keeps q8_0, the safer choice for the matrix that feeds
the softmax directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rwkv_edge.errors import ArgumentError
from rwkv_edge.gguf_schema import is_matrix
from rwkv_edge.quant import QK, QUANT_TYPES

FLOAT_TYPES = ("f32", "f16", "bf16")
TYPES = FLOAT_TYPES + QUANT_TYPES
METHODS = ("search", "rtn")

# requested type -> (emb type, head type)
_EMB_HEAD_DEFAULTS = {
    "f32": ("f32", "f32"),
    "f16": ("f16", "f16"),
    "bf16": ("bf16", "bf16"),
    "q8_0": ("q8_0", "q8_0"),
    "q4_0": ("q8_0", "q8_0"),
    "q4_1": ("q8_0", "q8_0"),
}


@dataclass
class Recipe:
    """The storage decision for a whole model; ``overrides`` maps names to types."""

    type: str
    emb: str
    head: str
    method: str = "search"  # 4-bit scales: "search" (weighted) or "rtn" (ggml's)
    calibrated: bool = False
    overrides: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_recipe(
    qtype: str,
    *,
    emb: str | None = None,
    head: str | None = None,
    method: str = "search",
    calibrated: bool = False,
    overrides: dict[str, str] | None = None,
) -> Recipe:
    """A validated recipe for ``--type qtype`` with the measured emb/head defaults."""
    for what, t in (
        ("type", qtype),
        ("emb", emb),
        ("head", head),
        *(("override", v) for v in (overrides or {}).values()),
    ):
        if t is not None and t not in TYPES:
            raise ArgumentError(f"{what} {t!r} is not one of {', '.join(TYPES)}")
    if method not in METHODS:
        raise ArgumentError(f"method {method!r} is not one of {', '.join(METHODS)}")
    d_emb, d_head = _EMB_HEAD_DEFAULTS[qtype]
    return Recipe(qtype, emb or d_emb, head or d_head, method, calibrated, dict(overrides or {}))


def tensor_type(recipe: Recipe, name: str, shape: tuple[int, ...]) -> str:
    """The storage type of one tensor under ``recipe``."""
    if name in recipe.overrides:
        want = recipe.overrides[name]
    elif not is_matrix(name, shape):
        return "f32"
    elif name == "emb.weight":
        want = recipe.emb
    elif name == "head.weight":
        want = recipe.head
    else:
        want = recipe.type
    if want in QUANT_TYPES and (len(shape) < 1 or shape[-1] % QK):
        return "f16"
    return want
