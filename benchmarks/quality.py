#!/usr/bin/env python3
"""Quality beside speed: perplexity of every storage format on the demo model's held-out text.

    PYTHONPATH=/tmp/rwe-site-NAME python benchmarks/quality.py [--max-tokens N] [--keep DIR]

The demo model's fp16 source checkpoint (tests/data/demo_rwkv5_fp16.pth, 8 × 256,
vocab 4096; tools/train/RECIPE.md) is quantized with the project's quantizer,
through the same calls ``rwkv-edge quantize SRC DST --type T [--method M]
--tokenizer tools/train/out/demo_spm.model`` makes (default recipe, no
calibration), into f32, f16, q8_0, q4_1, q4_0 (weighted scale search, the
default) and q4_0 with ``--method rtn`` (ggml's round-to-nearest). Each file's
perplexity on tests/data/demo_heldout.txt is measured on the C engine by the
code behind ``rwkv-edge eval-ppl`` (``rwkv_edge.quantize.evaluate``): the whole
text as one sequence from the zero state, 256 tokens per forward call, the state
carried over. The q8_0 file is checked byte-for-byte against the packaged
demo model, which was made by the same command.

Baseline: the numba reference engine on the f32 file, over the first
``--numba-tokens`` tokens (default 8192: numba runs ~250 tokens/s here, so the
whole 52k-token text would take minutes), beside the C engine on the same tokens.

Writes benchmarks/results/quality.json (file size, bits/weight, perplexity, its
ratio to f32's, eval tokens/s, machine and load average); about 3 minutes on a
shared 2-core machine. benchmarks/make_performance_page.py renders it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "tests" / "data" / "demo_rwkv5_fp16.pth"
TOKENIZER = REPO / "tools" / "train" / "out" / "demo_spm.model"
TEXT = REPO / "tests" / "data" / "demo_heldout.txt"
PACKAGED = REPO / "rwkv_edge" / "data" / "demo-rwkv5-8.4M-q8_0.gguf"
OUT = REPO / "benchmarks" / "results" / "quality.json"
SCHEMA = "rwkv-edge-quality/1"

# (label, --type, --method)
FORMATS = (
    ("f32", "f32", "search"),
    ("f16", "f16", "search"),
    ("q8_0", "q8_0", "search"),
    ("q4_1", "q4_1", "search"),
    ("q4_0", "q4_0", "search"),
    ("q4_0 rtn", "q4_0", "rtn"),
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def quantize(src: Path, dst: Path, qtype: str, method: str, tokenizer: Path) -> Any:
    """What ``rwkv-edge quantize src dst --type qtype --method method --tokenizer ...`` does."""
    from rwkv_edge.quantize.convert import convert
    from rwkv_edge.quantize.recipe import make_recipe

    recipe = make_recipe(qtype, method=method)
    return convert(
        src, dst, recipe, tokenizer=("sentencepiece", tokenizer.read_bytes()), force=True
    )


def evaluate(path: Path, text: bytes, backend: str, max_tokens: int | None, **kw: Any) -> dict:
    """What ``rwkv-edge eval-ppl path textfile --backend b [--max-tokens n]`` does."""
    from rwkv_edge.quantize.evaluate import perplexity, tokenize_text

    from rwkv_edge.model import Model

    with Model.load(path, backend=backend, threads=kw.get("threads")) as model:
        tokens = tokenize_text(model, text)[:max_tokens]
        res = perplexity(model, tokens, kw.get("chunk", 256))
        used = model.backend
        threads = getattr(getattr(model, "_engine", None), "n_threads", None)
    return {
        "backend": used,
        "threads": threads,
        "tokens": res.tokens,
        "nll": res.nll,
        "loss": res.nll / res.tokens,
        "ppl": res.ppl,
        "seconds": round(res.seconds, 3),
        "tokens_per_s": res.tokens / res.seconds,
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from rwkv_edge.bench import system_info
    from rwkv_edge.model import c_backend_available

    if not c_backend_available():
        raise SystemExit("the C engine is not built; run tools/dev_install.sh NAME first")
    text = args.text.read_bytes()
    t_start = time.monotonic()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for label, qtype, method in FORMATS:
        dst = work / f"demo-{label.replace(' ', '-')}.gguf"
        conv = quantize(args.checkpoint, dst, qtype, method, args.tokenizer)
        files[label] = dst
        ev = evaluate(dst, text, "c", args.max_tokens, threads=args.threads, chunk=args.chunk)
        row = {
            "format": label,
            "type": qtype,
            "method": method,
            "recipe": conv.recipe.to_json(),
            "file_bytes": dst.stat().st_size,
            "bits_per_weight": conv.bits_per_weight,
            "n_params": conv.n_params,
            "quantize_seconds": round(conv.seconds, 3),
            **ev,
        }
        if label == "q8_0" and PACKAGED.exists():
            row["same_bytes_as_packaged"] = dst.read_bytes() == PACKAGED.read_bytes()
        rows.append(row)
        log(
            f"{label:9s} {row['file_bytes']:>11,d} B  {row['bits_per_weight']:5.2f} bits/w  "
            f"ppl {ev['ppl']:.4f}  {ev['tokens']} tokens  {ev['tokens_per_s']:.0f} tok/s"
        )
    f32 = next(r for r in rows if r["format"] == "f32")
    for r in rows:
        r["ppl_ratio_to_f32"] = r["ppl"] / f32["ppl"]
    baseline = None
    if args.numba_tokens:
        n = args.numba_tokens if args.numba_tokens > 0 else None
        numba = evaluate(files["f32"], text, "numba", n, chunk=args.chunk)
        c = evaluate(files["f32"], text, "c", n, threads=args.threads, chunk=args.chunk)
        baseline = {
            "file": "f32",
            "numba": numba,
            "c": c,
            "ppl_rel_diff": c["ppl"] / numba["ppl"] - 1,
        }
        log(
            f"baseline f32 first {numba['tokens']} tokens: numba ppl {numba['ppl']:.6f} "
            f"({numba['tokens_per_s']:.0f} tok/s), C {c['ppl']:.6f} "
            f"(rel {baseline['ppl_rel_diff']:+.1e})"
        )
    return {
        "schema": SCHEMA,
        "model": {
            "checkpoint": _rel(args.checkpoint),
            "tokenizer": _rel(args.tokenizer),
            "shape": "8x256",
            "n_params": f32["n_params"],
        },
        "text": {
            "file": _rel(args.text),
            "bytes": len(text),
            "max_tokens": args.max_tokens,
        },
        "eval": {"chunk": args.chunk, "threads": args.threads, "engine": "c"},
        "formats": rows,
        "baseline": baseline,
        "system": system_info(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "seconds": round(time.monotonic() - t_start, 1),
    }


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    ap.add_argument("--text", type=Path, default=TEXT)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--max-tokens", type=int, default=None, help="first N tokens (default all)")
    ap.add_argument(
        "--numba-tokens",
        type=int,
        default=8192,
        help="tokens for the numba baseline on f32 (0: skip it, -1: all)",
    )
    ap.add_argument("--threads", type=int, default=None, help="C engine threads (its default)")
    ap.add_argument("--chunk", type=int, default=256, help="tokens per forward call")
    ap.add_argument("--keep", type=Path, default=None, help="keep the GGUF files in this dir")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="rwe-quality-") as tmp:
            result = run(args, Path(tmp))
    assert all(math.isfinite(r["ppl"]) for r in result["formats"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
