"""The continuous-batching scheduler in-process: batched sequences get exactly what
each would get alone, through ``forward_batch`` when the model has it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from rwkv_edge import Model
from rwkv_edge.generate import complete
from rwkv_edge.sampling import SamplingParams
from rwkv_edge.server.scheduler import Done, Event, GenRequest, Piece, Scheduler
from rwkv_edge.state import State
from rwkv_edge.state_cache import StateCache


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    m = Model.load()
    yield m
    m.close()


class Batching:
    """The model with a ``forward_batch`` that records the batch sizes it was given."""

    def __init__(self, model: Any) -> None:
        self._m = model
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def forward_batch(self, tokens: Sequence[int], states: Sequence[State]) -> np.ndarray:
        self.sizes.append(len(tokens))
        return np.stack([self._m.forward([t], s) for t, s in zip(tokens, states, strict=True)])


def _run(sched: Scheduler, reqs: list[GenRequest]) -> list[tuple[str, Done]]:
    out: list[list[str]] = [[] for _ in reqs]
    done: list[Done | None] = [None] * len(reqs)
    finished = threading.Semaphore(0)

    def sink(i: int) -> Any:
        def f(ev: Event) -> None:
            if isinstance(ev, Piece):
                out[i].append(ev.text)
            else:
                done[i] = ev
                finished.release()

        return f

    for i, r in enumerate(reqs):
        sched.submit(r, sink(i))
    for _ in reqs:
        assert finished.acquire(timeout=60)
    return [("".join(o), d) for o, d in zip(out, done, strict=True) if d is not None]


@pytest.mark.parametrize("batched", [False, True])
def test_batched_sequences_equal_separate_generate_calls(model: Any, batched: bool) -> None:
    m = Batching(model) if batched else model
    sched = Scheduler(m, StateCache(64 << 20), max_batch=4, prefill_budget=16)
    prompts = ["And God said", "It is a truth universally acknowledged", "hacker n."]
    reqs = [
        GenRequest(model.tokenizer.encode(prompts[i % 3]), SamplingParams(), 20, (), seed=i)
        for i in range(6)
    ]
    try:
        got = _run(sched, reqs)
    finally:
        sched.stop()
    for r, (text, done) in zip(reqs, got, strict=True):
        want = complete(model, r.prompt_tokens, max_tokens=20, seed=r.seed)
        assert text == want.text and done.completion_tokens == len(want.tokens)
        assert done.finish_reason == ("length" if want.stats.stop_reason == "length" else "stop")
    if batched:  # at most max_batch at once, and more than one at a time
        assert max(m.sizes) <= 4 and max(m.sizes) > 1


def test_stop_stops_every_sequence(model: Any) -> None:
    sched = Scheduler(model, None)
    req = GenRequest(model.tokenizer.encode("The"), SamplingParams(), 10_000, ())
    seen = threading.Event()
    ends: list[Done] = []
    sched.submit(req, lambda ev: seen.set() if isinstance(ev, Piece) else ends.append(ev))
    assert seen.wait(30)
    sched.stop(timeout=30)
    assert [d.finish_reason for d in ends] == ["cancelled"]
    with pytest.raises(RuntimeError, match="shutting down"):
        sched.submit(req, lambda ev: None)


def test_serve_without_the_http_stack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from rwkv_edge.cli.main import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    r = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert r.exit_code == 1 and 'pip install "rwkv-edge[server]"' in r.output
    assert "uvicorn" in r.output and "starlette" not in r.output


class Failing:
    """The model, but its batched step raises: every sequence in it must hear of it."""

    def __init__(self, model: Any) -> None:
        self._m = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def forward_batch(self, tokens: Sequence[int], states: Sequence[State]) -> np.ndarray:
        raise RuntimeError("boom")


def test_a_failing_step_ends_its_sequences_with_an_error_and_the_loop_goes_on(
    model: Any,
) -> None:
    sched = Scheduler(Failing(model), None)
    reqs = [GenRequest(model.tokenizer.encode("The"), SamplingParams(), 5, ()) for _ in range(3)]
    try:
        got = _run(sched, reqs)
        assert [d.finish_reason for _, d in got] == ["error"] * 3
        assert all("boom" in d.error for _, d in got)
        assert sched.load()["active"] == 0
        sched.model = model  # the loop survived: it serves the next request
        ((text, done),) = _run(sched, reqs[:1])
        assert done.finish_reason == "length" and text
    finally:
        sched.stop()
