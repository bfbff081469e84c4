#!/usr/bin/env python3
"""Aggregate decode throughput of batched decode (``Model.forward_batch``).

    python benchmarks/batch.py MODEL.gguf [MODEL.gguf ...] [--batch 1,2,4,8,16]
        [--steps 16] [--rounds 3] [--threads 2] [--json OUT]

For each model and batch size B, B states are primed with a few tokens each, then
``steps`` decode steps advance all B at once; aggregate tokens/s = B * steps / time.
The batch sizes are interleaved within each round (so a slow spell of a shared machine
hits them alike) and the best round of each is kept. The JSON holds every figure and,
per model, each B's throughput as a ratio of B = 1's from the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rwkv_edge import Model, State


def _states(model: Model, n: int) -> list[State]:
    states = []
    for b in range(n):
        st = model.new_state()
        model.forward([(b * 37 + i) % model.config.n_vocab for i in range(4)], st)
        states.append(st)
    return states


def _tokens_per_s(model: Model, batch: int, steps: int) -> float:
    states = _states(model, batch)
    toks = [(7 * b) % model.config.n_vocab for b in range(batch)]
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model.forward_batch(toks, states)
        toks = [int(t) for t in logits.argmax(axis=1)]
    return batch * steps / (time.perf_counter() - t0)


def bench_model(path: Path, batches: list[int], steps: int, rounds: int, threads: int) -> Any:
    with Model.load(path, backend="c", threads=threads) as model:
        _tokens_per_s(model, max(batches), 2)  # first eval repacks; warm the pages
        best = {b: 0.0 for b in batches}
        for _ in range(rounds):
            for b in batches:
                best[b] = max(best[b], _tokens_per_s(model, b, steps))
        base = best[batches[0]]
        rows = [
            {"batch": b, "tokens_per_s": round(best[b], 2), "vs_first": round(best[b] / base, 3)}
            for b in batches
        ]
        for r in rows:
            print(
                f"{path.name:28s} B={r['batch']:3d} {r['tokens_per_s']:9.1f} tok/s "
                f"({r['vs_first']:.2f}x B={batches[0]})",
                flush=True,
            )
        return {"model": path.name, "isa": getattr(model.engine, "isa", "?"), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--batch", default="1,2,4,8,16")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    out = {
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
        "models": [
            bench_model(p, batches, args.steps, args.rounds, args.threads) for p in args.models
        ],
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
