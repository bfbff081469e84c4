"""Continuous batching: one thread steps every active sequence of one model together.

Each loop: admit waiting requests (up to ``max_batch`` active), start each from
the longest cached prefix of its prompt, ingest prompt chunks with
``model.forward`` (at most ``prefill_budget`` tokens per loop, so decoding
sequences wait for one chunk at most), then draw one token for every decoding
sequence and advance all their states with one ``forward_batch`` call. Text
handling (UTF-8 streaming, stop strings) and sampling are ``rwkv_edge.generate``'s
and ``rwkv_edge.sampling``'s; events go to each sequence's ``sink`` callback,
called on the scheduler thread. Free of HTTP: the server layer drives it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..generate import DEFAULT_CHUNK_LEN, TextStream, make_sampler
from ..sampling import Sampler, SamplingParams
from ..state import State
from ..state_cache import StateCache

log = logging.getLogger("rwkv_edge.server")


@dataclass
class GenRequest:
    """One generation: token ids in, text out, under these settings."""

    prompt_tokens: list[int]
    params: SamplingParams
    max_tokens: int
    stop: Sequence[str] = ()
    seed: int | None = None
    min_chars: int = 0  # stop strings count from this character of the output on
    strip_lead: bool = False  # drop leading whitespace of the output (after "Assistant:")


@dataclass
class Piece:
    text: str


@dataclass
class Done:
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    error: str = ""


Event = Piece | Done
Sink = Callable[[Event], None]


@dataclass
class _Seq:
    req: GenRequest
    sink: Sink
    sampler: Sampler
    text: TextStream
    state: State | None = None
    logits: npt.NDArray[np.float32] | None = None
    todo: list[int] = field(default_factory=list)  # prompt tokens not yet ingested
    generated: list[int] = field(default_factory=list)  # consumed by the state
    cached_tokens: int = 0
    lead: bool = True
    cancelled: bool = False

    def done(self, reason: str, error: str = "") -> Done:
        n = len(self.req.prompt_tokens)
        return Done(reason, n, len(self.generated), self.cached_tokens, error)


class Handle:
    """The caller's side of a submitted request: ``cancel()`` stops it soon after."""

    def __init__(self, seq: _Seq, scheduler: Scheduler) -> None:
        self._seq = seq
        self._scheduler = scheduler

    def cancel(self) -> None:
        self._seq.cancelled = True
        self._scheduler._wake()


class Scheduler:
    """Owns the decode loop of one model; ``submit`` is safe from any thread."""

    def __init__(
        self,
        model: Any,
        cache: StateCache | None = None,
        *,
        max_batch: int = 32,
        prefill_budget: int = DEFAULT_CHUNK_LEN,
    ) -> None:
        self.model = model
        self.cache = cache
        self.max_batch = max_batch
        self.prefill_budget = prefill_budget
        self.eos_id = model.tokenizer.eos_id
        self._waiting: deque[_Seq] = deque()
        self._active: list[_Seq] = []
        self._cv = threading.Condition()
        self._stopping = False
        self.tokens_generated = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="rwkv-edge-scheduler", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------

    def submit(self, req: GenRequest, sink: Sink) -> Handle:
        """Queue ``req``; ``sink`` gets its Pieces and then exactly one Done."""
        sampler = make_sampler(self.model, req.params, req.seed)
        seq = _Seq(req, sink, sampler, TextStream(self.model.tokenizer, req.stop, req.min_chars))
        with self._cv:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._waiting.append(seq)
            self._cv.notify()
        return Handle(seq, self)

    def load(self) -> dict[str, int | str]:
        with self._cv:
            return {
                "active": len(self._active),
                "waiting": len(self._waiting),
                "tokens_generated": self.tokens_generated,
                "batches": self.batches,
            }

    def stop(self, timeout: float | None = None) -> None:
        """End every sequence ("cancelled") and the loop; returns when the thread has."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._stopping or self._waiting or self._active):
                    self._cv.wait()
                if self._stopping:
                    break
                while self._waiting and len(self._active) < self.max_batch:
                    self._active.append(self._waiting.popleft())
            try:
                self._step()
            except Exception as e:  # a bug must not kill the server silently: end the batch
                log.exception("scheduler step failed")
                for seq in list(self._active):  # _finish removes it from the list
                    self._finish(seq, "error", f"internal error: {e}")
        with self._cv:
            for seq in [*self._active, *self._waiting]:
                self._finish(seq, "cancelled")
            self._active.clear()
            self._waiting.clear()

    def _step(self) -> None:
        for seq in [s for s in self._active if s.cancelled]:
            self._finish(seq, "cancelled")
        budget = self.prefill_budget
        for seq in [s for s in self._active if s.state is None or s.todo]:
            if budget <= 0:
                break
            budget -= self._prefill(seq, budget)
        ready = [s for s in self._active if s.state is not None and not s.todo]
        if ready:
            self._decode(ready)

    def _start(self, seq: _Seq) -> None:
        prompt = seq.req.prompt_tokens
        hit = self.cache.lookup(prompt) if self.cache is not None else None
        if hit is None:
            seq.state, seq.todo = self.model.new_state(), list(prompt)
        else:
            seq.state, seq.logits, seq.todo = hit.state, hit.logits, list(prompt[hit.length :])
            seq.cached_tokens = hit.length

    def _prefill(self, seq: _Seq, budget: int) -> int:
        """Ingest up to ``budget`` prompt tokens of ``seq``; returns how many it took."""
        if seq.state is None:
            self._start(seq)
        assert seq.state is not None
        chunk, seq.todo = seq.todo[:budget], seq.todo[budget:]
        if chunk:
            try:
                seq.logits = self.model.forward(chunk, seq.state)
            except Exception as e:
                self._finish(seq, "error", str(e))
                return len(chunk)
        if chunk and not seq.todo and self.cache is not None and seq.logits is not None:
            self.cache.put(seq.req.prompt_tokens, seq.state, seq.logits)
        return len(chunk)

    def _decode(self, ready: list[_Seq]) -> None:
        batch: list[tuple[_Seq, int]] = []
        for seq in ready:
            assert seq.logits is not None
            try:
                tok = seq.sampler.sample(seq.logits)
            except Exception as e:  # NaN logits, say: this sequence only
                self._finish(seq, "error", str(e))
                continue
            if tok == self.eos_id:  # end of text: not consumed, as in generate()
                self._end(seq, "stop")
                continue
            seq.sampler.accept(tok)
            batch.append((seq, tok))
        if not batch:
            return
        states: list[State] = [s.state for s, _ in batch if s.state is not None]
        assert len(states) == len(batch)
        logits = self.model.forward_batch([t for _, t in batch], states)
        self.batches += 1
        self.tokens_generated += len(batch)
        for (seq, tok), row in zip(batch, logits, strict=True):
            seq.logits = row
            seq.generated.append(tok)
            self._emit(seq, seq.text.feed(tok))
            if seq.text.held_text is not None:
                self._end(seq, "stop")
            elif len(seq.generated) >= seq.req.max_tokens:
                self._emit(seq, seq.text.finish())
                self._end(seq, "stop" if seq.text.held_text is not None else "length")

    def _emit(self, seq: _Seq, text: str) -> None:
        if seq.lead and seq.req.strip_lead:
            text = text.lstrip()
        if text:
            seq.lead = False
            seq.sink(Piece(text))

    def _end(self, seq: _Seq, reason: str) -> None:
        """A sequence finished normally: its final state is worth caching."""
        if reason == "stop" and seq.text.held_text is None:  # end of text: flush the tail
            self._emit(seq, seq.text.finish())
        if self.cache is not None and seq.generated and seq.state is not None:
            assert seq.logits is not None
            self.cache.put([*seq.req.prompt_tokens, *seq.generated], seq.state, seq.logits)
        self._finish(seq, reason)

    def _finish(self, seq: _Seq, reason: str, error: str = "") -> None:
        if seq in self._active:
            self._active.remove(seq)
        try:
            seq.sink(seq.done(reason, error))
        except Exception:  # the receiving side is gone (its loop closed): nothing to tell
            log.debug("sink of a finished sequence failed", exc_info=True)
