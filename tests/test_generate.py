"""generate(): chunked ingestion, stop strings across pieces, UTF-8 streaming, state contract."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rwkv_edge.errors import ArgumentError
from rwkv_edge.generate import complete, generate
from rwkv_edge.tokenizer import ByteTokenizer

# ---------------------------------------------------------------------------
# A scripted stand-in model: it "predicts" the next byte of a fixed script, and
# its state is just how many tokens it has consumed.
# ---------------------------------------------------------------------------


class _EosBytes(ByteTokenizer):
    eos_id = 0


class ScriptModel:
    def __init__(self, script: bytes, eos: bool = False) -> None:
        self.script = script
        self.config = SimpleNamespace(n_vocab=256)
        self.tokenizer = _EosBytes() if eos else ByteTokenizer()
        self.calls: list[int] = []  # length of each forward call

    def new_state(self) -> Any:
        return SimpleNamespace(data=np.zeros(1, np.float32))

    def forward(self, tokens: list[int], state: Any) -> np.ndarray:
        self.calls.append(len(tokens))
        state.data[0] += len(tokens)
        pos = int(state.data[0])
        logits = np.zeros(256, np.float32)
        logits[self.script[pos] if pos < len(self.script) else 0] = 50.0
        return logits


GREEDY: dict[str, Any] = dict(temperature=0.0)


def test_chunked_ingestion_reports_progress() -> None:
    model = ScriptModel(b"x" * 400)
    seen: list[tuple[int, int]] = []
    gen = generate(
        model,
        "x" * 300,
        max_tokens=2,
        chunk_len=128,
        on_progress=lambda d, t: seen.append((d, t)),
        **GREEDY,
    )
    assert "".join(gen) == "xx"
    assert seen == [(128, 300), (256, 300), (300, 300)]
    assert model.calls == [128, 128, 44, 1, 1]
    assert gen.stats.prompt_tokens == 300 and gen.stats.generated_tokens == 2
    assert gen.stats.stop_reason == "length" and gen.state.data[0] == 302


def test_stop_string_split_across_tokens_is_not_emitted() -> None:
    script = b"Q" + b"Hello there.\n\nUser: more"
    model = ScriptModel(script)
    gen = generate(model, "Q", stop=["\n\nUser:"], max_tokens=100, **GREEDY)
    pieces = list(gen)
    assert "".join(pieces) == "Hello there."
    assert all("\n" not in p for p in pieces)  # the stop's prefix was held back, then dropped
    assert gen.held_text == "\n\nUser:" and gen.stats.stop_reason == "stop"
    # The state consumed the stop string too: it sits right after "User:".
    assert gen.state.data[0] == len(b"QHello there.\n\nUser:")


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    model = ScriptModel(b"Qa\n\nb\n\nUsex")
    gen = generate(model, "Q", stop=["\n\nUser:"], max_tokens=9, **GREEDY)
    assert "".join(gen) == "a\n\nb\n\nUse" and gen.stats.stop_reason == "length"


def test_earliest_of_several_stops_wins() -> None:
    model = ScriptModel(b"Q12345")
    gen = generate(model, "Q", stop=["45", "23", "2345"], max_tokens=10, **GREEDY)
    assert "".join(gen) == "1" and gen.held_text == "23"


def test_min_chars_ignores_stops_that_begin_too_early() -> None:
    model = ScriptModel(b"Qn.\n\nA long line.\n\nUser: x")
    gen = generate(model, "Q", stop=["\n\n"], min_chars=4, max_tokens=100, **GREEDY)
    assert "".join(gen) == "n.\n\nA long line." and gen.held_text == "\n\n"
    # A stop beginning exactly at min_chars counts.
    gen = generate(model, "Q", stop=["\n\n"], min_chars=2, max_tokens=100, **GREEDY)
    assert "".join(gen) == "n." and gen.stats.stop_reason == "stop"
    with pytest.raises(ArgumentError):
        generate(model, "Q", min_chars=-1)


def test_streaming_never_splits_a_character() -> None:
    text = "Q你好, 世界 👍🏽 done"
    model = ScriptModel(text.encode())
    gen = generate(model, "Q", max_tokens=len(text.encode()) - 1, **GREEDY)
    pieces = list(gen)
    assert "".join(pieces) == text[1:] and "\ufffd" not in "".join(pieces)
    assert len(gen.tokens) == len(text.encode()) - 1  # one token per byte, fewer pieces
    assert len(pieces) < len(gen.tokens)


def test_eos_ends_generation_and_is_not_consumed() -> None:
    model = ScriptModel(b"Qabc", eos=True)  # past the script it predicts id 0
    gen = generate(model, "Q", max_tokens=50, **GREEDY)
    assert "".join(gen) == "abc" and gen.stats.stop_reason == "eos"
    assert gen.tokens == [97, 98, 99] and gen.state.data[0] == 4


def test_closing_early_keeps_what_was_consumed() -> None:
    model = ScriptModel(b"Qabcdef")
    gen = generate(model, "Q", max_tokens=50, **GREEDY)
    assert next(gen) == "a" and next(gen) == "b"
    gen.close()
    assert gen.stats.stop_reason == "interrupted" and gen.state.data[0] == 3


def test_argument_errors() -> None:
    model = ScriptModel(b"Q")
    with pytest.raises(ArgumentError, match="empty prompt"):
        list(generate(model, ""))
    with pytest.raises(ArgumentError, match="max_tokens"):
        generate(model, "Q", max_tokens=-1)
    model.tokenizer = None  # type: ignore[assignment]
    with pytest.raises(ArgumentError, match="no tokenizer"):
        generate(model, "Q")


# ---------------------------------------------------------------------------
# The real tiny model (byte tokenizer) through the numba engine
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_v2: Path) -> Any:
    from rwkv_edge import Model

    with Model.load(tiny_v2, backend="numba") as m:
        yield m


PROMPT = "The old lighthouse keeper climbed the stairs"


def test_fixed_seed_is_reproducible(tiny: Any) -> None:
    kw: dict[str, Any] = dict(max_tokens=48, temperature=1.0, top_p=0.9, seed=1234)
    a, b = complete(tiny, PROMPT, **kw), complete(tiny, PROMPT, **kw)
    c = complete(tiny, PROMPT, **{**kw, "seed": 99})
    assert a.tokens == b.tokens and a.text == b.text and len(a.tokens) == 48
    assert a.tokens != c.tokens
    assert a.state == b.state


def test_greedy_matches_a_hand_loop_over_forward(tiny: Any) -> None:
    out = complete(
        tiny, PROMPT, max_tokens=40, presence_penalty=0.0, frequency_penalty=0.0, temperature=0.0
    )
    state = tiny.new_state()
    logits = tiny.forward(list(PROMPT.encode()), state)
    want = []
    for _ in range(40):
        want.append(int(np.argmax(logits)))
        logits = tiny.forward([want[-1]], state)
    assert out.tokens == want
    assert out.state.max_abs_diff(state) == 0.0
    np.testing.assert_array_equal(out.logits, logits)
    assert out.stats.prompt_tokens == len(PROMPT) and out.stats.generate_tokens_per_s > 0


def test_continuing_from_state_equals_one_long_run(tiny: Any) -> None:
    kw: dict[str, Any] = dict(temperature=0.0, presence_penalty=0.0, frequency_penalty=0.0)
    whole = complete(tiny, PROMPT, max_tokens=30, **kw)
    first = complete(tiny, PROMPT, max_tokens=12, **kw)
    rest = complete(tiny, [], state=first.state, logits=first.logits, max_tokens=18, **kw)
    assert first.tokens + rest.tokens == whole.tokens
    assert first.text + rest.text == whole.text
    # A new prompt after a stop continues from where the state stopped.
    again = complete(tiny, " and", state=whole.state, max_tokens=5, **kw)
    ref = complete(tiny, list(PROMPT.encode()) + whole.tokens + list(b" and"), max_tokens=5, **kw)
    assert again.tokens == ref.tokens


def test_same_seed_same_text_across_backends(tiny_v2: Path, tiny: Any) -> None:
    from rwkv_edge import Model, c_backend_available

    if not c_backend_available():
        pytest.skip("the C engine is not built")
    with Model.load(tiny_v2, backend="c") as c_model:
        for seed in (1, 2, 3):
            kw: dict[str, Any] = dict(max_tokens=64, seed=seed, temperature=1.0, top_p=0.9)
            a, b = complete(tiny, PROMPT, **kw), complete(c_model, PROMPT, **kw)
            assert a.tokens == b.tokens and a.text == b.text


def test_generate_command_reads_stdin(tiny: Any, tiny_v2: Path) -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.run_cmd import generate_command

    args = [
        "-",
        "--model",
        str(tiny_v2),
        "--backend",
        "numba",
        "--max-tokens",
        "30",
        "--seed",
        "7",
        "--top-p",
        "0.5",
        "--stop",
        "\n\n",
        "--stats",
    ]
    res = CliRunner().invoke(generate_command, args, input=PROMPT)
    assert res.exit_code == 0, res.output
    want = complete(tiny, PROMPT, max_tokens=30, seed=7, top_p=0.5, stop=["\n\n"])
    assert res.stdout == want.text + "\n"
    assert "tok/s" in res.stderr and f"prompt {len(PROMPT)} tok" in res.stderr


def test_chat_without_a_model_explains_itself() -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.chat_cmd import chat_command

    from rwkv_edge.errors import IoError

    try:
        from rwkv_edge.default_model import default_model_path

        default_model_path()
    except (ImportError, IoError):
        pass
    else:
        pytest.skip("this build has a built-in model")
    res = CliRunner().invoke(chat_command, [], input="")
    assert res.exit_code == 1 and "--model" in res.output


def test_cli_runs_as_a_module() -> None:
    """`python -m rwkv_edge.cli.main` is the console script (it used to do nothing)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "rwkv_edge.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Usage:" in out.stdout and "chat" in out.stdout
