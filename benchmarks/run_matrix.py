#!/usr/bin/env python3
"""The standard benchmark matrix: shapes × formats × threads {2, 1} (+ one context sweep).

    PYTHONPATH=/tmp/rwe-site-NAME python benchmarks/run_matrix.py [--cache DIR] [--quick]

For every shape it writes a synthetic bf16 checkpoint (rwkv_edge.synthetic)
into the cache, quantizes it with the project's quantizer (``rwkv-edge
quantize``) into each format, and runs ``rwkv-edge bench`` on it in a fresh
process (so peak RSS is the model's own) with 2 threads against 1 (``--vs``).
Each bench measures the machine's bandwidth itself, in the same process, right
before its model. Results: benchmarks/results/<shape>-<format>.json plus
matrix.json (what ran, what was skipped and why, load averages around each run:
the machine is shared, so figures taken while it was busy say so).

Budget: under 15 minutes on a 2-core machine including generation; checkpoints
are cached, so reruns skip generation and quantization.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SHAPES = ("12x768", "24x1024", "24x2048")
FORMATS = ("q8_0", "q4_0", "q4_1", "f16")
CONTEXT = ("12x768", "q8_0", "0,1024,8192,32768")  # shape, format, positions of the sweep
# Subprocesses run outside the checkout: `python -c` puts the cwd first on sys.path, and the
# checkout's rwkv_edge/ (unbuilt) would shadow the installed one.
CLI = [sys.executable, "-c", "import sys; from rwkv_edge.cli.main import main; sys.exit(main())"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def synthetic(shape: str, cache: Path) -> Path:
    """The bf16 checkpoint of a shape (bf16: what BlinkDL publishes), generated once."""
    from rwkv_edge import synthetic as ms

    path = cache / f"synthetic-{shape}-bf16.pth"
    if not path.exists():
        log(f"generating {path.name}")
        ms.write_synthetic(path, ms.SyntheticSpec(*ms.parse_shape(shape), dtype="bf16"))
    return path


def have_quantize_command() -> bool:
    return (
        subprocess.run([*CLI, "quantize", "--help"], capture_output=True, cwd="/").returncode == 0
    )


def quantize(src: Path, fmt: str, cache: Path) -> tuple[Path | None, str]:
    """The GGUF of one format, made once; (None, why) when the quantizer cannot make it.

    4-bit scales by plain round-to-nearest (``rtn``): the weighted scale search makes
    better models but takes minutes per shape, and speed depends only on the format.
    """
    dst = cache / f"{src.stem.removesuffix('-bf16')}-{fmt}.gguf"
    how_file = dst.with_name(dst.name + ".how")  # how the cached file was made
    if dst.exists():
        return dst, how_file.read_text().strip() if how_file.exists() else "cached"
    tmp = dst.with_name(dst.name + ".partial.gguf")
    if have_quantize_command():
        log(f"quantizing {src.name} -> {dst.name}")
        cmd = [*CLI, "quantize", str(src), str(tmp), "--type", fmt]
        proc = subprocess.run([*cmd, "--method", "rtn"], capture_output=True, text=True, cwd=cache)
        how = "rwkv-edge quantize --method rtn"
        if proc.returncode != 0 and "--method" in proc.stderr:  # no such option: defaults
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cache)
            how = "rwkv-edge quantize"
    else:  # until the CLI command lands: the same quantizer, called as a library
        log(f"no quantize command; quantize.convert {src.name} -> {dst.name}")
        proc = subprocess.run(
            [sys.executable, "-c", _FALLBACK, str(src), str(tmp), fmt],
            capture_output=True,
            text=True,
            cwd=cache,
        )
        how = "rwkv_edge.quantize.convert, method rtn (library: no quantize command yet)"
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"{how} --type {fmt} failed: {tail[0]}"
    tmp.replace(dst)
    how_file.write_text(how + "\n")
    return dst, how


_FALLBACK = """import sys
from rwkv_edge.quantize.convert import convert
from rwkv_edge.quantize.recipe import make_recipe
src, dst, fmt = sys.argv[1:]
convert(src, dst, make_recipe(fmt, method="rtn"))
"""


def bench(model: Path, out: Path, threads: int, vs: str | None, extra: list[str]) -> dict[str, Any]:
    """One `rwkv-edge bench` in its own process; its JSON plus the load around it."""
    cmd = [
        *CLI,
        "bench",
        str(model),
        "--threads",
        str(threads),
        "--json",
        str(out),
        *extra,
    ]
    if vs:
        cmd += ["--vs", vs]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=model.parent)
    entry = {
        "model": model.name,
        "json": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        entry["error"] = (proc.stderr or proc.stdout).strip()[-2000:]
        log(f"bench failed on {model.name}: {entry['error'][-300:]}")
    else:
        print(proc.stdout, flush=True)
    return entry


def run(args: argparse.Namespace) -> dict[str, Any]:
    cache, results = Path(args.cache), Path(args.results)
    cache.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "shapes": args.shapes,
        "formats": args.formats,
        "runs": [],
        "skipped": [],
        "started_utc": _utc(),
    }
    extra = ["--decode", "16", "--prefill", "16,64"] if args.quick else []
    for shape in args.shapes:
        src = synthetic(shape, cache)
        for fmt in args.formats:
            if not args.prepare_only and time.perf_counter() - started > args.budget_min * 60:
                summary["skipped"].append({"shape": shape, "format": fmt, "why": "time budget"})
                continue
            model, how = quantize(src, fmt, cache)
            if args.prepare_only:
                continue
            if model is None:
                summary["skipped"].append({"shape": shape, "format": fmt, "why": how})
                log(f"skip {shape} {fmt}: {how}")
                continue
            log(f"bench {model.name} (2 threads vs 1)")
            entry = bench(model, results / f"{shape}-{fmt}.json", 2, "threads=1", extra)
            summary["runs"].append({"shape": shape, "format": fmt, "quantizer": how, **entry})
    if args.context and not args.quick and not args.prepare_only:
        left = args.budget_min * 60 + 120 - (time.perf_counter() - started)
        summary["context"] = _context_run(cache, results, left)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    return summary


def _context_run(cache: Path, results: Path, seconds_left: float) -> dict[str, Any]:
    """The sweep advances one state token by token up to 32k: keep the positions that fit."""
    shape, fmt, wanted = CONTEXT
    model, how = quantize(synthetic(shape, cache), fmt, cache)
    if model is None:
        return {"skipped": how}
    rate = _prefill_rate(results / f"{shape}-{fmt}.json")
    # position 0 costs nothing to reach; the others need p / rate seconds of prefill first
    positions = [p for p in map(int, wanted.split(",")) if p == 0 or p / rate < seconds_left - 60]
    dropped = [p for p in map(int, wanted.split(",")) if p not in positions]
    log(
        f"context sweep on {model.name} at {positions} (prefill ~{rate:.0f} tok/s; "
        f"dropped for time: {dropped or 'none'})"
    )
    entry = bench(
        model,
        results / f"context-{shape}-{fmt}.json",
        2,
        None,
        ["--context", ",".join(map(str, positions)), "--prefill", "", "--decode", "32"],
    )
    return {**entry, "positions": positions, "dropped_for_time": dropped}


def _prefill_rate(result: Path) -> float:
    """512-token prefill tok/s of the 2-thread run, or a pessimistic guess without one."""
    try:
        run = json.loads(result.read_text())["runs"][0]
        return max(p["tokens_per_s"] for p in run["prefill"])
    except (OSError, ValueError, KeyError, IndexError):
        return 50.0


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cache",
        default="/tmp/rwkv-edge-bench-cache",
        help="where synthetic checkpoints and GGUFs live (large; not in git)",
    )
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--formats", nargs="+", default=list(FORMATS))
    ap.add_argument("--no-context", dest="context", action="store_false")
    ap.add_argument("--quick", action="store_true", help="fewer tokens: a smoke test")
    ap.add_argument(
        "--summary",
        default="matrix.json",
        help="summary file name (matrix-NAME.json for a supplementary run)",
    )
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="only generate and quantize the checkpoints into the cache",
    )
    ap.add_argument(
        "--budget-min",
        type=float,
        default=13.0,
        help="stop starting new runs after this many minutes",
    )
    args = ap.parse_args()
    summary = run(args)
    summary["finished_utc"] = _utc()
    out = Path(args.results) / args.summary
    out.write_text(json.dumps(summary, indent=1) + "\n")
    log(f"done in {summary['total_seconds']:.0f} s; wrote {out}")
    return 0 if all(r["returncode"] == 0 for r in summary["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
