"""World tokenizer speed: rwkv-edge's numba trie vs the reference TRIE_TOKENIZER (rwkv pip).

    python benchmarks/bench_tokenizer.py [--mb 4] [--json out.json]

Builds a seeded mixed corpus (English prose, Python source, CJK, other
scripts, emoji), checks that both tokenizers give the same ids, and reports
encode and decode MB/s (best of --repeat runs, one thread). The reference is
timed on a slice, since it is pure Python.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def mixed_corpus(n_bytes: int, seed: int = 0) -> str:
    """About n_bytes of UTF-8: ~55% English, ~20% code, ~20% CJK/other scripts, ~5% emoji."""
    import textwrap

    r = random.Random(seed)
    words = (
        "the of and to in is was that for it with as his on be at by had are but from or "
        "have an they which one you were all we her she there would their will when who "
        "model state token quantized engine memory fast small 2024 3.5 1,000"
    )
    code = inspect.getsource(json) + inspect.getsource(textwrap)
    cjk = [
        "你好，世界。",
        "这是一个测试，我们在测量速度。",
        "日本語のテキストです。",
        "한국어 문장입니다.",
        "Привет, мир! ",
        "مرحبا بالعالم ",
        "नमस्ते दुनिया ",
    ]
    emoji = ["😀", "🚀 ", "👍🏽", "🔥", "✨ ", "👨\u200d👩\u200d👧"]
    parts: list[str] = []
    size = 0
    while size < n_bytes:
        k = r.random()
        if k < 0.55:
            s = " ".join(r.choice(words.split()) for _ in range(60)) + ".\n\n"
        elif k < 0.75:
            start = r.randrange(len(code) - 2000)
            s = code[start : start + 2000]
        elif k < 0.95:
            s = "".join(r.choice(cjk) for _ in range(30)) + "\n"
        else:
            s = "".join(r.choice(emoji) for _ in range(40)) + "\n"
        parts.append(s)
        size += len(s.encode("utf-8"))
    return "".join(parts)


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def load_reference() -> Any:
    import rwkv
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER  # type: ignore[import-untyped]

    return TRIE_TOKENIZER(str(Path(rwkv.__file__).with_name("rwkv_vocab_v20230424.txt")))


def run(mb: float, repeat: int, ref_fraction: float) -> dict[str, Any]:
    from rwkv_edge.tokenizer import WorldTokenizer

    text = mixed_corpus(int(mb * 1e6))
    data = text.encode("utf-8")
    t0 = time.perf_counter()
    ours = WorldTokenizer()
    load_s = time.perf_counter() - t0
    ids = ours.encode_bytes(data)  # also warms the JIT
    enc_s = best_seconds(lambda: ours.encode_bytes(data), repeat)
    dec_s = best_seconds(lambda: ours.decode_bytes(ids), repeat)
    out: dict[str, Any] = {
        "corpus_bytes": len(data),
        "tokens": len(ids),
        "bytes_per_token": len(data) / len(ids),
        "ours": {
            "encode_MBps": len(data) / enc_s / 1e6,
            "decode_MBps": len(data) / dec_s / 1e6,
            "load_seconds": load_s,
        },
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    try:
        ref = load_reference()
    except ImportError:
        out["reference"] = None
        return out
    piece = text[: int(len(text) * ref_fraction)]
    pbytes = piece.encode("utf-8")
    ref_ids = ref.encodeBytes(pbytes)
    ref_enc = best_seconds(lambda: ref.encodeBytes(pbytes), max(1, repeat // 2))
    ref_dec = best_seconds(lambda: ref.decodeBytes(ref_ids), max(1, repeat // 2))
    out["reference"] = {
        "encode_MBps": len(pbytes) / ref_enc / 1e6,
        "decode_MBps": len(pbytes) / ref_dec / 1e6,
        "timed_bytes": len(pbytes),
    }
    out["ids_identical"] = ref_ids == ours.encode_bytes(pbytes)
    out["encode_speedup"] = out["ours"]["encode_MBps"] / out["reference"]["encode_MBps"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=4.0, help="corpus size in MB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--ref-fraction",
        type=float,
        default=0.1,
        help="share of the corpus the (slow) reference encodes",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    args = ap.parse_args()
    result = run(args.mb, args.repeat, args.ref_fraction)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
