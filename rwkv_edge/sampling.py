"""Next-token sampling, ChatRWKV style, vectorised over the vocabulary.

Per step (the order of ChatRWKV's PIPELINE.generate and sample_logits):
  1. logits += logit_bias; banned tokens -> -inf
  2. logits[t] -= presence_penalty * [t seen] + frequency_penalty * count[t]
     where count decays by ``penalty_decay`` every step (old repeats fade)
  3. p = softmax(logits); keep the smallest top set whose mass reaches top_p,
     and at most top_k tokens
  4. p = p ** (1 / temperature), renormalise, draw with a seeded numpy Generator
temperature 0 is greedy (argmax after steps 1-2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SamplingParams:
    """Sampler settings; the defaults are ChatRWKV's PIPELINE_ARGS."""

    temperature: float = 1.0
    top_p: float = 0.85
    top_k: int = 0  # 0 = no limit
    presence_penalty: float = 0.2
    frequency_penalty: float = 0.2
    penalty_decay: float = 0.996
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    banned_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            _require_number(name, getattr(self, name))
        _require_number("penalty_decay", self.penalty_decay)
        if not _is_int(self.top_k):
            raise ArgumentError(f"top_k must be an int, got a {type(self.top_k).__name__}")
        if not isinstance(self.logit_bias, Mapping):
            raise ArgumentError("logit_bias must be a mapping {token id: bias}")
        for tok, b in self.logit_bias.items():
            if not _is_int(tok):
                kind = type(tok).__name__
                raise ArgumentError(f"logit_bias keys must be token ids, got a {kind}")
            _require_number(f"logit_bias[{tok}]", b, finite=False)
        if not all(map(_is_int, self.banned_tokens)):
            raise ArgumentError("banned_tokens must be token ids (ints)")
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise ArgumentError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ArgumentError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ArgumentError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.penalty_decay <= 1.0:
            raise ArgumentError(f"penalty_decay must be in [0, 1], got {self.penalty_decay}")

    def with_(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)

    def options(self) -> dict[str, float]:
        """The scalar settings by name (OPTIONS): the CLI's option defaults and /set names."""
        return {name: getattr(self, name) for name in OPTIONS}


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _require_number(name: str, value: object, finite: bool = True) -> None:
    """A real number (not a str, not a bool); finite unless a bias (-inf bans)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise ArgumentError(f"{name} must be a number, got a {type(value).__name__}")
    if np.isnan(value) or (finite and not np.isfinite(value)):
        raise ArgumentError(f"{name} must be a finite number, got {value}")


def check_seed(seed: object) -> int | None:
    """None, or an int >= 0 (what numpy's generators accept), as an ArgumentError otherwise."""
    if seed is None:
        return None
    if not _is_int(seed) or seed < 0:  # type: ignore[operator]
        raise ArgumentError(f"seed must be None or an int >= 0, got {seed!r:.40}")
    return int(seed)  # type: ignore[call-overload]


# The settings a user sets by name (generate() keywords, CLI options, chat's /set).
OPTIONS = (
    "temperature",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "penalty_decay",
)
# The defaults, each defined once: generate() and `rwkv-edge generate` take DEFAULTS
# (ChatRWKV's PIPELINE_ARGS); `rwkv-edge chat` takes CHAT (ChatRWKV chat.py's settings:
# a narrower nucleus and stronger penalties against a chat model's loops).
DEFAULTS = SamplingParams()
CHAT = SamplingParams(top_p=0.3, presence_penalty=0.5, frequency_penalty=0.5)


class Sampler:
    """Draws tokens for one sequence; remembers what it drew for the penalties."""

    def __init__(
        self,
        n_vocab: int,
        params: SamplingParams | None = None,
        seed: int | None = None,
        banned: Iterable[int] = (),
    ) -> None:
        self.n_vocab = n_vocab
        self.params = params or SamplingParams()
        self.rng = np.random.default_rng(check_seed(seed))
        self.counts = np.zeros(n_vocab, np.float32)  # decayed occurrence counts
        self.seen = np.zeros(n_vocab, np.bool_)
        self._extra_bans = tuple(int(t) for t in banned)
        self._bias = self._make_bias()
        self._check_not_all_banned()

    def _check_not_all_banned(self) -> None:
        if self.n_vocab and np.isneginf(self._bias).all():
            raise ArgumentError("banned_tokens (and logit_bias) leave no token that can be drawn")

    def _make_bias(self) -> F32:
        bias = np.zeros(self.n_vocab, np.float32)
        for tok, b in self.params.logit_bias.items():
            bias[self._check(tok)] += b
        for tok in (*self.params.banned_tokens, *self._extra_bans):
            bias[self._check(tok)] = -np.inf
        return bias

    def _check(self, tok: int) -> int:
        if not _is_int(tok):
            raise ArgumentError(f"token ids must be ints, got a {type(tok).__name__}")
        if not 0 <= int(tok) < self.n_vocab:
            raise ArgumentError(f"token id {tok} is outside the vocabulary [0, {self.n_vocab})")
        return int(tok)

    def set_params(self, params: SamplingParams) -> None:
        """New settings for the next draws; the penalty history is kept."""
        self.params = params
        self._bias = self._make_bias()
        self._check_not_all_banned()

    def adjust(self, logits: npt.ArrayLike) -> F32:
        """Steps 1-2: bias, bans and repetition penalties (a new array)."""
        x = np.asarray(logits, np.float32)
        if x.shape != (self.n_vocab,):
            raise ArgumentError(f"logits must have shape ({self.n_vocab},), got {x.shape}")
        p = self.params
        return x + self._bias - (p.presence_penalty * self.seen + p.frequency_penalty * self.counts)

    def sample(self, logits: npt.ArrayLike) -> int:
        """Draw one token id (does not record it; call ``accept``)."""
        x = self.adjust(logits)
        if np.isnan(x).any():
            raise ArgumentError("logits contain NaN")
        best = int(np.argmax(x))
        if x[best] == -np.inf:  # every token banned or biased to -inf: nothing may be drawn
            raise ArgumentError("every token is banned (banned_tokens / logit_bias): none to draw")
        if self.params.temperature == 0 or not np.isfinite(x[best]):
            return best
        probs = self.probabilities(x)
        cdf = np.cumsum(probs)
        return min(
            int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), self.n_vocab - 1
        )

    def probabilities(self, adjusted: F32) -> npt.NDArray[np.float64]:
        """Steps 3-4 on adjusted logits: the distribution actually drawn from."""
        p = self.params
        z = adjusted.astype(np.float64)
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        keep = np.ones(self.n_vocab, np.bool_)
        if p.top_p < 1.0:
            desc = np.sort(probs)[::-1]
            # The smallest prefix whose mass reaches top_p; its last prob is the cutoff.
            cutoff = desc[min(int(np.searchsorted(np.cumsum(desc), p.top_p)), self.n_vocab - 1)]
            keep &= probs >= cutoff
        if 0 < p.top_k < self.n_vocab:
            kth = np.partition(probs, self.n_vocab - p.top_k)[self.n_vocab - p.top_k]
            keep &= probs >= kth
        probs = np.where(keep, probs, 0.0)
        if p.temperature != 1.0:
            # Scaled to max 1 first so that a low temperature cannot underflow everything.
            probs = (probs / probs.max()) ** (1.0 / p.temperature)
        return probs / probs.sum()

    def accept(self, token: int) -> None:
        """Record a drawn token for the penalties (ChatRWKV: decay first, then count)."""
        self.counts *= self.params.penalty_decay
        self.counts[token] += 1.0
        self.seen[token] = True

    def reset(self) -> None:
        self.counts[:] = 0.0
        self.seen[:] = False
