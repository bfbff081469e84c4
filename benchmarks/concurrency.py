#!/usr/bin/env python3
"""Do independent states on one loaded model decode concurrently?

    python benchmarks/concurrency.py MODEL.gguf [--tokens 100] [--rounds 5] [--json OUT]

One model is loaded with ``threads=1``; each round times, in one process:
  - ``one``: one Python thread decoding N tokens through its own State;
  - ``two``: two Python threads, each decoding N tokens through its own State, started
    together.
On a machine with two free cores, ``two / one`` near 1.0 means the calls ran in
parallel (each C call on its own context); near 2.0 means they were serialised.
The rounds alternate the two cases, and the JSON holds every round's times and
the median ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from rwkv_edge import Model


def _decode(model: Model, n: int, seed: int) -> None:
    state = model.new_state()
    tok = seed % model.config.n_vocab
    for _ in range(n):
        logits = model.forward([tok], state)
        tok = int(logits.argmax())


def _timed(model: Model, n: int, workers: int) -> float:
    """Seconds for `workers` threads to decode n tokens each, started together."""
    barrier = threading.Barrier(workers + 1)

    def work(i: int) -> None:
        barrier.wait()
        _decode(model, n, i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    model = Model.load(args.model, backend="c", threads=1)
    _decode(model, 8, 0)  # the first eval repacks the weights; keep it out of the rounds
    _timed(model, 4, 2)  # and the second context's creation
    rows = []
    for _ in range(args.rounds):
        one = _timed(model, args.tokens, 1)
        two = _timed(model, args.tokens, 2)
        rows.append({"one_s": one, "two_s": two, "ratio": two / one})
        print(
            f"1 x {args.tokens}: {one:.3f} s   2 x {args.tokens}: {two:.3f} s   "
            f"ratio {two / one:.2f}"
        )
    out = {
        "model": str(args.model),
        "tokens": args.tokens,
        "threads_per_call": 1,
        "rounds": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
    }
    print(f"median two/one: {out['median_ratio']:.2f} (1.0: parallel, 2.0: serialised)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
