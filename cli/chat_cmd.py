"""``rwkv-edge chat``: a terminal chat in the World format, with per-turn state snapshots.

The conversation the model sees:

    System: <system text>\\n\\n          (only with --system)
    User: <message>\\n\\nAssistant: <reply>\\n\\nUser: ...

A reply ends at a blank line ("\\n\\n", the World format's turn end), where
the model starts a "User:" line itself, or at end-of-text; the stop text is
not shown but stays in the state, and the next turn continues from it. Models
that are not chat-trained (the built-in demo) rarely write the full
"\\n\\nUser:", so without these stops every reply ran to --max-tokens.
The state after each turn is snapshotted, so /undo and /retry restore a
snapshot instead of re-reading the conversation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from rwkv_edge.chat_format import (  # the format `rwkv-edge serve` uses too
    CHAT_SAMPLING,
    DEMO_MIN_REPLY_CHARS,
    STOPS,
    clean_message,
    system_text,
    turn_text,
)

from .run_cmd import load_model, model_options, sampling_options, warm_up

MAX_TOKENS = 512  # default reply cap with --model
DEMO_MAX_TOKENS = 128  # with the built-in demo model, which is not a chat model
PROMPT = "You> "
MORE = "... "
CHAT_FORMAT = "rwkv-edge-chat/1"
CHAT_DEFAULTS = CHAT_SAMPLING
HELP = """Commands:
  /undo              forget the last turn (state restored from its snapshot)
  /retry             draw a new reply to the last message
  /reset             start over (keeps the system prompt)
  /save FILE         save state + transcript (/save! FILE overwrites)
  /load FILE         load a conversation saved with /save
  /set NAME VALUE    sampler: temperature top_p top_k presence_penalty
                     frequency_penalty penalty_decay max_tokens seed
  /help              this text
Input: end a line with \\ to continue it; or wrap several lines in \"\"\".
Ctrl-C stops a reply; Ctrl-D quits."""


@dataclass
class Snapshot:
    """Where the conversation stood: state, next-token logits, consumed-but-unshown text."""

    state: Any
    logits: np.ndarray | None
    held: str
    after_reply: bool  # the next turn must begin with a blank line

    def copy(self) -> Snapshot:
        return Snapshot(
            self.state.copy(),
            None if self.logits is None else self.logits.copy(),
            self.held,
            self.after_reply,
        )


@dataclass
class Turn:
    user: str
    assistant: str
    before: Snapshot | None  # for /undo; dropped for old turns to bound memory
    after_prompt: Snapshot | None  # for /retry


@dataclass
class ChatSession:
    """The conversation logic, free of terminal I/O (the REPL below drives it)."""

    model: Any
    sampling: dict[str, Any]
    system: str | None = None
    max_tokens: int = MAX_TOKENS
    seed: int | None = None
    undo_depth: int = 8  # turns that /undo and /retry can reach
    min_reply_chars: int = 0  # stops count only after this much of a reply
    turns: list[Turn] = field(default_factory=list)
    last_stats: Any = None

    def __post_init__(self) -> None:
        self.now = Snapshot(self.model.new_state(), None, "", False)
        if self.system:
            self._feed(system_text(self.system), None)
        self.start = self.now.copy()
        self._draws = 0
        self._prompt_timing = (0, 0.0)

    # -- turns -----------------------------------------------------------------

    def _feed(self, text: str, on_progress: Callable[[int, int], None] | None) -> None:
        from rwkv_edge.generate import ingest

        ids = self.model.tokenizer.encode(text)
        t0 = time.perf_counter()
        self.now.logits = ingest(self.model, ids, self.now.state, on_progress=on_progress)
        self._prompt_timing = (len(ids), time.perf_counter() - t0)  # reported with the reply
        self.now.held, self.now.after_reply = "", False

    def _turn_text(self, message: str) -> str:
        text = turn_text(message)
        if not self.now.after_reply:  # fresh, or right after the system prompt
            return text
        # The last reply may have consumed the start of this turn (its stop string):
        # "\n\n" (or "\n\nUser:"), or "\nUser:" after a line of its own.
        held = self.now.held
        for lead in ("\n\n", "\n"):
            if (lead + text).startswith(held):
                return (lead + text)[len(held) :]
        return "\n\n" + text

    def send(
        self, message: str, on_progress: Callable[[int, int], None] | None = None
    ) -> Generator[str, None, None]:
        """Add a user turn and stream the reply."""
        before = self.now.copy()
        try:
            self._feed(self._turn_text(clean_message(message)), on_progress)
        except KeyboardInterrupt:
            self.now = before  # half a message must not stay in the state
            raise
        turn = Turn(clean_message(message), "", before, self.now.copy())
        self.turns.append(turn)
        self._trim_snapshots()
        return self._reply(turn)

    def _reply(self, turn: Turn) -> Generator[str, None, None]:
        from rwkv_edge.generate import generate

        self._draws += 1
        seed = None if self.seed is None else self.seed + self._draws
        gen = generate(
            self.model,
            [],
            self.now.state,
            logits=self.now.logits,
            stop=list(STOPS),
            min_chars=self.min_reply_chars,
            max_tokens=self.max_tokens,
            seed=seed,
            **self.sampling,
        )
        lead = True
        try:
            for piece in gen:
                if lead:  # "Assistant:" is followed by a space the user need not see
                    piece = piece.lstrip()
                    lead = piece == ""
                turn.assistant += piece
                yield piece
        finally:
            gen.close()
            self.now.logits, self.now.held, self.now.after_reply = gen.logits, gen.held_text, True
            gen.stats.prompt_tokens, gen.stats.prompt_seconds = self._prompt_timing
            self._prompt_timing = (0, 0.0)  # a /retry reads no prompt
            self.last_stats = gen.stats

    def _trim_snapshots(self) -> None:
        # Two state copies per turn (33 MiB each for a 7B model): keep the recent ones.
        for t in self.turns[: -self.undo_depth]:
            t.before = t.after_prompt = None

    def undo(self) -> str:
        if not self.turns:
            return "nothing to undo"
        turn = self.turns[-1]
        if turn.before is None:
            return "that turn is too old to undo (beyond the undo depth)"
        self.turns.pop()
        self.now = turn.before
        return f"undid: {turn.user[:40]!r}"

    def retry(self) -> Generator[str, None, None] | None:
        if not self.turns or self.turns[-1].after_prompt is None:
            return None
        turn = self.turns[-1]
        assert turn.after_prompt is not None
        self.now = turn.after_prompt.copy()
        turn.assistant = ""
        return self._reply(turn)

    def reset(self) -> None:
        self.turns.clear()
        self.now = self.start.copy()

    # -- persistence -------------------------------------------------------------

    def transcript(self) -> list[dict[str, str]]:
        return [{"user": t.user, "assistant": t.assistant} for t in self.turns]

    def save(self, path: Path, overwrite: bool) -> None:
        from rwkv_edge.state_io import save_state

        meta = {
            "format": CHAT_FORMAT,
            "system": self.system,
            "transcript": self.transcript(),
            "held": self.now.held,
            "after_reply": self.now.after_reply,
        }
        save_state(self.now.state, path, self.model, overwrite=overwrite, meta=meta)

    def load(self, path: Path) -> int:
        from rwkv_edge.errors import FormatError
        from rwkv_edge.state_io import load_state_and_meta

        state, meta = load_state_and_meta(path, self.model)
        if meta.get("format") != CHAT_FORMAT:
            raise FormatError(f"{path.name} holds a state but not a chat saved by /save")
        self.system = meta.get("system")
        self.now = Snapshot(state, None, str(meta.get("held", "")), bool(meta.get("after_reply")))
        self.turns = [Turn(t["user"], t["assistant"], None, None) for t in meta["transcript"]]
        return len(self.turns)

    def set_option(self, name: str, value: str) -> str:
        """/set NAME VALUE; returns a confirmation (raises ValueError on bad input)."""
        from rwkv_edge.sampling import OPTIONS, SamplingParams

        if name in ("max_tokens", "seed"):
            setattr(self, name, int(value))
        elif name in OPTIONS:
            new = {**self.sampling, name: int(value) if name == "top_k" else float(value)}
            SamplingParams(**new)  # validates
            self.sampling = new
        else:
            raise ValueError(f"unknown setting {name!r}")
        return f"{name} = {value}"


# ---------------------------------------------------------------------------
# The terminal side
# ---------------------------------------------------------------------------


def _setup_readline() -> None:
    """Line editing and a persistent history, where the platform has readline."""
    try:
        import atexit
        import readline
    except ImportError:
        return
    path = Path(
        os.environ.get(
            "RWKV_EDGE_HISTORY", Path.home() / ".local" / "state" / "rwkv-edge" / "chat_history"
        )
    )
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)

    def save() -> None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)

    atexit.register(save)


def read_message() -> str:
    """One message: a line, lines joined by trailing backslashes, or a \"\"\" block."""
    line = input(PROMPT)
    if line.strip() == '"""' or line.lstrip().startswith('"""'):
        first = line.lstrip()[3:]
        lines = [first] if first else []
        while True:
            nxt = input(MORE)
            if nxt.rstrip().endswith('"""'):
                lines.append(nxt.rstrip()[:-3])
                return "\n".join(lines).strip("\n")
            lines.append(nxt)
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        line = input(MORE)
    return "\n".join([*lines, line])


def _stream(session: ChatSession, pieces: Generator[str, None, None], stats: bool) -> None:
    try:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pieces.close()  # runs the reply's cleanup: the state keeps what was generated
        sys.stdout.write(" [interrupted]")
    sys.stdout.write("\n")
    if stats and session.last_stats is not None:
        click.secho(f"[{session.last_stats.summary()}]", dim=True)
    sys.stdout.flush()


def _progress(done: int, total: int) -> None:
    if total >= 512:  # only long prompts are worth a progress line
        click.echo(f"\r[reading {done}/{total} tokens]", nl=done == total, err=True)


def _command(session: ChatSession, line: str, stats: bool) -> None:
    """Run one /command; errors are reported, never fatal."""
    from rwkv_edge.errors import RwkvEdgeError

    cmd, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    try:
        if cmd == "/help":
            click.echo(HELP)
        elif cmd == "/undo":
            click.echo(session.undo())
        elif cmd == "/retry":
            pieces = session.retry()
            if pieces is None:
                click.echo("nothing to retry")
            else:
                _stream(session, pieces, stats)
        elif cmd == "/reset":
            session.reset()
            click.echo("conversation reset")
        elif cmd in ("/save", "/save!") and arg:
            session.save(Path(arg).expanduser(), overwrite=cmd == "/save!")
            click.echo(f"saved {len(session.turns)} turns to {arg}")
        elif cmd == "/load" and arg:
            click.echo(f"loaded {session.load(Path(arg).expanduser())} turns from {arg}")
        elif cmd == "/set" and len(arg.split()) == 2:
            click.echo(session.set_option(*arg.split()))
        else:
            click.echo(f"unknown command {line.strip()!r}; /help lists them")
    except (RwkvEdgeError, ValueError, OSError) as e:
        click.echo(f"error: {e}")


def run_repl(session: ChatSession, stats: bool) -> None:
    _setup_readline()
    if sys.stdin.isatty():
        # A shell starts background jobs with SIGINT ignored, and Python then never turns
        # Ctrl-C into KeyboardInterrupt; in a terminal chat Ctrl-C must stop a reply.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    click.echo("Chat with the model. /help for commands, Ctrl-D to quit.")
    while True:
        try:
            message = read_message()
        except KeyboardInterrupt:
            click.echo()
            continue
        except EOFError:
            click.echo()
            return
        if message.strip().startswith("/"):
            _command(session, message, stats)
        elif message.strip():
            try:
                pieces = session.send(message, on_progress=_progress)
            except KeyboardInterrupt:
                click.echo(" [interrupted]")
                continue
            click.echo("Assistant: ", nl=False)
            _stream(session, pieces, stats)


@click.command("chat")
@model_options
@click.option("--system", default=None, help="A system prompt, sent before the first turn.")
@sampling_options(CHAT_DEFAULTS)
@click.option(
    "--max-tokens",
    "-n",
    type=click.IntRange(1),
    default=None,
    help=f"Longest reply in tokens [default: {MAX_TOKENS}; {DEMO_MAX_TOKENS} with the "
    "built-in demo model].",
)
@click.option("--seed", type=int, default=None, help="Fix the random draws (reproducible).")
@click.option("--stats", is_flag=True, help="Show prompt and generation speed after each reply.")
def chat_command(
    model_path: Path | None,
    backend: str,
    threads: int | None,
    state_file: Path | None,
    system: str | None,
    max_tokens: int | None,
    seed: int | None,
    stats: bool,
    **sampling: Any,
) -> None:
    """Chat with a model in the terminal (World format: User: / Assistant:)."""
    model = load_model(model_path, backend, threads, state_file=state_file)
    try:
        warm_up(model)  # so the first reply starts promptly and its --stats are fair
        if max_tokens is None:
            max_tokens = MAX_TOKENS if model_path is not None else DEMO_MAX_TOKENS
        min_chars = 0 if model_path is not None else DEMO_MIN_REPLY_CHARS
        session = ChatSession(model, sampling, system, max_tokens, seed, min_reply_chars=min_chars)
        run_repl(session, stats)
    finally:
        model.close()


command = chat_command
