"""Text generation: prompt ingestion in chunks, sampling, UTF-8-safe streaming, stop strings.

    for piece in generate(model, "User: hi\\n\\nAssistant:", stop=["\\n\\nUser:"], seed=1):
        print(piece, end="", flush=True)

    out = complete(model, "The capital of France is", max_tokens=16, temperature=0)
    out.text, out.stats.generate_tokens_per_s

State contract: ``state`` is advanced in place. Afterwards it has consumed the
prompt and every generated token except an end-of-text token, including the
tokens that spelled a stop string (that text is ``held_text``, never emitted).
So the next turn continues right where this one stopped, and ``logits`` are
the model's prediction for the token after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError
from .sampling import Sampler, SamplingParams, check_seed
from .state import State

ProgressFn = Callable[[int, int], None]  # (tokens ingested so far, total)
DEFAULT_CHUNK_LEN = 128  # sequence-mode tokens per forward call while ingesting a prompt


@dataclass
class GenerationStats:
    """Timings of one generate call (seconds are time spent inside rwkv-edge)."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    stop_reason: str = ""  # "stop" | "eos" | "length" | "interrupted"

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def generate_tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"prompt {self.prompt_tokens} tok at {self.prompt_tokens_per_s:.1f} tok/s, "
            f"generated {self.generated_tokens} tok at {self.generate_tokens_per_s:.1f} tok/s"
        )


def ingest(
    model: Any,
    tokens: Sequence[int],
    state: State,
    *,
    chunk_len: int = DEFAULT_CHUNK_LEN,
    on_progress: ProgressFn | None = None,
) -> npt.NDArray[np.float32]:
    """Feed ``tokens`` through the model in sequence-mode chunks; the last position's logits."""
    if not tokens:
        raise ArgumentError("nothing to ingest: the prompt has no tokens")
    if chunk_len < 1:
        raise ArgumentError(f"chunk_len must be >= 1, got {chunk_len}")
    logits = None
    for start in range(0, len(tokens), chunk_len):
        chunk = list(tokens[start : start + chunk_len])
        logits = model.forward(chunk, state)
        if on_progress is not None:
            on_progress(start + len(chunk), len(tokens))
    assert logits is not None
    return logits


class _StopScanner:
    """Splits decoded text into what may be emitted and what might begin a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]

    def split(self, pending: str, start: int = 0) -> tuple[str, str | None]:
        """(text safe to emit, text from the first stop string on, or None if none matched).

        Only stop strings that begin at or after ``start`` count. Without a match,
        a tail that is a prefix of some stop string is held back.
        """
        hits = [(i, s) for s in self.stops if (i := pending.find(s, start)) >= 0]
        if hits:
            i = min(hits)[0]
            return pending[:i], pending[i:]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(pending)), keep, -1):
                if pending.endswith(s[:k]):
                    keep = k
                    break
        return pending[: len(pending) - keep], None


@dataclass
class Generation:
    """An iterator of text pieces; after it ends, ``stats``, ``tokens`` and ``text`` are final."""

    model: Any
    state: State
    sampler: Sampler
    prompt_tokens: list[int]
    max_tokens: int
    stop: Sequence[str]
    chunk_len: int = DEFAULT_CHUNK_LEN
    min_chars: int = 0  # stop strings count only from this character of the output on
    on_progress: ProgressFn | None = None
    logits: npt.NDArray[np.float32] | None = None  # latest prediction (for the next token)
    tokens: list[int] = field(default_factory=list)  # generated and consumed by the state
    text: str = ""  # emitted text
    held_text: str = ""  # consumed by the state but not emitted (a stop string and after)
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        self._it = self._run()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        """Stop early; the state keeps every token generated so far."""
        self._it.close()

    def _ingest_prompt(self) -> npt.NDArray[np.float32]:
        t0 = time.perf_counter()
        if self.prompt_tokens:
            self.logits = ingest(
                self.model,
                self.prompt_tokens,
                self.state,
                chunk_len=self.chunk_len,
                on_progress=self.on_progress,
            )
        elif self.logits is None:
            raise ArgumentError("empty prompt: pass prompt tokens, or the logits to continue from")
        self.stats.prompt_tokens = len(self.prompt_tokens)
        self.stats.prompt_seconds = time.perf_counter() - t0
        assert self.logits is not None
        return self.logits

    def _step(self, logits: npt.NDArray[np.float32]) -> int | None:
        """Draw a token and feed it to the state; None at end of text."""
        tok = self.sampler.sample(logits)
        if tok == self.model.tokenizer.eos_id:
            return None
        self.sampler.accept(tok)
        self.logits = self.model.forward([tok], self.state)
        self.tokens.append(tok)
        return tok

    def _run(self) -> Generator[str, None, None]:
        logits = self._ingest_prompt()
        decoder = self.model.tokenizer.stream_decoder()
        scanner = _StopScanner(self.stop)
        pending = ""  # decoded text not yet emitted (it may begin a stop string)
        self.stats.stop_reason = "interrupted"  # unless the loop below finishes
        for _ in range(self.max_tokens):
            t0 = time.perf_counter()
            tok = self._step(logits)
            self.stats.generate_seconds += time.perf_counter() - t0
            if tok is None:
                self.stats.stop_reason = "eos"
                break
            assert self.logits is not None
            logits = self.logits
            self.stats.generated_tokens += 1
            text = pending + decoder.feed(tok)
            emit, held = scanner.split(text, self._stop_start())
            pending = text[len(emit) :]
            if held is not None:
                self.held_text = held
                self.stats.stop_reason = "stop"
                yield from self._emit(emit)
                return
            yield from self._emit(emit)
        else:
            self.stats.stop_reason = "length"
        # End of stream: a held-back stop-string prefix and any half character go out.
        text = pending + decoder.flush()
        emit, held = scanner.split(text, self._stop_start())
        if held is not None:
            self.held_text, self.stats.stop_reason = held, "stop"
            text = emit
        yield from self._emit(text)

    def _stop_start(self) -> int:
        """Where stop strings begin to count in the pending text (after min_chars of output)."""
        return max(0, self.min_chars - len(self.text))

    def _emit(self, piece: str) -> Iterator[str]:
        if piece:
            self.text += piece
            yield piece


def generate(
    model: Any,
    prompt: str | Sequence[int],
    state: State | None = None,
    *,
    max_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 0.85,
    top_k: int = 0,
    presence_penalty: float = 0.2,
    frequency_penalty: float = 0.2,
    penalty_decay: float = 0.996,
    stop: Sequence[str] | None = (),
    min_chars: int = 0,
    seed: int | None = None,
    logit_bias: Mapping[int, float] | None = None,
    banned_tokens: Sequence[int] = (),
    chunk_len: int = DEFAULT_CHUNK_LEN,
    on_progress: ProgressFn | None = None,
    logits: npt.ArrayLike | None = None,
    sampler: Sampler | None = None,
    **unknown: Any,
) -> Generation:
    """Stream a continuation of ``prompt`` (text or token ids) as text pieces.

    ``state`` (advanced in place) continues an earlier conversation; None
    starts fresh. ``temperature=0`` is greedy. A fixed ``seed`` makes the
    output reproducible. ``stop`` strings end generation and are not emitted,
    even when split across tokens; with ``min_chars`` only those that begin at or
    after that many characters of output count. ``logits`` lets an empty prompt continue
    from a saved prediction; ``sampler`` reuses one (its penalty history
    included) instead of building one from the sampling arguments.
    """
    if unknown:
        raise ArgumentError(f"generate() has no option {', '.join(sorted(unknown))}")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ArgumentError("this model has no tokenizer; generation needs one to produce text")
    _require_count("max_tokens", max_tokens, 0)
    _require_count("min_chars", min_chars, 0)
    _require_count("chunk_len", chunk_len, 1)
    stops = _stop_strings(stop)
    if on_progress is not None and not callable(on_progress):
        raise ArgumentError("on_progress must be a callable(done, total) or None")
    check_seed(seed)
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else _prompt_ids(prompt)
    n_vocab = int(model.config.n_vocab)
    if sampler is None:
        params = SamplingParams(
            temperature,
            top_p,
            top_k,
            presence_penalty,
            frequency_penalty,
            penalty_decay,
            _as_dict(logit_bias),
            _as_tuple(banned_tokens, "banned_tokens"),
        )
        # Ids the head has but the tokenizer cannot spell (World: 65530..65535) are banned.
        sampler = Sampler(n_vocab, params, seed, banned=range(tokenizer.vocab_size, n_vocab))
    start = None if logits is None else np.asarray(logits, np.float32)
    return Generation(
        model,
        state if state is not None else model.new_state(),
        sampler,
        ids,
        max_tokens,
        stops,
        chunk_len,
        min_chars,
        on_progress,
        start,
    )


def _require_count(name: str, value: object, least: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ArgumentError(f"{name} must be an int, got a {type(value).__name__}")
    if value < least:
        raise ArgumentError(f"{name} must be >= {least}, got {value}")


def _stop_strings(stop: object) -> list[str]:
    """None or a sequence of non-empty strs (one str alone is one stop string)."""
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else _as_tuple(stop, "stop")
    for s in items:
        if not isinstance(s, str):
            raise ArgumentError(f"stop strings must be str, got a {type(s).__name__}")
        if not s:
            raise ArgumentError("an empty stop string would match before any text: remove it")
    return list(items)


def _as_tuple(items: object, name: str) -> tuple[Any, ...]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ArgumentError(f"{name} must be a sequence, got a {type(items).__name__}")
    return tuple(items)


def _as_dict(bias: object) -> dict[Any, Any]:
    if bias is None:
        return {}
    if not isinstance(bias, Mapping):
        raise ArgumentError(f"logit_bias must be a mapping, got a {type(bias).__name__}")
    return dict(bias)


def _prompt_ids(prompt: object) -> list[int]:
    """Token ids given as the prompt: ints only (1.5 or "7" are not ids)."""
    ids = list(_as_tuple(prompt, "prompt"))
    for t in ids:
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool):
            raise ArgumentError(f"prompt token ids must be ints, got a {type(t).__name__}")
    return [int(t) for t in ids]


@dataclass
class Completion:
    """What ``complete`` returns: the whole text plus everything a Generation records."""

    text: str
    tokens: list[int]
    stats: GenerationStats
    state: State
    logits: npt.NDArray[np.float32] | None
    held_text: str


def complete(
    model: Any, prompt: str | Sequence[int], state: State | None = None, **kwargs: Any
) -> Completion:
    """Non-streaming ``generate``: run to the end and return the text and stats."""
    gen = generate(model, prompt, state, **kwargs)
    text = "".join(gen)
    return Completion(text, gen.tokens, gen.stats, gen.state, gen.logits, gen.held_text)
