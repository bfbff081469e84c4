"""RWKV-7 GGUF files: the schema (arch rwkv7), the recipe, the quantizer, info, and the
numba engine on quantized files; the C engine refuses them clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rwkv_edge.quantize.convert import convert
from rwkv_edge.quantize.evaluate import perplexity
from rwkv_edge.quantize.recipe import make_recipe

from rwkv_edge import Model, c_backend_available
from rwkv_edge.checkpoint import open_checkpoint
from rwkv_edge.errors import ArgumentError, VersionError

DATA = Path(__file__).resolve().parent / "data"
CKPT = DATA / "demo_rwkv7_small_fp16.pth"
SPM = DATA.parent.parent / "tools" / "train" / "out" / "demo_spm.model"

FLOAT_IN_V7 = ("x_r", "x_w", "w0", "w1", "w2", "a0", "a1", "a2", "v0", "v1", "v2", "g1", "g2")
FLOAT_IN_V7 += ("k_k", "k_a", "r_k", "ln_x.weight")
QUANTIZED_IN_V7 = ("att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("v7gguf")
    tok = ("sentencepiece", SPM.read_bytes())
    out = {}
    for qtype, method in (("f32", "rtn"), ("q8_0", "rtn"), ("q4_0", "rtn")):
        out[qtype] = d / f"{qtype}.gguf"
        convert(CKPT, out[qtype], make_recipe(qtype, method=method), tokenizer=tok)
    return out


def _heldout(model: Model, n: int) -> list[int]:
    text = (DATA / "demo_heldout.txt").read_text(encoding="utf-8")[:8000]
    ids = [int(i) for i in model.tokenizer.encode(text)]
    assert len(ids) > n
    return ids[:n]


def test_metadata_and_tensor_types(files: dict[str, Path]) -> None:
    with open_checkpoint(files["q4_0"]) as ck, open_checkpoint(CKPT) as src:
        assert ck.config == src.config and ck.config.is_v7
        assert ck.metadata["general.architecture"] == "rwkv7"
        assert ck.metadata["rwkv7.version"] == 70
        assert ck.metadata["rwkv7.gate_lora_rank"] == 64
        assert ck.metadata["emb_ln_dtype"] == "f32"
        for i in range(1, ck.config.n_layer):
            p = f"blocks.{i}."
            for n in FLOAT_IN_V7:
                assert ck[p + "att." + n].dtype == "f32", n
            for n in QUANTIZED_IN_V7:
                assert ck[p + n + ".weight"].dtype == "q4_0", n
            assert ck[p + "att.x_g"].shape == (128,)  # [1, 1, C] stored squeezed
            assert ck[p + "att.r_k"].shape == (2, 64)
            assert ck[p + "ffn.x_k"].dtype == "f32"
        assert ck["emb.weight"].dtype == ck["head.weight"].dtype == "q8_0"


def test_f32_gguf_runs_bit_identical_to_the_checkpoint(files: dict[str, Path]) -> None:
    with Model.load(CKPT, backend="numba") as a, Model.load(files["f32"]) as b:
        assert b.backend == "numba"  # auto picks numba for v7
        toks = _heldout(b, 40)
        sa, sb = a.new_state(), b.new_state()
        assert np.array_equal(a.forward(toks, sa), b.forward(toks, sb))
        assert sa == sb


def test_quantized_perplexity_close_to_float(files: dict[str, Path]) -> None:
    ppl = {}
    for qtype, path in files.items():
        with Model.load(path, backend="numba") as m:
            ppl[qtype] = perplexity(m, _heldout(m, 384), chunk=128).ppl
    assert 10 < ppl["f32"] < 200  # a trained model, not noise (vocab 4096)
    assert abs(ppl["q8_0"] / ppl["f32"] - 1) < 0.01
    assert abs(ppl["q4_0"] / ppl["f32"] - 1) < 0.05
    assert ppl["q4_0"] != ppl["q8_0"]


def test_generate_and_states_on_quantized_file(files: dict[str, Path], tmp_path: Path) -> None:
    with Model.load(files["q8_0"]) as m:
        state = m.new_state()
        text = "".join(m.generate("And God said", state, max_tokens=8, temperature=0, seed=1))
        assert text.strip()
        saved = m.save_state(state, tmp_path / "turn.rwst")
        again = m.load_state(saved)
        assert again == state


def test_c_engine_refuses_v7_gguf(files: dict[str, Path]) -> None:
    with pytest.raises(ArgumentError, match="RWKV-7"):
        Model.load(files["q8_0"], backend="c")
    if c_backend_available():  # the C loader itself names the architecture
        from rwkv_edge._c_engine import CEngine

        with pytest.raises(VersionError, match="rwkv7"):
            CEngine.open(files["q8_0"])


def test_info_shows_v7(files: dict[str, Path]) -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.main import main

    res = CliRunner().invoke(main, ["info", str(files["q8_0"])])
    assert res.exit_code == 0, res.output
    assert "version: 7.0" in res.output
    assert "lora_ranks: w 32, a 32, v 32, g 64" in res.output


def test_calibration_refused_for_v7() -> None:
    from rwkv_edge.quantize.calibration import collect_stats

    with open_checkpoint(CKPT) as ck, pytest.raises(ArgumentError, match="RWKV-7"):
        collect_stats(lambda n: ck[n].to_f32(), ck.config, [1, 2, 3])


@pytest.mark.parametrize(
    ("change", "match"),
    [({"lora_w": 31}, "disagree on lora_w"), ({"version": "5.2"}, "disagree on version")],
)
def test_metadata_that_lies_about_v7_is_refused(tmp_path: Path, change: dict, match: str) -> None:
    import dataclasses

    from rwkv_edge.errors import FormatError
    from rwkv_edge.gguf_file import write_gguf

    with open_checkpoint(CKPT) as ck:
        bad = dataclasses.replace(ck.config, **change)
        tensors = [(n, "f32", t.to_f32()) for n, t in ck.items()]
    dst = write_gguf(tmp_path / "bad.gguf", bad, tensors).path
    with pytest.raises(FormatError, match=match):
        open_checkpoint(dst)
