"""Tokenise the train/validation splits into uint16 arrays for the GPU run.

Writes <data>/train.npy and <data>/val.npy (uint16; vocab 4096 fits), in a
folder git ignores (.git/info/exclude) so it can be carried to the device.

    python tools/train/tokenize_corpus.py --data tools/train/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import sentencepiece as spm


def encode_text(sp: spm.SentencePieceProcessor, text: str) -> np.ndarray:
    """Encode line by line and join with the "\\n" piece.

    With no dummy prefix and "\\n" a user-defined piece this equals sp.encode(text)
    (checked in main on a sample), but batches well and avoids one giant input.
    """
    newline = sp.piece_to_id("\n")
    lines = text.split("\n")
    out: list[int] = []
    for i, ids in enumerate(sp.encode(lines, num_threads=2)):
        if i:
            out.append(newline)
        out.extend(ids)
    return np.asarray(out, dtype=np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("tools/train/data"))
    ap.add_argument("--spm", type=Path, default=Path("tools/train/out/demo_spm.model"))
    ap.add_argument("--heldout", type=Path, default=Path("tests/data/demo_heldout.txt"))
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=str(args.spm))
    assert sp.get_piece_size() <= 65536
    # "heldout" is the shipped prefix of val: the trainer reports its loss for the tests.
    files = {s: args.data / f"{s}.txt" for s in ("train", "val")} | {"heldout": args.heldout}
    for split, path in files.items():
        text = path.read_text(encoding="utf-8")
        sample = text[:50000]
        if encode_text(sp, sample).tolist() != sp.encode(sample):
            raise SystemExit("line-wise encoding differs from whole-text encoding")
        ids = encode_text(sp, text)
        np.save(args.data / f"{split}.npy", ids)
        print(
            f"{split}: {len(text)} chars -> {len(ids)} tokens "
            f"({len(text) / len(ids):.2f} chars/token)"
        )


if __name__ == "__main__":
    main()
