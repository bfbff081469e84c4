#!/usr/bin/env python3
"""How cost grows with work: prefill time against prompt length, quantizer time against size.

    PYTHONPATH=/tmp/rwe-site-NAME python benchmarks/scaling.py [--cache DIR]

Both should be straight lines through (about) the origin: a prompt of n tokens is n
tokens of matrix work with no attention over the past, and the quantizer streams
tensor by tensor. Each series gets a least-squares line and the largest relative
gap between it and the points, so the page can say how straight it is, not just
show numbers. Inputs come from benchmarks/run_matrix.py's cache (synthetic bf16
checkpoints and their GGUFs); the quantizer writes into a temporary directory.
Result: benchmarks/results/scaling.json (read by make_performance_page.py).
Not collected by pytest: it takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PROMPTS = (64, 128, 256, 512, 1024, 2048)
PREFILL_REPS = 3
PREFILL_MODELS = (("12x768", "q4_0"), ("24x1024", "q4_0"))
QUANT_SHAPES = ("12x768", "24x1024", "24x2048")
QUANT_FORMAT = "q8_0"
CLI = [sys.executable, "-c", "import sys; from rwkv_edge.cli.main import main; sys.exit(main())"]


def line_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """y = slope * x + intercept by least squares; worst |point - line| / point."""
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    worst = max(abs(y - (slope * x + intercept)) / y for x, y in zip(xs, ys, strict=True))
    return {"slope": float(slope), "intercept": float(intercept), "worst_rel_gap": float(worst)}


def prefill_series(model_path: Path, threads: int) -> dict[str, Any]:
    """Seconds for one prompt of each length from a fresh state, timed as `rwkv-edge bench`
    times prefill (the median of PREFILL_REPS runs)."""
    from rwkv_edge import Model
    from rwkv_edge.bench import time_prefill

    model = Model.load(model_path, threads=threads)
    rng = np.random.default_rng(0)
    vocab = model.config.n_vocab
    model.forward(rng.integers(0, vocab, 16, dtype=np.int32), model.new_state())  # page-in
    points = [
        time_prefill(model, rng.integers(0, vocab, n, dtype=np.int32), PREFILL_REPS)
        for n in PROMPTS
    ]
    model.close()
    fit = line_fit([p["tokens"] for p in points], [p["seconds"] for p in points])
    return {
        "model": model_path.name,
        "threads": threads,
        "reps": PREFILL_REPS,
        "points": points,
        "fit": fit,
    }


def quantize_series(cache: Path) -> dict[str, Any]:
    """Wall time of `rwkv-edge quantize` (RTN) per checkpoint, against its size on disk."""
    points = []
    with tempfile.TemporaryDirectory(prefix="rwe-scaling-") as tmp:
        for shape in QUANT_SHAPES:
            src = cache / f"synthetic-{shape}-bf16.pth"
            if not src.exists():
                continue
            dst = Path(tmp) / f"{shape}-{QUANT_FORMAT}.gguf"
            cmd = [*CLI, "quantize", str(src), str(dst), "--type", QUANT_FORMAT, "--method", "rtn"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"quantize failed on {src.name}: {proc.stderr[-500:]}")
            points.append(
                {
                    "shape": shape,
                    "input_bytes": src.stat().st_size,
                    "output_bytes": dst.stat().st_size,
                    "seconds": seconds,
                }
            )
            dst.unlink()
    fit = line_fit([p["input_bytes"] / 1e9 for p in points], [p["seconds"] for p in points])
    return {"format": QUANT_FORMAT, "method": "rtn", "points": points, "fit_per_gb": fit}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/rwkv-edge-bench-cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaling.json"))
    args = ap.parse_args()
    cache = Path(args.cache)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prefill = []
    for shape, fmt in PREFILL_MODELS:
        path = cache / f"synthetic-{shape}-{fmt}.gguf"
        if path.exists():
            prefill.append(prefill_series(path, args.threads))
            print(json.dumps(prefill[-1]["fit"]), flush=True)
    quant = quantize_series(cache)
    print(json.dumps(quant["fit_per_gb"]), flush=True)
    result = {
        "schema": "rwkv-edge-scaling/1",
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_after": os.getloadavg(),
        "prefill": prefill,
        "quantize": quant,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
