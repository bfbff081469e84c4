"""Train the demo model's sentencepiece tokenizer on the training split.

Choices, and why:
  * unigram, 4096 pieces: small embedding/head matrices for a ~9M model.
  * byte_fallback: any UTF-8 text encodes (bytes outside the vocab become <0xNN>).
  * identity normalisation, no dummy prefix, whitespace kept: decode(encode(s)) == s
    exactly, so the runtime can stream text back without surprises.
  * "\\n" is a user-defined piece: paragraphs and chat turns are separated by newlines,
    which sentencepiece would otherwise never see (it trains line by line).

    python tools/train/train_tokenizer.py --train tools/train/data/train.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sentencepiece as spm

VOCAB_SIZE = 4096


def train(train_txt: Path, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(train_txt),
        model_prefix=str(prefix),
        model_type="unigram",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        user_defined_symbols=["\n"],
        max_sentence_length=16384,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=2,
        minloglevel=1,
    )


def check_round_trip(model: Path, text: str) -> None:
    """The exact round trip the runtime relies on (see the module docstring)."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    ids = sp.encode(text)
    if sp.decode(ids) != text:
        raise SystemExit("tokenizer round trip failed")
    print(f"round trip ok: {len(text)} chars -> {len(ids)} tokens")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, default=Path("tools/train/data/train.txt"))
    ap.add_argument("--prefix", type=Path, default=Path("tools/train/out/demo_spm"))
    args = ap.parse_args()
    train(args.train, args.prefix)
    sample = args.train.read_text(encoding="utf-8")[:20000]
    check_round_trip(args.prefix.with_suffix(".model"), sample + "\n  Ünïcödé ✓ 12345\n")


if __name__ == "__main__":
    main()
