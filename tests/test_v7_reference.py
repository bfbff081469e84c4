"""The numba RWKV-7 engine against the oracle (rwkv 0.8.32 RWKV_x070, CPU fp32, own process).

Budget (issue 20): fp32 logits within 1e-4 of the reference on random
checkpoints of real shapes, token by token and over a sequence; final states too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import Model, State
from rwkv_edge.errors import ArgumentError

from .reference7 import G1_RANKS, random_v7_checkpoint, reference7

TOL = 1e-4
ODD_RANKS = {"w": 17, "a": 9, "v": 5, "g": 33}


@pytest.fixture(scope="module")
def g1_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 layers of G1 0.1B's width and LoRA ranks (the vocab cut to keep the test quick)."""
    d = tmp_path_factory.mktemp("v7")
    return random_v7_checkpoint(d / "g1.pth", n_layer=2, n_embd=768, n_vocab=1000, seed=3)


def _tokens(n: int, vocab: int, seed: int = 1) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, n)]


def _check(model: Model, ours: np.ndarray, state: State, ref: np.ndarray, ref_state: list) -> None:
    spread = float(ref.max() - ref.min())
    assert spread > 1.0  # not degenerate: the logits really vary
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= TOL
    assert state.max_abs_diff(State.from_reference(model.config, ref_state)) <= TOL


def test_g1_shapes_rnn_mode_matches_reference(g1_shaped: Path) -> None:
    toks = _tokens(12, 1000)
    ref, ref_state = reference7(g1_shaped, toks, "rnn")
    with Model.load(g1_shaped, backend="numba") as model:
        c = model.config
        assert (c.version, c.n_head, c.head_size, c.n_ffn) == ("7.0", 12, 64, 3072)
        assert (c.lora_w, c.lora_a, c.lora_v, c.lora_g) == tuple(G1_RANKS.values())
        state = model.new_state()
        ours = np.stack([model.forward([t], state) for t in toks])
        _check(model, ours, state, ref, ref_state)


def test_g1_shapes_sequence_mode_matches_reference(g1_shaped: Path) -> None:
    toks = _tokens(24, 1000, seed=2)
    ref, ref_state = reference7(g1_shaped, toks, "seq")
    with Model.load(g1_shaped, backend="numba") as model:
        state = model.new_state()
        # Two chunks of unequal length: state and v_first handling cross the boundary.
        ours = np.concatenate(
            [
                model.forward(toks[:7], state, full_output=True),
                model.forward(toks[7:], state, full_output=True),
            ]
        )
        _check(model, ours, state, ref, ref_state)


def test_odd_ranks_bf16_and_layer0_value_lora(tmp_path: Path) -> None:
    """Odd LoRA ranks, a bf16 file (upcast before anything, as the reference does) and
    unused layer-0 v0/v1/v2 present: the reference ignores them, and so must we."""
    path = random_v7_checkpoint(
        tmp_path / "odd.pth",
        n_layer=3,
        n_embd=128,
        head_size=32,
        n_vocab=300,
        ranks=ODD_RANKS,
        n_ffn=448,
        layer0_v=True,
        dtype="bf16",
        seed=5,
    )
    toks = _tokens(20, 300, seed=4)
    ref, ref_state = reference7(path, toks, "seq")
    with Model.load(path, backend="auto") as model:
        c = model.config
        assert model.backend == "numba"
        assert (c.n_head, c.head_size, c.n_ffn) == (4, 32, 448)
        assert (c.lora_w, c.lora_a, c.lora_v, c.lora_g) == tuple(ODD_RANKS.values())
        state = model.new_state()
        _check(model, model.forward(toks, state, full_output=True), state, ref, ref_state)


def test_rnn_and_sequence_mode_agree_exactly(g1_shaped: Path) -> None:
    toks = _tokens(10, 1000, seed=7)
    with Model.load(g1_shaped, backend="numba") as model:
        s1, s2 = model.new_state(), model.new_state()
        seq = model.forward(toks, s1, full_output=True)
        rnn = np.stack([model.forward([t], s2) for t in toks])
        # Same kernels in the same order: identical bits, not just close.
        assert np.array_equal(seq, rnn)
        assert s1 == s2


def test_states_copy_save_load(g1_shaped: Path, tmp_path: Path) -> None:
    toks = _tokens(9, 1000, seed=8)
    with Model.load(g1_shaped, backend="numba") as model:
        state = model.new_state()
        model.forward(toks[:5], state)
        fork = state.copy()
        saved = model.save_state(state, tmp_path / "s.rwst")
        a = model.forward(toks[5:], state)
        b = model.forward(toks[5:], fork)
        c = model.forward(toks[5:], model.load_state(saved))
        assert np.array_equal(a, b) and np.array_equal(a, c)
        assert not np.array_equal(a, model.forward(toks[5:], model.new_state()))


def test_c_backend_refuses_v7_clearly(g1_shaped: Path) -> None:
    with pytest.raises(ArgumentError, match=r"RWKV-7.*backend='numba'"):
        Model.load(g1_shaped, backend="c")
