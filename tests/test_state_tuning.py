"""State-tuning files (``blocks.N.att.time_state`` alone) as a model's initial state.

The same numbers merged into the checkpoint are what BlinkDL's reference reads (it
transposes ``time_state`` into its state; test_c_engine checks our engines do so
too), so a base model plus the state file must give exactly the logits of the merged
checkpoint, on both engines. Files that do not fit the model are refused, naming the
file and the tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import FormatError, Model, c_backend_available

from .reference import random_checkpoint
from .test_checkpoint import _write_safetensors

torch = pytest.importorskip("torch")
BACKENDS = ["numba", *(["c"] if c_backend_available() else [])]
H, N = 4, 8  # heads and head size of the random checkpoint below


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base model, its state-tuning file (.pth and safetensors) and the merged model."""
    d = tmp_path_factory.mktemp("state-tuning")
    base = random_checkpoint(
        d / "base.pth", version="5.2", n_layer=2, n_embd=32, head_size=N, n_vocab=64, seed=3
    )
    rng = np.random.default_rng(1)
    ts = {f"blocks.{i}.att.time_state": rng.standard_normal((H, N, N)) for i in range(2)}
    ts_t = {k: torch.from_numpy(v.astype(np.float32)) for k, v in ts.items()}
    torch.save(ts_t, d / "state.pth")
    _write_safetensors(d / "state.safetensors", ts)
    merged = torch.load(base)
    merged.update(ts_t)
    torch.save(merged, d / "merged.pth")
    return {"base": base, "state": d / "state.pth", "st": d / "state.safetensors",
            "merged": d / "merged.pth", "dir": d}  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["state", "st"])
def test_state_file_equals_the_merged_time_state(
    backend: str, kind: str, files: dict[str, Path]
) -> None:
    toks = [1, 5, 9, 33, 2]
    with Model.load(files["merged"], backend=backend, threads=1) as merged:
        want = merged.forward(toks, merged.new_state())
    with Model.load(files["base"], backend=backend, threads=1) as base:
        plain = base.forward(toks, base.new_state())
        first = base.load_initial_state(files[kind])
        got = base.forward(toks, base.new_state())
        again = base.forward(toks, first)
        base.load_initial_state(None)
        back = base.forward(toks, base.new_state())
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(again, want)
    np.testing.assert_array_equal(back, plain)
    assert np.abs(plain - want).max() > 1e-3  # the state file really changes the output


def _save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, path)
    return path


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({0: (H, N, N)}, r"no time_state for layers \[1\]"),
        ({0: (H, N, N), 1: (H, N, N - 1)}, r"blocks\.1\.att\.time_state' has shape \[4, 8, 7\]"),
        ({0: (H, N, N), 1: (H, N, N), 2: (H, N, N)}, r"past the model's 2 layers"),
        ({0: (H, N, N), 1: (H, N, N), "x": (3,)}, r"'x' is not a time_state tensor"),
        ({0: (H, N, N), 1: "nan"}, r"NaN or infinite"),
    ],
)
def test_bad_state_files_are_refused(
    tensors: dict[object, object], match: str, files: dict[str, Path]
) -> None:
    arrays = {}
    for k, shape in tensors.items():
        name = f"blocks.{k}.att.time_state" if isinstance(k, int) else str(k)
        arrays[name] = (
            np.full((H, N, N), np.nan, np.float32)
            if shape == "nan"
            else np.zeros(shape, np.float32)  # type: ignore[arg-type]
        )
    bad = _save(files["dir"] / "bad.pth", arrays)
    with Model.load(files["base"], backend="numba") as m:
        before = m.new_state()
        with pytest.raises(FormatError, match=match) as err:
            m.load_initial_state(bad)
        assert "bad.pth" in str(err.value)
        assert m.new_state() == before  # a refused file changes nothing


def test_a_full_model_is_not_a_state_file(files: dict[str, Path]) -> None:
    with Model.load(files["base"], backend="numba") as m, pytest.raises(FormatError, match="emb"):
        m.load_initial_state(files["merged"])


@pytest.fixture(scope="module")
def demo_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state-tuning file for the built-in demo model (8 layers, 4 heads of 64)."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("demo-state") / "demo-state.pth"
    return _save(
        path,
        {
            f"blocks.{i}.att.time_state": rng.standard_normal((4, 64, 64)).astype(np.float32)
            for i in range(8)
        },
    )


def test_generate_command_takes_a_state_file(demo_state_file: Path) -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.main import main

    args = ["generate", "And", "-n", "12", "--temperature", "0", "--backend", "numba"]
    run = CliRunner().invoke(main, [*args, "--state", str(demo_state_file)])
    assert run.exit_code == 0, run.output
    with Model.load(backend="numba") as m:
        st = m.load_initial_state(demo_state_file)
        want = "".join(m.generate("And", st, max_tokens=12, temperature=0))
        plain = "".join(m.generate("And", m.load_initial_state(None), max_tokens=12, temperature=0))
    assert run.stdout.rstrip("\n") == want and want != plain


def test_commands_refuse_a_state_file_of_another_model(files: dict[str, Path]) -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.main import main

    run = CliRunner().invoke(main, ["generate", "x", "-n", "1", "--state", str(files["state"])])
    assert run.exit_code == 1
    assert "state.pth" in run.output and "shape" in run.output and "Traceback" not in run.output
