"""The C engine (csrc/model.c through rwkv_edge._c_engine) against BlinkDL's reference.

Budgets:
  * f32 fixtures: max |logit diff| <= 1e-4 at every position, RNN and
    sequence mode, every kernel set this CPU runs; final state <= 1e-4.
  * quantized files: each SIMD kernel set within 1e-3 of the logit range of
    the ref kernel set (same quantized weights, different summation order).
  * q8_0 vs f32 on the tiny v5.2 fixture: within Q8_BUDGET of the logit range.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from rwkv_edge import (
    ArgumentError,
    FormatError,
    IoError,
    Model,
    RwkvEdgeError,
    ShapeError,
    State,
    TokenError,
    UnsupportedIsaError,
    VersionError,
    gguf_file,
    open_checkpoint,
)

from .conftest import TEXT

c_engine = pytest.importorskip("rwkv_edge._c_engine")
CEngine = c_engine.CEngine

FIXTURE_TOL = 1e-4
SIMD_REL_TOL = 1e-3
# q8_0 weights + q8_0 activations vs f32 on the tiny v5.2 fixture over 292
# tokens, relative to the logit range: measured 1.46e-2 (0.30 absolute,
# top-1 agreement 97.9%). The reference's own int8 is ~0.19 absolute
# (RWKV5_SPEC.md 5.6), so this is the usual int8 error, with 2x headroom.
Q8_BUDGET = 3e-2
ISAS = c_engine.supported_isas()
SIMD_ISAS = [i for i in ISAS if i != "ref"]
TOKENS = list(TEXT.encode("utf-8"))
assert len(TOKENS) >= 200

F32 = npt.NDArray[np.float32]


def _gguf(tmp_path_factory: pytest.TempPathFactory, src: Path, matrix_type: str | None) -> Path:
    out = tmp_path_factory.mktemp("gguf") / f"{src.stem}-{matrix_type or 'f32'}.gguf"
    with open_checkpoint(src) as ckpt:
        gguf_file.write_checkpoint_gguf(ckpt, out, matrix_type)
    return out


@pytest.fixture(scope="module")
def files(
    tiny_v2: Path, tiny_v1: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The fixtures as f32 GGUFs, plus q8_0 / q4_0 / q4_1 versions of the v5.2 one."""
    return {
        "tiny_v2": _gguf(tmp_path_factory, tiny_v2, None),
        "tiny_v1": _gguf(tmp_path_factory, tiny_v1, None),
        "q8_0": _gguf(tmp_path_factory, tiny_v2, "q8_0"),
        "q4_0": _gguf(tmp_path_factory, tiny_v2, "q4_0"),
        "q4_1": _gguf(tmp_path_factory, tiny_v2, "q4_1"),
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[F32, State]]:
    """rwkv pip's logits at every position and its final state, per fixture.

    Its sequence mode (one call; its RNN mode takes ~40 s here), which agrees
    with its RNN mode to ~1e-5 (RWKV5_SPEC.md section 3).
    """
    from .conftest import TINY_V1, TINY_V2
    from .reference import reference_seq

    out = {}
    for name, path in (("tiny_v2", TINY_V2), ("tiny_v1", TINY_V1)):
        logits, parts = reference_seq(path, TOKENS)
        with CEngine.open(path, threads=1, isa="ref") as e:
            out[name] = (logits, State.from_reference(e.config, parts))
    return out


def _run_rnn(e: CEngine, tokens: list[int]) -> tuple[F32, F32]:
    state = e.initial_state()
    rows = [e.forward(np.array([t], np.int32), state, False) for t in tokens]
    return np.stack(rows), state


def _run_chunks(e: CEngine, tokens: list[int], chunk: int) -> tuple[F32, F32]:
    """eval_sequence over consecutive chunks, every position's logits."""
    state = e.initial_state()
    rows = [
        e.forward(np.array(tokens[i : i + chunk], np.int32), state, True)
        for i in range(0, len(tokens), chunk)
    ]
    return np.concatenate(rows), state


# --------------------------------------------------------------- exactness


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["tiny_v2", "tiny_v1"])
def test_rnn_mode_matches_reference(
    name: str, isa: str, files: dict[str, Path], reference: dict[str, tuple[F32, State]]
) -> None:
    ref_logits, ref_state = reference[name]
    with CEngine.open(files[name], threads=2, isa=isa) as e:
        logits, state = _run_rnn(e, TOKENS)
    assert np.abs(logits - ref_logits).max() <= FIXTURE_TOL
    assert np.abs(state - ref_state.data).max() <= FIXTURE_TOL
    assert (logits.argmax(1) == ref_logits.argmax(1)).all()


@pytest.mark.parametrize("chunk", [1, 7, 64, len(TOKENS)])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ["tiny_v2", "tiny_v1"])
def test_sequence_mode_matches_reference(
    name: str, isa: str, chunk: int, files: dict[str, Path], reference: dict[str, tuple[F32, State]]
) -> None:
    ref_logits, ref_state = reference[name]
    with CEngine.open(files[name], threads=2, isa=isa) as e:
        logits, state = _run_chunks(e, TOKENS, chunk)
    assert logits.shape == ref_logits.shape
    assert np.abs(logits - ref_logits).max() <= FIXTURE_TOL
    assert np.abs(state - ref_state.data).max() <= FIXTURE_TOL


def test_checkpoint_opens_directly(tiny_v2: Path, reference: dict[str, tuple[F32, State]]) -> None:
    """A .pth goes through the temporary-GGUF conversion, also via Model.load."""
    with Model.load(tiny_v2, backend="c", threads=1) as m:
        assert m.backend == "c"
        logits = m.forward(TOKENS[:50], full_output=True)
    assert np.abs(logits - reference["tiny_v2"][0][:50]).max() <= FIXTURE_TOL


def test_last_logits_equal_last_row_of_all(files: dict[str, Path]) -> None:
    with CEngine.open(files["tiny_v2"], threads=2, isa="ref") as e:
        s1, s2 = e.initial_state(), e.initial_state()
        all_rows = e.forward(np.array(TOKENS, np.int32), s1, True)
        last = e.forward(np.array(TOKENS, np.int32), s2, False)
    assert last.shape == (e.config.n_vocab,)
    assert np.abs(last - all_rows[-1]).max() <= 1e-5
    np.testing.assert_array_equal(s1, s2)


def test_null_logits_skip_head_same_state(files: dict[str, Path]) -> None:
    with CEngine.open(files["tiny_v2"], threads=2) as e:
        s1, s2 = e.initial_state(), e.initial_state()
        e.eval(np.array(TOKENS, np.int32), s1, None)
        for t in TOKENS:
            e.eval(np.array([t], np.int32), s2, None)
        s3 = e.initial_state()
        e.forward(np.array(TOKENS, np.int32), s3, False)
    np.testing.assert_array_equal(s1, s3)
    assert np.abs(s1 - s2).max() <= 1e-5  # chunked vs one by one: same math
    assert np.abs(s1).max() > 0


def test_threads_do_not_change_results(files: dict[str, Path]) -> None:
    results = []
    for n in (1, 2, 5):  # 5 rows-per-thread splits that are not multiples of the grain
        with CEngine.open(files["tiny_v2"], threads=n, isa="ref") as e:
            assert e.n_threads == n
            results.append(_run_chunks(e, TOKENS, 64)[0])
    assert np.abs(results[0] - results[1]).max() <= 1e-6
    assert np.abs(results[0] - results[2]).max() <= 1e-6
    with CEngine.open(files["tiny_v2"], threads=1, isa="ref") as e:
        e.set_threads(3)  # a new pool on a live model
        assert np.abs(_run_chunks(e, TOKENS, 64)[0] - results[0]).max() <= 1e-6
        with pytest.raises(ArgumentError, match="n_threads"):
            e.set_threads(100_000)
        assert e.n_threads == 3


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("fmt", ["q8_0", "q4_1"])
def test_quantized_threads_do_not_change_results(
    fmt: str, isa: str, files: dict[str, Path]
) -> None:
    """Bit for bit across thread counts, also after set_threads on a live
    model: chunks of 64 take the prefill GEMM (on AVX-512 over rows packed
    once, with a workspace per pool thread that set_threads must regrow)."""
    with CEngine.open(files[fmt], threads=3, isa=isa) as e:
        want = _run_chunks(e, TOKENS, 64)
    with CEngine.open(files[fmt], threads=1, isa=isa) as e:
        np.testing.assert_array_equal(_run_chunks(e, TOKENS, 64)[0], want[0])
        e.set_threads(3)
        got = _run_chunks(e, TOKENS, 64)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_concurrent_python_threads_share_a_model(files: dict[str, Path]) -> None:
    """Evals from several threads are serialised by the model's mutex: same answers."""
    with CEngine.open(files["tiny_v2"], threads=2) as e:
        expected = _run_rnn(e, TOKENS[:60])[0]
        got: list[F32] = [np.zeros(0, np.float32)] * 4

        def work(i: int) -> None:
            got[i] = _run_rnn(e, TOKENS[:60])[0]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for g in got:
        np.testing.assert_array_equal(g, expected)


def test_info_and_weight_bytes(files: dict[str, Path]) -> None:
    with CEngine.open(files["tiny_v2"], threads=1, isa="ref") as e:
        c = e.config
        assert (c.version, c.n_layer, c.n_embd, c.n_head, c.head_size) == ("5.2", 12, 64, 8, 8)
        assert e.state_len == c.state_len
        per_layer = (5 * c.n_embd * c.n_embd + 2 * c.n_ffn * c.n_embd + c.n_embd**2) * 4
        assert e.weight_bytes == c.n_layer * per_layer + c.n_vocab * c.n_embd * 4 + c.n_embd * 4
    with CEngine.open(files["q8_0"], threads=1, isa="ref") as e:
        per_layer = (6 * 64 * 64 + 2 * 256 * 64) // 32 * 34
        assert e.weight_bytes == 12 * per_layer + 256 * 64 // 32 * 34 + 64 // 32 * 34


# ----------------------------------------------------------- quantized files


@pytest.mark.parametrize("isa", SIMD_ISAS or [pytest.param("none", marks=pytest.mark.skip)])
@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1"])
def test_quantized_simd_matches_ref_kernels(fmt: str, isa: str, files: dict[str, Path]) -> None:
    """Teacher-forced: every step starts both kernel sets from the ref set's state.

    Activations are quantized to int8 per matmul, so a last-bit difference in
    a float sum occasionally lands an activation on the other side of a
    rounding boundary; on this 64-channel model one such flip moves the
    logits by up to ~3e-3 of their range, and the flip then persists in a
    free-running state. So: typical steps agree to float rounding (1e-5),
    and at most 5% of steps exceed the 1e-3 budget, none by more than 1e-2.
    """
    with (
        CEngine.open(files[fmt], threads=1, isa="ref") as ref,
        CEngine.open(files[fmt], threads=2, isa=isa) as simd,
    ):
        state = ref.initial_state()
        rel = []
        for t in TOKENS:
            tok = np.array([t], np.int32)
            simd_state = state.copy()
            want = ref.forward(tok, state, False)
            got = simd.forward(tok, simd_state, False)
            rel.append(np.abs(got - want).max() / float(want.max() - want.min()))
    rel_arr = np.array(rel)
    assert np.median(rel_arr) <= 1e-5
    assert (rel_arr > SIMD_REL_TOL).mean() <= 0.05
    assert rel_arr.max() <= 10 * SIMD_REL_TOL


def _teacher_forced(a: CEngine, b: CEngine, chunk: int) -> tuple[F32, F32]:
    """Per position: |b - a| / range(a) and whether the top-1 agrees, every
    chunk starting both from a's state."""
    state = a.initial_state()
    rel, top1 = [], []
    for i in range(0, len(TOKENS), chunk):
        toks = np.array(TOKENS[i : i + chunk], np.int32)
        b_state = state.copy()
        want = a.forward(toks, state, True)
        got = b.forward(toks, b_state, True)
        rel.extend(np.abs(got - want).max(1) / (want.max(1) - want.min(1)))
        top1.extend(got.argmax(1) == want.argmax(1))
    return np.array(rel), np.array(top1, np.float32)


@pytest.mark.parametrize("isa", SIMD_ISAS or [pytest.param("none", marks=pytest.mark.skip)])
@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1"])
def test_repacked_layout_matches_mapped_layout(
    fmt: str, isa: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel set with a layout of its own (lanes) copies the quantized matrices
    into it at load; RWKV_EDGE_REPACK=0 keeps the file's GGML blocks, read by
    the register tiles of x86_avx2.c at every length (no GEMM). Same weights,
    so the two agree as two kernel sets do (summation order only). RNN steps:
    the budget of test_quantized_simd_matches_ref_kernels. 37-token chunks
    (the repacked side's GEMM path and its remainders against the tiles): an
    int8 rounding flip in one row persists in the state for the chunk's later
    rows, so the bound is looser, as between any two kernel sets; measured on
    x86 on 300 other bytes (ref vs avx2, q4_1): median 2.5e-3, max 1.6e-2,
    top-1 98%; the two layouts, q4_1: median 4.3e-3, max 2.0e-2, top-1 98.3%."""
    monkeypatch.setenv("RWKV_EDGE_REPACK", "0")
    with CEngine.open(files[fmt], threads=2, isa=isa) as mapped:
        assert mapped.repacked_bytes == 0
        monkeypatch.delenv("RWKV_EDGE_REPACK")
        with CEngine.open(files[fmt], threads=2, isa=isa) as packed:
            if packed.repacked_bytes == 0:
                pytest.skip(f"the {isa} kernels read GGML blocks only")
            # every matrix but emb, each rounded up to 64 bytes: at most the bytes a
            # token reads, less emb's one row, plus 64 per matrix (97 matrices here)
            quantized = packed.weight_bytes - _row_bytes(fmt, 64)
            assert quantized <= packed.repacked_bytes < quantized + 97 * 64
            rel, _ = _teacher_forced(mapped, packed, 1)
            assert np.median(rel) <= 1e-5
            assert (rel > SIMD_REL_TOL).mean() <= 0.05
            assert rel.max() <= 10 * SIMD_REL_TOL
            rel, top1 = _teacher_forced(mapped, packed, 37)
            assert np.median(rel) <= 1e-2
            assert rel.max() <= 5e-2
            assert top1.mean() >= 0.95


def _row_bytes(fmt: str, n: int) -> int:
    return n // 32 * {"q8_0": 34, "q4_0": 18, "q4_1": 20}[fmt]


def test_reference_kernels_use_the_mapping(files: dict[str, Path]) -> None:
    with CEngine.open(files["q4_0"], threads=1, isa="ref") as e:
        assert e.repacked_bytes == 0


def test_q8_0_within_budget_of_f32(
    files: dict[str, Path], reference: dict[str, tuple[F32, State]]
) -> None:
    f32 = reference["tiny_v2"][0]
    with CEngine.open(files["q8_0"], threads=2, isa="ref") as e:
        q8 = _run_chunks(e, TOKENS, 64)[0]
    err = np.abs(q8 - f32).max() / float(f32.max() - f32.min())
    assert 0 < err <= Q8_BUDGET
    assert (q8.argmax(1) == f32.argmax(1)).mean() >= 0.95


# -------------------------------------------------- other checkpoint kinds


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_checkpoint_rounds_embedding_like_reference(dtype: str, tmp_path: Path) -> None:
    """bf16/f16 weights run as such; LN(emb) is rounded to that dtype (spec 5.3)."""
    from .reference import random_checkpoint, reference_rnn

    src = random_checkpoint(
        tmp_path / f"{dtype}.pth",
        version="5.2",
        n_layer=2,
        n_embd=64,
        head_size=16,
        n_vocab=96,
        dtype=dtype,
        seed=3,
    )
    toks = TOKENS[:40]
    toks = [t % 96 for t in toks]
    ref_logits, _ = reference_rnn(src, toks)
    with CEngine.open(src, threads=1, isa="ref") as e:
        logits = _run_rnn(e, toks)[0]
    assert np.abs(logits - ref_logits).max() <= FIXTURE_TOL
    # Without the rounding the difference is visible, so the check above can fail.
    unrounded = tmp_path / "f32emb.gguf"
    with open_checkpoint(src) as ck:
        gguf_file.write_checkpoint_gguf(ck, unrounded, emb_ln_dtype="f32")
    with CEngine.open(unrounded, threads=1, isa="ref") as e:
        assert np.abs(_run_rnn(e, toks)[0] - ref_logits).max() > 10 * FIXTURE_TOL


def test_v51_checkpoint_matches_reference(tmp_path: Path) -> None:
    from .reference import random_checkpoint, reference_rnn

    src = random_checkpoint(
        tmp_path / "v51.pth", version="5.1", n_layer=2, n_embd=64, head_size=16, n_vocab=256, seed=5
    )
    ref_logits, parts = reference_rnn(src, TOKENS[:60])
    with CEngine.open(src, threads=2) as e:
        assert e.config.version == "5.1"
        logits, state = _run_chunks(e, TOKENS[:60], 7)
        ref_state = State.from_reference(e.config, parts)
    span = float(ref_logits.max() - ref_logits.min())
    assert np.abs(logits - ref_logits).max() <= 1e-3 * span
    assert np.abs(state - ref_state.data).max() <= 1e-3


def test_time_state_is_the_initial_wkv_transposed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from .reference import random_checkpoint

    src = random_checkpoint(
        tmp_path / "ts.pth", version="5.2", n_layer=2, n_embd=32, head_size=8, n_vocab=64, seed=7
    )
    sd = torch.load(src)
    rng = np.random.default_rng(0)
    ts = [rng.standard_normal((4, 8, 8)).astype(np.float32) for _ in range(2)]
    for i in range(2):
        sd[f"blocks.{i}.att.time_state"] = torch.from_numpy(ts[i])
    torch.save(sd, src)
    with CEngine.open(src, threads=1) as e:
        st = State(e.config, e.initial_state())
    for i in range(2):
        np.testing.assert_array_equal(st.layer(i).wkv, ts[i].transpose(0, 2, 1))
        assert not st.layer(i).att_x.any() and not st.layer(i).ffn_x.any()


# ------------------------------------------------------------------ errors


def test_bad_calls_raise_and_leave_the_model_usable(files: dict[str, Path]) -> None:
    with CEngine.open(files["tiny_v2"], threads=2) as e:
        state = e.initial_state()
        good = e.forward(np.array(TOKENS[:5], np.int32), state.copy(), False)
        with pytest.raises(TokenError, match="out of range"):
            e.forward(np.array([1, 256], np.int32), state, False)
        with pytest.raises(TokenError):
            e.forward(np.array([-1], np.int32), state, False)
        assert not state.any()  # a failed call changes nothing
        with pytest.raises(ShapeError, match="state"):
            e.forward(np.array([1], np.int32), state[:-1].copy(), False)
        with pytest.raises(ShapeError, match="logits"):
            e.eval(np.array([1, 2], np.int32), state, np.zeros(256, np.float32), True)
        with pytest.raises(RwkvEdgeError, match="no tokens"):
            e.eval(np.zeros(0, np.int32), state, None)
        np.testing.assert_array_equal(e.forward(np.array(TOKENS[:5], np.int32), state, False), good)
        nan_state = np.full_like(state, np.nan)  # the caller's business, but no crash
        assert np.isnan(e.forward(np.array([1], np.int32), nan_state, False)).all()


def test_bad_files_raise_the_right_errors(files: dict[str, Path], tmp_path: Path) -> None:
    data = files["tiny_v2"].read_bytes()
    with pytest.raises(IoError, match="no such file"):
        CEngine.open(tmp_path / "missing.gguf")
    with pytest.raises(IoError, match="cannot open"):  # the C loader's own check
        CEngine._load(tmp_path / "missing.gguf", 1, 0)
    for cut in (3, 30, 200, 5000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut] if cut > 4 else b"GGUF"[:cut])
        with pytest.raises(FormatError):
            CEngine._load(bad, 1, 0)
    arch = tmp_path / "arch.gguf"
    arch.write_bytes(
        data.replace(
            b"\x05\x00\x00\x00\x00\x00\x00\x00rwkv5", b"\x05\x00\x00\x00\x00\x00\x00\x00rwkv6", 1
        )
    )
    with pytest.raises(VersionError, match="rwkv6"):
        CEngine.open(arch)
    with pytest.raises(UnsupportedIsaError):
        CEngine.open(files["tiny_v2"], isa="sse9")
    missing_isa = next((i for i in ("neon", "dotprod", "avx512", "avx2") if i not in ISAS), None)
    if missing_isa:
        with pytest.raises(UnsupportedIsaError):
            CEngine.open(files["tiny_v2"], isa=missing_isa)


def test_missing_tensor_is_named(tmp_path: Path, files: dict[str, Path]) -> None:
    data = files["tiny_v1"].read_bytes()
    name = b"blocks.3.ffn.key.weight"
    bad = tmp_path / "renamed.gguf"
    bad.write_bytes(data.replace(name, b"blocks.3.ffn.kez.weight", 1))
    with pytest.raises(FormatError, match=r"blocks\.3\.ffn\.key\.weight"):
        CEngine.open(bad)


def test_header_fuzz_never_crashes(files: dict[str, Path], tmp_path: Path) -> None:
    """Random byte flips in the header: the loader accepts or raises, never crashes."""
    data = bytearray(files["tiny_v1"].read_bytes())
    header_end = data.index(b"head.weight") + 64  # the tensor table ends near the last name
    rng = np.random.default_rng(1)
    path = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(150):
        buf = bytearray(data)
        for pos in rng.integers(0, header_end, size=int(rng.integers(1, 4))):
            buf[pos] = int(rng.integers(0, 256))
        path.write_bytes(buf)
        try:
            CEngine._load(path, 1, 0).close()
            outcomes["ok"] += 1
        except (RwkvEdgeError, MemoryError):
            outcomes["error"] += 1
    assert outcomes["error"] > 0
