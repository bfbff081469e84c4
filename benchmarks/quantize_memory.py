"""Peak RSS of quantizing a large synthetic RWKV-5 checkpoint (default 24 x 2048, vocab 65536).

    python benchmarks/quantize_memory.py [--layers 24] [--embd 2048] [--type q8_0] [--keep DIR]

Writes a random fp16 safetensors checkpoint (streamed, a layer at a time),
then runs ``rwkv-edge quantize`` on it in a child process and reports the
child's peak RSS (ru_maxrss) next to the largest single tensor. The
quantizer streams tensor by tensor in row slabs, so the peak should sit
near "largest tensor + a constant" (target: less than 1.2 GB above it).
Not collected by pytest; it takes minutes and several GB of disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _shapes(n_layer: int, c: int, vocab: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """BlinkDL v5.2 names and shapes (head size 64, FFN 3.5 C rounded to 32)."""
    h, ffn = c // 64, int(c * 3.5) // 32 * 32
    yield "emb.weight", (vocab, c)
    yield "blocks.0.ln0.weight", (c,)
    yield "blocks.0.ln0.bias", (c,)
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2", "att.ln_x"):
            yield f"{p}{ln}.weight", (c,)
            yield f"{p}{ln}.bias", (c,)
        for m in "kvrg":
            yield f"{p}att.time_mix_{m}", (1, 1, c)
        yield f"{p}att.time_decay", (h, 64)
        yield f"{p}att.time_faaaa", (h, 64)
        for m in ("receptance", "key", "value", "gate", "output"):
            yield f"{p}att.{m}.weight", (c, c)
        for m in "kr":
            yield f"{p}ffn.time_mix_{m}", (1, 1, c)
        yield f"{p}ffn.key.weight", (ffn, c)
        yield f"{p}ffn.receptance.weight", (c, c)
        yield f"{p}ffn.value.weight", (c, ffn)
    yield "ln_out.weight", (c,)
    yield "ln_out.bias", (c,)
    yield "head.weight", (vocab, c)


def write_synthetic(path: Path, n_layer: int, c: int, vocab: int) -> int:
    """A safetensors fp16 file of random weights; returns the largest tensor's bytes."""
    shapes = list(_shapes(n_layer, c, vocab))
    header, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for _, shape in shapes:
            rows = shape[0] if len(shape) > 1 else 1
            per = int(np.prod(shape)) // rows
            for r in range(0, rows, 4096):  # bounded memory while writing, too
                k = min(4096, rows - r)
                (rng.standard_normal((k, per), np.float32) * 0.02).astype("<f2").tofile(f)
    return max(int(np.prod(s)) * 2 for _, s in shapes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--embd", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--type", default="q8_0")
    ap.add_argument("--method", default="rtn", help="q4_0 scales: rtn (fast) or search")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep the files")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="rwe-qmem-"))
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / "synthetic.safetensors", work / "synthetic.gguf"
    t0 = time.monotonic()
    if args.keep and src.exists():  # reuse a kept checkpoint (same arguments assumed)
        largest = max(int(np.prod(s)) * 2 for _, s in _shapes(args.layers, args.embd, args.vocab))
    else:
        largest = write_synthetic(src, args.layers, args.embd, args.vocab)
    print(f"source {src} ({src.stat().st_size / 1e9:.2f} GB), {time.monotonic() - t0:.0f} s")
    cmd = [
        sys.executable,
        "-c",
        "from rwkv_edge.cli.main import main; main()",
        "quantize",
        str(src),
        str(dst),
        "--type",
        args.type,
        "--method",
        args.method,
        "--force",
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    secs = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    print(f"quantized to {args.type} in {secs:.0f} s: {dst.stat().st_size / 1e9:.2f} GB")
    print(
        f"peak RSS {peak / 1e9:.3f} GB; largest tensor {largest / 1e9:.3f} GB (fp16); "
        f"above it {(peak - largest) / 1e9:.3f} GB (target < 1.2)"
    )
    if not args.keep:
        src.unlink()
        dst.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
