"""Facts defined once and read everywhere: the status-code -> exception map against the C
enum, which tensors are matrices, the embedding-LayerNorm rounding, the sampling defaults."""

from __future__ import annotations

import inspect
import re

import pytest

from rwkv_edge import errors, sampling
from rwkv_edge.gguf_schema import emb_ln_dtype, is_matrix

from .conftest import REPO


def header_statuses() -> dict[str, int]:
    """rwe_status's names and values as csrc/rwkv_edge.h declares them."""
    text = (REPO / "csrc" / "rwkv_edge.h").read_text()
    body = re.search(r"typedef enum rwe_status \{(.*?)\} rwe_status;", text, re.S)
    assert body, "no rwe_status enum in csrc/rwkv_edge.h"
    return {m[0]: int(m[1]) for m in re.findall(r"(RWE_\w+)\s*=\s*(\d+)", body.group(1))}


def test_every_c_status_has_its_exception() -> None:
    statuses = header_statuses()
    assert statuses.pop("RWE_OK") == 0
    assert len(statuses) >= 9
    assert set(errors.STATUS_ERRORS) == set(statuses.values())
    for name, value in statuses.items():
        cls = errors.STATUS_ERRORS[value]
        if name == "RWE_ERR_NOMEM":
            assert cls is MemoryError
        else:
            assert issubclass(cls, errors.RwkvEdgeError), name
            assert f"({name})" in (cls.__doc__ or ""), (name, cls)


def test_the_c_engine_raises_them() -> None:
    """The built extension's constants are the header's, and _check maps each to its class."""
    c_engine = pytest.importorskip("rwkv_edge._c_engine")
    for name, value in header_statuses().items():
        assert getattr(c_engine.lib, name) == value, name
        if value:
            with pytest.raises(errors.STATUS_ERRORS[value]):
                c_engine._check(value)
    c_engine._check(0)


@pytest.mark.parametrize(
    ("name", "shape", "want"),
    [
        ("emb.weight", (65536, 768), True),
        ("head.weight", (65536, 768), True),
        ("blocks.3.att.key.weight", (768, 768), True),
        ("blocks.3.att.gate.weight", (768, 768), True),
        ("blocks.3.ffn.value.weight", (768, 2688), True),
        ("blocks.0.ln0.weight", (768,), False),
        ("blocks.3.ln1.weight", (768,), False),
        ("blocks.3.att.ln_x.weight", (768,), False),
        ("blocks.3.att.ln_x.weight", (12, 64), False),  # a norm, whatever its shape
        ("blocks.3.att.time_decay", (12, 64), False),  # 2-D in v5.2, a parameter
        ("blocks.3.att.time_faaaa", (12, 64), False),
        ("blocks.3.att.time_mix_k", (1, 1, 768), False),
        ("blocks.3.att.key.bias", (768, 768), False),
    ],
)
def test_is_matrix(name: str, shape: tuple[int, ...], want: bool) -> None:
    assert is_matrix(name, shape) is want


def test_quantizer_and_float_writer_share_the_matrix_rule() -> None:
    from rwkv_edge import gguf_file  # the float GGUF writer (write_checkpoint_gguf)

    recipe = pytest.importorskip("rwkv_edge.quantize.recipe")
    assert gguf_file.S.is_matrix is recipe.is_matrix is is_matrix


def test_emb_ln_dtype() -> None:
    assert emb_ln_dtype({}, "bf16") == "bf16"
    assert emb_ln_dtype({}, "f16") == "f16"
    assert emb_ln_dtype({}, "f32") == "f32"
    assert emb_ln_dtype({}, "q8_0") == "f32"  # a quantized embedding without metadata
    assert emb_ln_dtype({"emb_ln_dtype": "bf16"}, "q8_0") == "bf16"  # a converted file
    assert emb_ln_dtype({"emb_ln_dtype": "f32"}, "bf16") == "f32"


def test_sampling_defaults_have_one_source() -> None:
    from rwkv_edge.cli import chat_cmd, run_cmd

    from rwkv_edge.generate import generate

    d = sampling.DEFAULTS
    assert (d.temperature, d.top_p, d.top_k) == (1.0, 0.85, 0)  # ChatRWKV's PIPELINE_ARGS
    assert (d.presence_penalty, d.frequency_penalty, d.penalty_decay) == (0.2, 0.2, 0.996)
    params = inspect.signature(generate).parameters
    assert {n: params[n].default for n in sampling.OPTIONS} == d.options()
    assert d.options() == run_cmd.ONE_SHOT_DEFAULTS
    assert sampling.CHAT.options() == chat_cmd.CHAT_DEFAULTS
    chat = {"top_p": 0.3, "presence_penalty": 0.5, "frequency_penalty": 0.5}  # ChatRWKV chat.py
    assert sampling.CHAT.options() == {**d.options(), **chat}
