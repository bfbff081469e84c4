"""Speed of the q4_0 scale search: numba (single thread and default threads) vs numpy.

    python benchmarks/search_speed.py [--rows 4096] [--cols 4096] [--numpy-rows 4096]

Prints weights/s for each (numba: best of 3) and checks the numba bytes equal the numpy reference's.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from rwkv_edge.quantize.search import _search_numpy, search_q4_0


def _rate(fn, x: np.ndarray, imp: np.ndarray | None, reps: int = 1) -> tuple[float, np.ndarray]:
    """Best weights/s of ``reps`` runs (the machine may be shared), and the output."""
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        out = fn(x, imp)
        best = max(best, x.size / (time.perf_counter() - t))
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--numpy-rows", type=int, default=4096, help="rows the slow reference runs")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.cols)) * 0.02).astype(np.float32)
    x[::7, 11] *= 30  # outliers
    imp = rng.exponential(1.0, args.cols).astype(np.float32)
    search_q4_0(x[:1], imp)  # compile (or load the cache)
    threads = numba.get_num_threads()
    print(f"matrix {args.rows}x{args.cols} float32, numba threads available: {threads}")
    for label, n in (("numba, 1 thread", 1), (f"numba, {threads} threads", threads)):
        numba.set_num_threads(n)
        rate, fast = _rate(search_q4_0, x, imp, reps=3)
        print(f"{label:>24}: {rate / 1e6:7.2f} M weights/s")
    numba.set_num_threads(threads)
    sub = x[: args.numpy_rows]
    rate, ref = _rate(_search_numpy, sub, imp)
    print(f"{'numpy reference':>24}: {rate / 1e6:7.2f} M weights/s ({sub.shape[0]} rows)")
    same = np.array_equal(ref, fast[: sub.shape[0]])
    print(f"numba bytes == numpy bytes: {same}")


if __name__ == "__main__":
    main()
