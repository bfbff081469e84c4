"""Misuse of the public API: every mistake ends in a documented rwkv_edge exception,
and the model keeps giving the same answers afterwards. Run for every backend built.

The documented types (rwkv_edge/errors.py): TokenError for ids outside the
vocabulary, ArgumentError for empty input and closed models, ShapeError for a
wrong dtype/shape/length of tokens or state.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rwkv_edge import (
    ArgumentError,
    IoError,
    Model,
    RwkvEdgeError,
    ShapeError,
    State,
    TokenError,
    UnsupportedIsaError,
    c_backend_available,
)
from rwkv_edge.tokenizer import ByteTokenizer

# RWKV_EDGE_BACKENDS=c limits the run (tools/sanitize.sh runs only the C engine)
BACKENDS = [
    b
    for b in ["numba", *(["c"] if c_backend_available() else [])]
    if b in os.environ.get("RWKV_EDGE_BACKENDS", "numba,c").split(",")
]
PROMPT = [84, 104, 101, 32, 111, 108, 100]  # "The old"


@pytest.fixture(scope="module", params=BACKENDS)
def model(request: pytest.FixtureRequest, tiny_v2: Path) -> Iterator[Model]:
    m = Model.load(tiny_v2, backend=request.param, threads=1)
    yield m
    m.close()


@pytest.fixture(scope="module")
def expected(model: Model) -> np.ndarray:
    """Logits of PROMPT from a fresh state, taken before any misuse."""
    return model.forward(PROMPT, model.new_state())


def _still_usable(model: Model, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(model.forward(PROMPT, model.new_state()), expected)


BAD_TOKENS: dict[str, tuple[Any, type[RwkvEdgeError], str]] = {
    # name: (tokens, exception, words in its message)
    "vocab_size": ([1, 256], TokenError, "256"),
    "negative": ([-1], TokenError, "-1"),
    "int64_max": (np.array([2**63 - 1]), TokenError, "out of range"),
    "uint64_huge": (np.array([2**64 - 1], np.uint64), TokenError, "out of range"),
    "wraps_to_valid_int32": (np.array([2**32 + 65]), TokenError, "out of range"),
    "python_bigint": ([2**80], ShapeError, "integers"),
    "empty_list": ([], ArgumentError, "empty"),
    "empty_array": (np.zeros(0, np.int32), ArgumentError, "empty"),
    "float": ([1.0, 2.0], ShapeError, "integers"),
    "bool": ([True], ShapeError, "integers"),
    "string": ("hello", ShapeError, "integers"),
    "none": (None, ShapeError, "integers"),
    "two_d": (np.ones((2, 2), np.int32), ShapeError, "1-D"),
    "ragged": ([[1], [2, 3]], ShapeError, "tokens"),
}
XFAIL_TOKENS: dict[str, str] = {}  # none open (ragged input was fixed in model.py)


@pytest.mark.parametrize("name", list(BAD_TOKENS))
def test_bad_tokens(
    name: str, model: Model, expected: np.ndarray, request: pytest.FixtureRequest
) -> None:
    if name in XFAIL_TOKENS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=XFAIL_TOKENS[name]))
    tokens, exc, words = BAD_TOKENS[name]
    state = model.new_state()
    before = state.data.copy()
    with pytest.raises(exc, match=words):
        model.forward(tokens, state)
    np.testing.assert_array_equal(state.data, before)  # a refused call changes nothing
    _still_usable(model, expected)


def test_nan_and_inf_state(model: Model, expected: np.ndarray) -> None:
    """Garbage in, garbage out, but no crash, and the next fresh state is clean."""
    for bad in (np.nan, np.inf, -np.inf, 3e38):
        state = model.new_state()
        state.data[:] = bad
        out = model.forward(PROMPT, state)
        assert out.shape == expected.shape and out.dtype == np.float32
    _still_usable(model, expected)


def test_state_of_another_shape(model: Model, expected: np.ndarray, tiny_v1: Path) -> None:
    other = Model.load(tiny_v1, backend=model.backend)
    try:
        if other.config == model.config:
            pytest.skip("the two fixtures have the same shape")
        with pytest.raises(ShapeError, match="another"):
            model.forward(PROMPT, other.new_state())
    finally:
        other.close()
    with pytest.raises(ArgumentError, match="State"):
        model.forward(PROMPT, model.new_state().data)  # a bare array, not a State
    _still_usable(model, expected)


def test_state_constructor_checks(model: Model) -> None:
    n = model.config.state_len
    for data in (
        np.zeros(n, np.float64),
        np.zeros(n - 1, np.float32),
        np.zeros((1, n), np.float32),
    ):
        with pytest.raises(ShapeError, match="float32"):
            State(model.config, data)


# A State's ``data`` is a public attribute; a caller can replace it with an
# array an engine would misread, or (numba, which does not bounds-check) write
# past the end of. Model.forward must refuse these before any engine runs.
BAD_STATE_DATA: dict[str, Callable[[int], np.ndarray]] = {
    "too_short": lambda n: np.zeros(10, np.float32),
    "float16": lambda n: np.zeros(n, np.float16),
    "float64": lambda n: np.zeros(n, np.float64),
    "strided": lambda n: np.zeros(2 * n, np.float32)[::2],
    "read_only": lambda n: np.frombuffer(bytes(4 * n), np.float32),
}


class _EngineReached(Exception):
    pass


@pytest.mark.parametrize("case", list(BAD_STATE_DATA))
def test_replaced_state_data_is_refused_before_the_engine(
    case: str, model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reached(*_args: object) -> None:
        raise _EngineReached(case)

    state = model.new_state()
    state.data = BAD_STATE_DATA[case](model.config.state_len)
    monkeypatch.setattr(model.engine, "forward", reached)
    with pytest.raises(ShapeError):
        model.forward(PROMPT, state)


@pytest.mark.skipif("c" not in BACKENDS, reason="the C extension is not built")
@pytest.mark.parametrize("case", list(BAD_STATE_DATA))
def test_c_engine_refuses_replaced_state_data(case: str, tiny_v2: Path) -> None:
    """The same through a real C model: refused, and the model still runs."""
    with Model.load(tiny_v2, backend="c", threads=1) as m:
        state = m.new_state()
        state.data = BAD_STATE_DATA[case](m.config.state_len)
        with pytest.raises(ShapeError):
            m.forward(PROMPT, state)
        assert m.forward(PROMPT).shape == (m.config.n_vocab,)


def _check_closed(path: Path, backend: str) -> None:
    m = Model.load(path, backend=backend)
    state = m.new_state()
    m.close()
    m.close()  # twice is fine
    calls: list[Callable[[], object]] = [
        lambda: m.forward(PROMPT, state),
        m.new_state,
        lambda: m.forward(PROMPT),
    ]
    for call in calls:
        with pytest.raises(ArgumentError, match="closed"):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_model(backend: str, tiny_v2: Path) -> None:
    _check_closed(tiny_v2, backend)
    with Model.load(tiny_v2, backend=backend) as again:  # the process is fine
        assert again.forward(PROMPT).shape == (again.config.n_vocab,)


def test_bad_load_arguments(tiny_v2: Path, tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="backend"):
        Model.load(tiny_v2, backend="cuda")
    with pytest.raises(IoError):
        Model.load(tmp_path / "missing.pth", backend="numba")
    if "c" in BACKENDS:
        with pytest.raises(UnsupportedIsaError):
            Model.load(tiny_v2, backend="c", isa="sse9")
        with pytest.raises(ArgumentError, match="threads"):
            Model.load(tiny_v2, backend="c", threads=-1)
        with pytest.raises(ArgumentError, match="threads"):
            Model.load(tiny_v2, backend="c", threads=100_000)


def test_full_output_shapes(model: Model, expected: np.ndarray) -> None:
    one = model.forward(PROMPT[:1], model.new_state(), full_output=True)
    assert one.shape == (1, model.config.n_vocab)
    many = model.forward(PROMPT, model.new_state(), full_output=True)
    assert many.shape == (len(PROMPT), model.config.n_vocab)
    np.testing.assert_allclose(many[-1], expected, rtol=0, atol=1e-4)


def test_state_file_from_another_model(model: Model, tiny_v1: Path, tmp_path: Path) -> None:
    state_io = pytest.importorskip("rwkv_edge.state_io")
    from rwkv_edge import FormatError

    other = Model.load(tiny_v1, backend="numba")
    try:
        saved = tmp_path / "other.state"
        state_io.save_state(other.new_state(), saved, other)
        with pytest.raises(FormatError, match="model"):
            state_io.load_state(saved, model)
    finally:
        other.close()
    garbage = tmp_path / "garbage.state"
    garbage.write_bytes(b"\0" * 100)
    with pytest.raises(FormatError):
        state_io.load_state(garbage, model)


# ---------------------------------------------------------------------------
# Issue 18: misuse that raised raw TypeError/IndexError/RuntimeError, or was silent
# ---------------------------------------------------------------------------


def test_state_layer_index(model: Model) -> None:
    st = model.new_state()
    for bad in (99, -1, "0", 1.0):
        with pytest.raises(ArgumentError):
            st.layer(bad)  # type: ignore[arg-type]
    assert st.layer(0).att_x.shape == (model.config.n_embd,)


def test_state_of_another_model_is_refused_until_adopted(
    model: Model, expected: np.ndarray, tmp_path: Path
) -> None:
    """Same shape, another file: forward refuses its state; adopt_state carries it over."""
    import shutil

    twin_path = tmp_path / f"twin{model.path.suffix}"
    shutil.copy(model.path, twin_path)
    with twin_path.open("r+b") as f:  # a different file of the same shape: another model id
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\0")
    with Model.load(twin_path, backend=model.backend, threads=1) as twin:
        assert twin.model_id != model.model_id
        foreign = twin.new_state()
        with pytest.raises(ArgumentError, match="adopt_state"):
            model.forward(PROMPT, foreign)
        adopted = model.adopt_state(foreign)
        assert adopted.model_id == model.model_id
        np.testing.assert_array_equal(model.forward(PROMPT, adopted), expected)
    _still_usable(model, expected)


def test_save_state_meta_must_be_json(model: Model, tmp_path: Path) -> None:
    st = model.new_state()
    for meta in ({"a": object()}, {"a": {1, 2}}, [1, 2]):
        with pytest.raises(ArgumentError, match="meta"):
            model.save_state(st, tmp_path / "s.state", meta=meta)  # type: ignore[arg-type]
        assert not list(tmp_path.iterdir())  # nothing written, not even a temp file
    model.save_state(st, tmp_path / "s.state", meta={"a": [1, "x", None]})


BAD_GENERATE: dict[str, dict[str, Any]] = {
    "seed_str": {"seed": "x"},
    "seed_negative": {"seed": -1},
    "seed_float": {"seed": 1.5},
    "unknown_option": {"bogus": 1},
    "stop_empty": {"stop": [""]},
    "stop_not_str": {"stop": [1]},
    "max_tokens_str": {"max_tokens": "9"},
    "max_tokens_float": {"max_tokens": 1.5},
    "temperature_str": {"temperature": "hot"},
    "top_p_nan": {"top_p": float("nan")},
    "top_k_float": {"top_k": 2.5},
    "chunk_len_zero": {"chunk_len": 0},
    "logit_bias_str_key": {"logit_bias": {"a": 1.0}},
    "logit_bias_not_mapping": {"logit_bias": [1, 2]},
    "banned_str": {"banned_tokens": ["a"]},
    "banned_int": {"banned_tokens": 5},
    "banned_everything": {"banned_tokens": list(range(256))},
    "bias_everything_away": {"logit_bias": {i: float("-inf") for i in range(256)}},
    "on_progress_not_callable": {"on_progress": 3},
}


@pytest.mark.parametrize("name", list(BAD_GENERATE))
def test_generate_bad_options(name: str, model: Model, expected: np.ndarray) -> None:
    model.tokenizer = ByteTokenizer()
    with pytest.raises(ArgumentError):
        list(model.generate("The", **{"max_tokens": 2, **BAD_GENERATE[name]}))
    _still_usable(model, expected)


def test_generate_none_stop_and_int_prompt(model: Model) -> None:
    model.tokenizer = ByteTokenizer()
    out = "".join(model.generate([84, 104], max_tokens=3, temperature=0, stop=None))
    assert len(out.encode()) >= 1
    with pytest.raises(ArgumentError):
        list(model.generate([84, 1.5], max_tokens=1))  # type: ignore[list-item]
    with pytest.raises(ArgumentError):
        list(model.generate(["T"], max_tokens=1))  # type: ignore[list-item]


def test_generate_stop_str_alone_is_one_stop_string(model: Model) -> None:
    model.tokenizer = ByteTokenizer()
    gen = model.generate("The", max_tokens=40, temperature=0, stop="e")
    text = "".join(gen)
    assert "e" not in text
    assert gen.stats.stop_reason in ("stop", "length", "eos")


def test_tokenizer_misuse() -> None:
    from rwkv_edge.tokenizer import WorldTokenizer

    for tok in (ByteTokenizer(), WorldTokenizer()):
        for ids in (["x"], [1.5], [None], "abc", 5, [True], ["x"] * 300, [1.5] * 300):
            with pytest.raises(TokenError):
                tok.decode(ids)  # type: ignore[arg-type]
        with pytest.raises(TokenError, match="surrogate"):
            tok.encode("a\ud800b")
        with pytest.raises(TokenError):
            tok.encode(b"abc")  # type: ignore[arg-type]
        # PEP 383: surrogate escapes are the undecodable bytes of argv/stdin, kept as bytes
        assert tok.decode_bytes(tok.encode("a\udcffb")) == b"a\xffb"
