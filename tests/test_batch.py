"""Batched decode: ``Model.forward_batch`` advances B independent states by one token
each and gives exactly what B separate ``forward`` calls give.

"Exactly" is bit for bit, logits and states, wherever a batch's matrices run the same
arithmetic as single tokens: quantized weights on the ref and AVX2 sets, and on every
set below the GEMM threshold (8 rows), where a batch is one matvec per row. The token
shift and the WKV step read each row's own state, and the per-row steps do not depend
on the other rows, so only the matrices can differ. From 8 rows the AVX-512 GEMM sums a
row's superblocks in another order than its decode loop (and NEON's likewise,
model_check.c): last-bit differences, which int8 activation rounding can lift to a
quantization step, so such rows are held to REL_MAX of the logit range. Float matrices
agree to float rounding only: the AVX-512 set sums a single token's dot product in two
chains and a tile of tokens in one. The states start from different prompts, so a row
that read another row's state would show (off by whole units, not rounding).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import ArgumentError, Model, ShapeError, State, TokenError, c_backend_available

from .conftest import TEXT

TOKENS = list(TEXT.encode("utf-8"))

if c_backend_available():
    from rwkv_edge import _c_engine as c_engine
    from rwkv_edge import gguf_file
    from rwkv_edge.checkpoint import open_checkpoint

    ISAS = c_engine.supported_isas()
else:
    ISAS = []


@pytest.fixture(scope="module")
def files(tiny_v2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The v5.2 fixture as f32, q8_0, q4_0 and q4_1 GGUFs (C backend only)."""
    if not ISAS:
        pytest.skip("C extension not built")
    out = {}
    for fmt in ["f32", "q8_0", "q4_0", "q4_1"]:
        path = tmp_path_factory.mktemp("batch") / f"tiny-{fmt}.gguf"
        with open_checkpoint(tiny_v2) as ckpt:
            gguf_file.write_checkpoint_gguf(ckpt, path, None if fmt == "f32" else fmt)
        out[fmt] = path
    return out


def _primed_states(model: Model, n: int) -> list[State]:
    """n states, state b after the first 3 + b % 11 tokens of a text offset by b."""
    states = []
    for b in range(n):
        st = model.new_state()
        model.forward(TOKENS[b % 40 : b % 40 + 3 + b % 11], st)
        states.append(st)
    return states


GEMM_MIN_ROWS = 8  # RWE_GEMM_MIN_T of the SIMD sets
REL_MAX = 1e-2  # of a row's logit range, as model_check.c's teacher-forced checks
EXACT_ISAS = ("ref", "avx2")


def _budget(fmt: str, isa: str, n: int) -> tuple[float, float]:
    """(atol, rel) a batch of n rows is held to: (0, 0) is bit for bit."""
    if fmt == "f32":
        return 1e-5, 0.0
    if isa in EXACT_ISAS or n < GEMM_MIN_ROWS:
        return 0.0, 0.0
    return 0.0, REL_MAX


def _check_batch_equals_separate(
    model: Model, n: int, steps: int = 3, atol: float = 0, rel: float = 0
) -> None:
    """Bit for bit with atol = rel = 0; else logits within atol (absolute) or rel of
    each row's logit range."""
    batch = _primed_states(model, n)
    alone = [s.copy() for s in batch]
    for step in range(steps):
        toks = [TOKENS[(7 * b + step) % len(TOKENS)] for b in range(n)]
        got = model.forward_batch(toks, batch)
        assert got.shape == (n, model.config.n_vocab) and got.dtype == np.float32
        for b in range(n):
            want = model.forward([toks[b]], alone[b])
            msg = f"row {b} of {n}, step {step}"
            if rel:
                span = float(want.max() - want.min())
                assert float(np.abs(got[b] - want).max()) <= rel * span, msg
                alone[b].data[:] = batch[b].data  # go on from the batch's state
                continue
            np.testing.assert_allclose(got[b], want, rtol=0, atol=atol, err_msg=msg)
            np.testing.assert_allclose(batch[b].data, alone[b].data, rtol=0, atol=atol)
            if not atol:  # assert_allclose with atol 0 still lets -0.0 equal 0.0 and NaN NaN
                np.testing.assert_array_equal(got[b], want, err_msg=msg)


@pytest.mark.parametrize("isa", ISAS or [pytest.param("none", marks=pytest.mark.skip)])
@pytest.mark.parametrize("fmt", ["f32", "q8_0", "q4_0", "q4_1"])
def test_c_batch_is_bit_identical_to_separate_calls(
    fmt: str, isa: str, files: dict[str, Path]
) -> None:
    """B = 1, 5 (matvec per row) and 19 (past every set's GEMM threshold), 2 threads.

    The f32 tolerance: logits of this model span ~10, float rounding is ~1e-6 of that
    (measured 9.5e-7 on AVX-512); a row mixed up with another is off by whole units."""
    with Model.load(files[fmt], backend="c", threads=2, isa=isa) as model:
        for n in [1, 5, 19]:
            atol, rel = _budget(fmt, isa, n)
            _check_batch_equals_separate(model, n, atol=atol, rel=rel)


@pytest.mark.parametrize("isa", ISAS or [pytest.param("none", marks=pytest.mark.skip)])
def test_c_batch_on_the_demo_model(isa: str) -> None:
    """The built-in model (256 channels: whole superblocks and the AVX-512 GEMM's folded
    tail) in batches of 7 and 12: bit for bit on the exact sets, else within REL_MAX
    (measured on AVX-512: 0.053 of logits spanning ~20 after one step from zero states)."""
    with Model.load(backend="c", threads=2, isa=isa) as model:
        for n in [7, 12]:
            atol, rel = _budget("q8_0", isa, n)
            _check_batch_equals_separate(model, n, steps=2, atol=atol, rel=rel)


def test_c_batch_larger_than_a_chunk(files: dict[str, Path]) -> None:
    """300 states: the C core runs them as chunks of 256 rows and 44."""
    with Model.load(files["q8_0"], backend="c", threads=2) as model:
        isa = str(getattr(model.engine, "isa", "ref"))
        atol, rel = _budget("q8_0", isa, 300)
        _check_batch_equals_separate(model, 300, steps=1, atol=atol, rel=rel)


# RWKV_EDGE_BACKENDS=c limits the run (tools/sanitize.sh runs only the C engine)
NUMBA = "numba" in os.environ.get("RWKV_EDGE_BACKENDS", "numba,c").split(",")


@pytest.mark.skipif(not NUMBA, reason="RWKV_EDGE_BACKENDS excludes numba")
def test_numba_batch_equals_separate_calls(tiny_v2: Path) -> None:
    with Model.load(tiny_v2, backend="numba") as model:
        _check_batch_equals_separate(model, 4, steps=2)


@pytest.mark.parametrize("backend", [*(["numba"] if NUMBA else []), *(["c"] if ISAS else [])])
def test_bad_batches_are_refused_before_any_state_moves(backend: str, tiny_v2: Path) -> None:
    with Model.load(tiny_v2, backend=backend, threads=1) as model:
        states = _primed_states(model, 3)
        before = [s.copy() for s in states]
        with pytest.raises(ShapeError, match="3 states"):
            model.forward_batch([1, 2], states)
        with pytest.raises(ArgumentError, match="share memory"):
            model.forward_batch([1, 2, 3], [states[0], states[1], states[0]])
        with pytest.raises(TokenError, match="out of range"):
            model.forward_batch([1, 2, 256], states)
        with pytest.raises(ArgumentError, match="empty"):
            model.forward_batch([], [])
        for s, b in zip(states, before, strict=True):
            assert s == b
        model.forward_batch([1, 2, 3], states)  # and the model still works
        assert all(s != b for s, b in zip(states, before, strict=True))
