"""Q8_0 / Q4_0 / Q4_1 in numpy against gguf.quants, ggml's reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from rwkv_edge import quant
from rwkv_edge.errors import FormatError, ShapeError
from rwkv_edge.tensors import Tensor

gguf = pytest.importorskip("gguf")
from gguf import quants as ref  # noqa: E402

FORMATS = {
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
    "q4_1": gguf.GGMLQuantizationType.Q4_1,
}


def _vectors() -> dict[str, np.ndarray]:
    """Named (rows, 64) float32 cases: every row is 2 blocks."""
    rng = np.random.default_rng(1234)
    cases = {
        "zeros": np.zeros((4, 64), np.float32),
        "random": rng.standard_normal((64, 64)).astype(np.float32),
        "scaled": (rng.standard_normal((32, 64)) * rng.exponential(1, (32, 1)) * 1e-3),
        "outlier": rng.standard_normal((8, 64)).astype(np.float32),
        "max_magnitude": np.full((2, 64), 65504.0, np.float32),  # the largest fp16 minimum
        "positive_max": np.abs(rng.standard_normal((8, 64))).astype(np.float32),
        "ties": (np.arange(64 * 4, dtype=np.float32).reshape(4, 64) % 17 - 8) * 0.5,
        "constant": np.full((2, 64), -3.25, np.float32),
        "tiny": np.full((2, 64), 1e-30, np.float32),
    }
    cases["outlier"][:, 5] = 1000.0
    cases["outlier"][:, 40] = -2000.0
    cases["max_magnitude"][1, ::2] *= -1
    return {k: np.asarray(v, np.float32) for k, v in cases.items()}


VECTORS = _vectors()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", VECTORS)
def test_quantize_bytes_equal_ggml(fmt: str, case: str) -> None:
    x = VECTORS[case]
    ours = quant.quantize(x, fmt)
    theirs = ref.quantize(x, FORMATS[fmt])
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    mismatch = np.flatnonzero(ours.reshape(-1) != theirs.reshape(-1))
    assert mismatch.size == 0, f"{fmt}/{case}: first differing byte {mismatch[:5]}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", VECTORS)
def test_dequantize_bits_equal_ggml(fmt: str, case: str) -> None:
    blocks = ref.quantize(VECTORS[case], FORMATS[fmt])
    ours = quant.dequantize(blocks, fmt, VECTORS[case].shape)
    theirs = ref.dequantize(blocks, FORMATS[fmt]).astype(np.float32)
    # compare bit patterns so NaN/inf from an overflowed scale must match too
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_error_is_bounded_by_the_step(fmt: str) -> None:
    x = VECTORS["random"]
    y = quant.dequantize(quant.quantize(x, fmt), fmt, x.shape)
    b = x.reshape(-1, 32)
    # half a step of rounding, plus the fp16 rounding of d (and m) times the largest code;
    # q4_0 clips the side opposite the max at +7, up to one whole step
    fp16 = 2.0**-11
    bound = {
        "q8_0": np.abs(b).max(1) / 127 * (0.5 + 127 * fp16),
        "q4_0": np.abs(b).max(1) / 8 * (1.0 + 8 * fp16),
        "q4_1": (b.max(1) - b.min(1)) / 15 * (0.5 + 15 * fp16) + np.abs(b.min(1)) * fp16,
    }
    err = np.abs(y - x).reshape(-1, 32).max(1)
    assert (err <= bound[fmt] + 1e-7).all()
    assert err.max() > 0.2 * bound[fmt].max()  # and it is not trivially zero
    assert quant.dequantize(quant.quantize(VECTORS["zeros"], fmt), fmt, (4, 64)).max() == 0.0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused_with_the_tensor_name(fmt: str, bad: float) -> None:
    x = VECTORS["random"].copy()
    x[3, 17] = bad
    with pytest.raises(FormatError, match=r"blocks\.7\.att\.key\.weight.*non-finite"):
        quant.quantize(x, fmt, name="blocks.7.att.key.weight")


@pytest.mark.parametrize("fmt", FORMATS)
def test_scales_beyond_fp16_are_refused(fmt: str) -> None:
    x = np.full((1, 32), 3e6, np.float32)  # q8_0 d = 23622, q4_* would be 375000 (or m = 3e6)
    x[0, 0] = -3e6
    if fmt == "q8_0":
        x *= 3
    with pytest.raises(FormatError, match=r"'big'.*overflows fp16"):
        quant.quantize(x, fmt, name="big")


def test_bad_shapes_and_sizes_are_refused() -> None:
    with pytest.raises(ShapeError, match="multiple of 32"):
        quant.quantize(np.zeros((2, 48), np.float32), "q8_0")
    with pytest.raises(ShapeError, match="unknown block format"):
        quant.quantize(np.zeros((2, 64), np.float32), "q3_k")
    with pytest.raises(FormatError, match="does not hold"):
        quant.dequantize(np.zeros(33, np.uint8), "q8_0", (1, 32))


def test_block_sizes_match_blocks_h() -> None:
    assert quant.BLOCK_BYTES == {"q8_0": 34, "q4_0": 18, "q4_1": 20}
    for fmt, qt in FORMATS.items():
        assert gguf.GGML_QUANT_SIZES[qt] == (quant.QK, quant.BLOCK_BYTES[fmt])


def test_tensor_to_f32_dequantizes_block_formats() -> None:
    x = VECTORS["random"]
    raw = quant.quantize(x, "q4_1")
    t = Tensor("w", x.shape, "q4_1", raw)
    assert np.array_equal(t.to_f32(), ref.dequantize(raw, FORMATS["q4_1"]))
