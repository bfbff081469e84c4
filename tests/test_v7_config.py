"""RWKV-7 detection from names and shapes, the FLA layout, and the variants refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import Model
from rwkv_edge.config import detect_config
from rwkv_edge.errors import FormatError

from .reference7 import random_v7_checkpoint, torch
from .test_checkpoint import _write_safetensors

RANKS = {"w": 24, "a": 16, "v": 8, "g": 40}


def _sd(path: Path) -> dict[str, np.ndarray]:
    return {k: v.float().numpy() for k, v in torch.load(path, map_location="cpu").items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("v7cfg")
    return random_v7_checkpoint(
        d / "s.pth", n_layer=2, n_embd=128, head_size=32, n_vocab=97, ranks=RANKS, seed=1
    )


def _shapes(sd: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in sd.items()}


def test_ranks_come_from_shapes(small: Path) -> None:
    cfg = detect_config(_shapes(_sd(small)))
    assert cfg.is_v7 and cfg.version_code == 70
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size, cfg.n_ffn, cfg.n_vocab) == (
        2,
        128,
        4,
        32,
        512,
        97,
    )
    assert (cfg.lora_w, cfg.lora_a, cfg.lora_v, cfg.lora_g) == (24, 16, 8, 40)
    assert cfg.state_len == 2 * (2 * 128 + 4 * 32 * 32)


def test_layer0_value_lora_optional(small: Path) -> None:
    shapes = _shapes(_sd(small))
    with_v = dict(shapes)
    with_v.update({"blocks.0.att.v0": (1, 1, 128), "blocks.0.att.v1": (128, 8)})
    with_v["blocks.0.att.v2"] = (8, 128)
    assert detect_config(with_v) == detect_config(shapes)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"blocks.0.ffn.s_emb.weight": (97, 1024), "blocks.0.ffn.s1": (128, 32)}, "rwkv7a"),
        ({"blocks.1.ffn.s0": (128,)}, "rwkv7a"),
        ({"blocks.1.att.q_proj.weight": (128, 128)}, "not a plain RWKV-7"),
    ],
)
def test_variants_refused(small: Path, extra: dict, match: str) -> None:
    shapes = _shapes(_sd(small)) | extra
    with pytest.raises(FormatError, match=match):
        detect_config(shapes)


@pytest.mark.parametrize(
    ("name", "shape", "match"),
    [
        ("blocks.0.att.w2", (25, 128), "low-rank pair"),
        ("blocks.1.att.w2", (25, 128), r"expected \[24, 128\]"),
        ("blocks.1.att.a1", (128, 17), "shape"),
        ("blocks.0.att.r_k", (3, 32), "does not make n_embd"),
        ("blocks.1.ffn.value.weight", (128, 500), "expected"),
        ("blocks.0.ffn.key.weight", (), r"ffn\.key\.weight.*expected 2-D"),
        ("emb.weight", (97,), r"emb\.weight.*expected 2-D"),
    ],
)
def test_bad_shapes_named(small: Path, name: str, shape: tuple[int, ...], match: str) -> None:
    shapes = _shapes(_sd(small))
    shapes[name] = shape
    with pytest.raises(FormatError, match=match):
        detect_config(shapes)


def test_missing_tensor_named(small: Path) -> None:
    shapes = _shapes(_sd(small))
    del shapes["blocks.1.att.k_a"]
    with pytest.raises(FormatError, match=r"blocks\.1\.att\.k_a"):
        detect_config(shapes)


def _blink_to_fla(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What flash-linear-attention's RWKV7ForCausalLM stores, written out independently."""
    top = {
        "emb.weight": "model.embeddings.weight",
        "ln_out.weight": "model.norm.weight",
        "ln_out.bias": "model.norm.bias",
        "head.weight": "lm_head.weight",
    }
    out: dict[str, np.ndarray] = {}
    for name, v in sd.items():
        if name in top:
            out[top[name]] = v
            continue
        _, i, part, rest = name.split(".", 3)
        base = f"model.layers.{i}."
        if part in ("ln0", "ln1", "ln2"):
            key = {"ln0": "pre_norm", "ln1": "attn_norm", "ln2": "ffn_norm"}[part]
            out[base + f"{key}.{rest}"] = v
        elif part == "ffn":
            out[base + f"ffn.{rest}"] = v.reshape(-1) if rest == "x_k" else v
        elif rest[:1] in "wavg" and rest[1:] in ("0", "1", "2"):
            lora = base + f"attn.{rest[0]}_lora.lora."
            if rest[1] == "0":
                out[lora + "2.bias"] = v.reshape(-1)
            else:
                out[lora + ("0.weight" if rest[1] == "1" else "2.weight")] = v.T.copy()
        elif rest.endswith(".weight") and rest.split(".")[0] in (
            "receptance",
            "key",
            "value",
            "output",
        ):
            proj = {"receptance": "r", "key": "k", "value": "v", "output": "o"}[rest.split(".")[0]]
            out[base + f"attn.{proj}_proj.weight"] = v
        elif rest.startswith("ln_x."):
            out[base + "attn.g_norm." + rest[5:]] = v
        else:
            out[base + "attn." + rest] = v.reshape(-1) if rest in ("k_k", "k_a") else v
    return out


def test_fla_safetensors_gives_same_logits(small: Path, tmp_path: Path) -> None:
    fla = _blink_to_fla(_sd(small))
    assert "model.layers.1.attn.w_lora.lora.0.weight" in fla
    d = tmp_path / "fla"
    d.mkdir()
    _write_safetensors(d / "model.safetensors", dict(reversed(list(fla.items()))))
    toks = [5, 17, 96, 0, 42, 42, 7]
    with Model.load(small, backend="numba") as a, Model.load(d, backend="numba") as b:
        assert a.config == b.config
        assert np.array_equal(a.forward(toks), b.forward(toks))


def test_v5_config_repr_unchanged_by_v7_fields() -> None:
    """Model.model_id hashes repr(config): v5 states saved before v7 support stay valid."""
    from rwkv_edge.config import ModelConfig

    cfg = ModelConfig("5.2", 8, 256, 4, 64, 768, 4096)
    assert repr(cfg) == (
        "ModelConfig(version='5.2', n_layer=8, n_embd=256, n_head=4, head_size=64, "
        "n_ffn=768, n_vocab=4096, ln_eps=1e-05, gn_eps=0.00064)"
    )
    assert cfg != ModelConfig("5.2", 8, 256, 4, 64, 768, 4096, lora_w=1)  # still compared
