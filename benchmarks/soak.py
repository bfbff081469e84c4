#!/usr/bin/env python3
"""Soak test: a long generation on one state stays finite, bounded and replayable.

    python benchmarks/soak.py [--model PATH] [--backend c|numba] [--tokens 20000]

Generates --tokens tokens one at a time on a single State (sampled from the
logits with a seeded RNG, so the text does not settle into a loop) and checks:
  * every logit is finite, at every step;
  * resident memory after the run is within --rss-budget-mb of the memory
    after the first --warmup tokens (no per-token leak);
  * the state saved at --save-at (through rwkv_edge.state_io when present),
    loaded into a freshly loaded model and fed the same next --replay tokens,
    gives bit-identical logits to the long run.
Prints one JSON line of figures and exits 1 if any check fails. On demand,
not in CI (about a minute on the tiny fixture with the C backend).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rwkv_edge import Model, State

DEFAULT_MODEL = (
    Path(__file__).resolve().parent.parent.parent / "shared/models/tiny-rwkv-5v2-730K.pth"
)


@dataclass
class Figures:
    model: str
    backend: str
    tokens: int
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    non_finite_steps: int = 0
    rss_after_warmup_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_growth_mb: float = 0.0
    replay_tokens: int = 0
    replay_max_abs_diff: float = float("nan")
    failures: list[str] = field(default_factory=list)


def rss_mb() -> float:
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def sample(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0) -> int:
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(p.size, p=p / p.sum()))


def snapshot(state: State, model: Model, tmp: Path) -> Path | State:
    """The state as a file when state_io exists (what a user would do), else a copy."""
    try:
        from rwkv_edge.state_io import save_state
    except ImportError:
        return state.copy()
    path = tmp / "soak.state"
    save_state(state, path, model)
    return path


def restore(saved: Path | State, model: Model) -> State:
    if isinstance(saved, State):
        return saved.copy()
    from rwkv_edge.state_io import load_state

    return load_state(saved, model)


def run(args: argparse.Namespace, tmp: Path) -> Figures:
    fig = Figures(str(args.model), args.backend, args.tokens)
    rng = np.random.default_rng(args.seed)
    replay_tokens: list[int] = []
    replay_logits: list[np.ndarray] = []
    saved: Path | State | None = None
    with Model.load(args.model, backend=args.backend, threads=args.threads) as model:
        state = model.new_state()
        logits = model.forward([0], state)
        t0 = time.perf_counter()
        for step in range(args.tokens):
            if step == args.warmup:
                fig.rss_after_warmup_mb = rss_mb()
            if step == args.save_at:
                saved = snapshot(state, model, tmp)
            tok = sample(logits, rng)
            logits = model.forward([tok], state)
            fig.non_finite_steps += int(not np.isfinite(logits).all())
            if saved is not None and len(replay_tokens) < args.replay:
                replay_tokens.append(tok)
                replay_logits.append(logits.copy())
        fig.seconds = time.perf_counter() - t0
        fig.rss_end_mb = rss_mb()
    fig.tokens_per_s = args.tokens / fig.seconds
    fig.rss_growth_mb = fig.rss_end_mb - fig.rss_after_warmup_mb
    if saved is not None:
        fig.replay_tokens = len(replay_tokens)
        fig.replay_max_abs_diff = replay(args, saved, replay_tokens, replay_logits)
    return fig


def replay(
    args: argparse.Namespace, saved: Path | State, tokens: list[int], expected: list[np.ndarray]
) -> float:
    """Max |logit difference| of a fresh model fed the saved state and the same tokens."""
    worst = 0.0
    with Model.load(args.model, backend=args.backend, threads=args.threads) as fresh:
        state = restore(saved, fresh)
        for tok, want in zip(tokens, expected, strict=True):
            got = fresh.forward([tok], state)
            worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


def check(fig: Figures, args: argparse.Namespace) -> None:
    if fig.non_finite_steps:
        fig.failures.append(f"{fig.non_finite_steps} steps produced non-finite logits")
    if fig.rss_growth_mb > args.rss_budget_mb:
        fig.failures.append(f"RSS grew {fig.rss_growth_mb:.1f} MB > {args.rss_budget_mb} MB")
    if fig.replay_max_abs_diff != 0.0:  # NaN counts as a difference
        fig.failures.append(f"replay from the saved state differs by {fig.replay_max_abs_diff}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--backend", default="auto", choices=["auto", "c", "numba"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=1_000)
    ap.add_argument("--save-at", type=int, default=None, help="default: tokens - replay")
    ap.add_argument("--replay", type=int, default=256)
    ap.add_argument("--rss-budget-mb", type=float, default=16.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.save_at is None:
        args.save_at = max(0, args.tokens - args.replay)
    with tempfile.TemporaryDirectory(prefix="rwe-soak-") as tmp:
        fig = run(args, Path(tmp))
    check(fig, args)
    print(json.dumps(asdict(fig)))
    return 1 if fig.failures else 0


if __name__ == "__main__":
    sys.exit(main())
