"""The chat, driven in a real pseudo-terminal (pexpect), plus its session logic in-process.

The terminal test types turns, reads the streamed replies and checks them
against the same conversation run in-process, then exercises multi-line
input, /undo, /save + /load, Ctrl-C during a reply and Ctrl-D.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from rwkv_edge.cli.chat_cmd import STOPS

from rwkv_edge.generate import complete

pexpect = pytest.importorskip("pexpect")

# Greedy and penalty-free, so a reply is a pure function of the conversation.
SAMPLING: dict[str, Any] = dict(
    temperature=0.0,
    top_p=0.3,
    top_k=0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    penalty_decay=0.996,
)
MAX_TOKENS = 24
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")
STATS = re.compile(r"\[prompt (\d+) tok at ([\d.]+) tok/s, generated (\d+) tok at ([\d.]+) tok/s\]")


@pytest.fixture(scope="module")
def tiny(tiny_v2: Path) -> Any:
    from rwkv_edge import Model

    with Model.load(tiny_v2, backend="numba") as m:
        yield m


def _session(model: Any) -> Any:
    from rwkv_edge.cli.chat_cmd import ChatSession

    return ChatSession(model, dict(SAMPLING), None, MAX_TOKENS)


# ---------------------------------------------------------------------------
# Session logic against hand-built World-format prompts
# ---------------------------------------------------------------------------


def test_session_builds_the_world_format(tiny: Any) -> None:
    s = _session(tiny)
    r1 = "".join(s.send("Hello there"))
    r2 = "".join(s.send("How are you?\n\n\nFine"))  # blank lines would end the turn
    kw: dict[str, Any] = dict(max_tokens=MAX_TOKENS, stop=list(STOPS), **SAMPLING)
    a = complete(tiny, "User: Hello there\n\nAssistant:", **kw)
    assert r1 == a.text.lstrip() and len(a.tokens) == MAX_TOKENS
    # The second turn continues the state; "\n\n" in the message became "\n".
    b = complete(tiny, "\n\nUser: How are you?\nFine\n\nAssistant:", state=a.state, **kw)
    assert r2 == b.text.lstrip()
    assert s.transcript() == [
        {"user": "Hello there", "assistant": r1},
        {"user": "How are you?\nFine", "assistant": r2},
    ]
    assert s.now.state == b.state


def test_undo_retry_reset_restore_snapshots(tiny: Any) -> None:
    s = _session(tiny)
    r1 = "".join(s.send("Hello there"))
    after1 = s.now.state.copy()
    "".join(s.send("Second"))
    assert s.undo().startswith("undid") and s.now.state == after1
    assert len(s.turns) == 1
    retry = s.retry()
    assert retry is not None and "".join(retry) == r1  # greedy: same reply again
    assert s.now.state == after1
    s.reset()
    assert s.turns == [] and s.now.state == tiny.new_state()
    assert s.undo() == "nothing to undo" and s.retry() is None


def test_system_prompt_and_set(tiny: Any) -> None:
    from rwkv_edge.cli.chat_cmd import ChatSession

    s = ChatSession(tiny, dict(SAMPLING), "Be brief.\n\nVery.", MAX_TOKENS)
    r = "".join(s.send("Hi"))
    want = complete(
        tiny,
        "System: Be brief.\nVery.\n\nUser: Hi\n\nAssistant:",
        max_tokens=MAX_TOKENS,
        stop=list(STOPS),
        **SAMPLING,
    )
    assert r == want.text.lstrip()
    assert s.set_option("top_k", "5") == "top_k = 5" and s.sampling["top_k"] == 5
    with pytest.raises(ValueError):
        s.set_option("temperature", "-1")
    with pytest.raises(ValueError):
        s.set_option("nonsense", "1")


class _ReplyState:
    def __init__(self, seen: bytes = b"") -> None:
        self.seen = seen  # every token (byte) the model has consumed

    def copy(self) -> _ReplyState:
        return _ReplyState(self.seen)


class _ReplyModel:
    """A stand-in chat model: after the k-th "Assistant:" it writes replies[k] byte
    by byte (greedy), then end-of-text (id 0) unless the reply ran on."""

    def __init__(self, replies: list[bytes]) -> None:
        from rwkv_edge.tokenizer import ByteTokenizer

        class Tok(ByteTokenizer):
            eos_id = 0

        self.replies = replies
        self.tokenizer = Tok()
        self.config = SimpleNamespace(n_vocab=256)

    def new_state(self) -> _ReplyState:
        return _ReplyState()

    def forward(self, tokens: list[int], state: _ReplyState) -> np.ndarray:
        state.seen += bytes(tokens)
        k = state.seen.count(b"Assistant:") - 1
        at = len(state.seen) - (state.seen.rfind(b"Assistant:") + len(b"Assistant:"))
        reply = self.replies[k] if 0 <= k < len(self.replies) else b""
        logits = np.zeros(256, np.float32)
        logits[reply[at] if k >= 0 and at < len(reply) else 0] = 50.0
        return logits


def test_reply_ends_at_a_blank_line_or_a_user_line() -> None:
    """A model that is not chat-trained (the built-in demo) rarely writes the
    "\n\nUser:" turn end: a reply also ends at a blank line, or where the model
    starts a "User:" line itself. The stop text stays in the state and the next
    turn continues from it."""
    from rwkv_edge.cli.chat_cmd import ChatSession

    model = _ReplyModel(
        [
            b" Hello.\n\nA new paragraph the user never asked for.",
            b" Line one\nUser: a turn the model made up",
            b" Bye.",
        ]
    )
    s = ChatSession(model, dict(SAMPLING), None, 200)
    replies = ["".join(s.send(m)) for m in ("hi", "two", "three")]
    assert replies == ["Hello.", "Line one", "Bye."]
    assert [t["assistant"] for t in s.transcript()] == replies
    assert s.now.state.seen == (
        b"User: hi\n\nAssistant: Hello.\n\n"
        b"User: two\n\nAssistant: Line one\nUser:"
        b" three\n\nAssistant: Bye."
    )


def test_default_reply_length() -> None:
    """512 tokens for a model given with --model, 128 for the built-in demo (whose
    replies are not chat and would otherwise run on); with the demo, a reply ends
    at a blank line only after DEMO_MIN_REPLY_CHARS."""
    from click.testing import CliRunner
    from rwkv_edge.cli import chat_cmd

    seen: list[tuple[int, int]] = []

    def fake_load(model_path: Any, backend: str, threads: Any, **_: Any) -> Any:
        return SimpleNamespace(close=lambda: None, path=model_path)

    def fake_repl(session: Any, stats: bool) -> None:
        seen.append((session.max_tokens, session.min_reply_chars))

    class FakeSession:
        def __init__(
            self,
            model: Any,
            sampling: Any,
            system: Any,
            max_tokens: int,
            seed: Any,
            min_reply_chars: int = 0,
        ) -> None:
            self.max_tokens, self.min_reply_chars = max_tokens, min_reply_chars

    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chat_cmd, "load_model", fake_load)
        mp.setattr(chat_cmd, "warm_up", lambda m: None)
        mp.setattr(chat_cmd, "run_repl", fake_repl)
        mp.setattr(chat_cmd, "ChatSession", FakeSession)
        for args in ([], ["--model", __file__], ["-n", "7"], ["--model", __file__, "-n", "9"]):
            res = runner.invoke(chat_cmd.chat_command, args, input="")
            assert res.exit_code == 0, res.output
    demo = chat_cmd.DEMO_MIN_REPLY_CHARS
    assert seen == [(128, demo), (512, 0), (7, demo), (9, 0)]


def test_demo_model_replies_end() -> None:
    """The built-in demo model in the chat: replies end well before the cap.

    Sampling follows the logits' last bits, which differ between kernel sets
    (and between the lanes and GGML layouts), so this is a rate over 24
    replies, not a verdict on three: the demo model stops on its own in 22
    to 24 of them (12 seeds x 2 messages, measured with the ref, avx2 and
    avx512 kernels, both layouts). A blank line or a "User:" turn after the
    reply's short head is never allowed.
    """
    from rwkv_edge.cli.chat_cmd import CHAT_DEFAULTS, DEMO_MIN_REPLY_CHARS, ChatSession

    from rwkv_edge import Model
    from rwkv_edge.errors import IoError

    try:
        model = Model.load()
    except (ImportError, IoError):
        pytest.skip("this build has no built-in model")
    capped = []
    with model:
        for seed in range(1, 13):
            s = ChatSession(
                model, dict(CHAT_DEFAULTS), None, 128, seed, min_reply_chars=DEMO_MIN_REPLY_CHARS
            )
            for message in ("Hello, who are you?", "What is a hacker?"):
                reply = "".join(s.send(message))
                # A blank line may only appear in the short head a reply must have.
                late = reply[DEMO_MIN_REPLY_CHARS:]
                assert "\n\n" not in late and "\nUser:" not in late, (seed, message, reply)
                assert len(reply) >= DEMO_MIN_REPLY_CHARS - 2 or s.last_stats.stop_reason == "eos"
                if s.last_stats.stop_reason not in ("stop", "eos"):
                    capped.append((seed, message, reply))
    assert len(capped) <= 2, capped


# ---------------------------------------------------------------------------
# The real terminal
# ---------------------------------------------------------------------------


def _spawn(tmp_path: Path, model: Path) -> Any:
    env = dict(
        os.environ, HOME=str(tmp_path), RWKV_EDGE_HISTORY=str(tmp_path / "hist"), TERM="xterm"
    )
    args = [
        "-c",
        "from rwkv_edge.cli.main import main; main()",
        "chat",
        "--model",
        str(model),
        "--backend",
        "numba",
        "--max-tokens",
        str(MAX_TOKENS),
        "--stats",
    ]
    for k, v in SAMPLING.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    child = pexpect.spawn(
        sys.executable,
        args,
        env=env,
        encoding="utf-8",
        timeout=180,
        cwd=str(tmp_path),  # not the source tree: it would shadow the build
        dimensions=(40, 200),
    )
    child.expect_exact("You> ")
    return child


def _reply(child: Any) -> tuple[str, re.Match[str]]:
    """Wait for a reply and its stats line; the reply text as the terminal showed it."""
    child.expect(STATS)
    shown = ANSI.sub("", child.before).replace("\r\n", "\n")
    m = STATS.search(ANSI.sub("", child.after))
    assert m is not None
    child.expect_exact("You> ")
    return shown.split("Assistant: ", 1)[1].rstrip("\n"), m


def _say(child: Any, *lines: str) -> tuple[str, re.Match[str]]:
    for line in lines:
        child.sendline(line)
    return _reply(child)


def _do(child: Any, command: str, answer: str) -> None:
    child.sendline(command)
    child.expect_exact(answer)
    child.expect_exact("You> ")


def test_chat_in_a_terminal(tiny: Any, tiny_v2: Path, tmp_path: Path) -> None:
    from rwkv_edge.state_io import read_state_file

    ref = _session(tiny)  # the same conversation, in-process
    want1, want2 = "".join(ref.send("Hello there")), "".join(ref.send("How are you?"))
    want3 = "".join(ref.send("first line \nsecond line"))
    child = _spawn(tmp_path, tiny_v2)

    got1, stats1 = _say(child, "Hello there")
    assert got1 == want1.rstrip("\n")
    assert int(stats1.group(1)) == len("User: Hello there\n\nAssistant:")  # byte tokens
    assert int(stats1.group(3)) == MAX_TOKENS and float(stats1.group(4)) > 0
    got2, _ = _say(child, "How are you?")
    assert got2 == want2.rstrip("\n")
    got3, _ = _say(child, "first line \\", "second line")  # backslash continues the line
    assert got3 == want3.rstrip("\n")

    _do(child, "/undo", "undid: 'first line")
    again3, _ = _say(child, "first line \\", "second line")  # restored state, same reply
    assert again3 == got3
    _do(child, "/undo", "undid")
    save = tmp_path / "conv.rwst"
    _do(child, f"/save {save}", "saved 2 turns")
    third, _ = _say(child, "Tell me more")
    _do(child, f"/load {save}", "loaded 2 turns")
    assert _say(child, "Tell me more")[0] == third  # the loaded state is the saved one

    header, _ = read_state_file(save)
    assert header["meta"]["transcript"] == [
        {"user": "Hello there", "assistant": got1},
        {"user": "How are you?", "assistant": got2},
    ]

    _interrupt_a_long_reply(child)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _interrupt_a_long_reply(child: Any) -> None:
    _do(child, "/set max_tokens 1000000", "max_tokens = 1000000")
    child.sendline("Tell me a very long story")
    child.expect_exact("Assistant: ")
    time.sleep(1.0)
    child.sendintr()
    child.expect_exact("[interrupted]")
    child.expect_exact("You> ")
    _do(child, "/help", "Commands:")  # the session survived


@pytest.mark.parametrize(
    "typed, message",
    [
        (["plain"], "plain"),
        (["one \\", "two\\", "three"], "one \ntwo\nthree"),
        (['"""', "a", "", "b", '"""'], "a\n\nb"),
        (['"""first', 'last"""'], "first\nlast"),
    ],
)
def test_multi_line_input(monkeypatch: pytest.MonkeyPatch, typed: list[str], message: str) -> None:
    from rwkv_edge.cli import chat_cmd

    lines = iter(typed)
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda p="": prompts.append(p) or next(lines))
    assert chat_cmd.read_message() == message
    assert prompts == [chat_cmd.PROMPT] + [chat_cmd.MORE] * (len(typed) - 1)
    assert chat_cmd.clean_message(message) == message.replace("\n\n", "\n")
