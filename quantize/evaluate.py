"""Perplexity of a model on a text, through the public Model API (any backend)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rwkv_edge.errors import ArgumentError

from .calibration import log_softmax_nll


@dataclass
class PerplexityResult:
    tokens: int  # predicted tokens (the first token of the text is only context)
    nll: float  # total negative log-likelihood, nats
    seconds: float

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / max(self.tokens, 1))


def tokenize_text(model: Any, text: bytes) -> list[int]:
    """Token ids with the model's own tokenizer; UTF-8 bytes for vocab-256 models."""
    tok = getattr(model, "tokenizer", None)
    if tok is not None:
        return list(tok.encode_bytes(text))
    if model.config.n_vocab == 256:
        return list(text)
    raise ArgumentError("this model names no tokenizer; cannot tokenize the text")


def perplexity(model: Any, tokens: Sequence[int], chunk: int = 256) -> PerplexityResult:
    """exp(mean NLL) of ``tokens[1:]`` given the prefix; state carries across chunks."""
    if len(tokens) < 2:
        raise ArgumentError("need at least 2 tokens to measure perplexity")
    t0 = time.monotonic()
    state = model.new_state()
    nll = 0.0
    for start in range(0, len(tokens) - 1, chunk):
        part = list(tokens[start : start + chunk])
        logits = np.asarray(model.forward(part, state, full_output=True), np.float32)
        # position i predicts token start + i + 1, so chunks cover every target once
        targets = tokens[start + 1 : start + 1 + len(part)]
        nll += log_softmax_nll(logits[: len(targets)], targets)
    return PerplexityResult(len(tokens) - 1, nll, time.monotonic() - t0)
