"""Build the demo model's English training corpus from Debian-packaged texts.

Sources (licences in CORPUS.md), all read from local Debian packages:
  * King James Bible, via the ``bible`` program of ``bible-kjv`` (its data file
    is compressed in the program's own format, so we let it decompress).
  * Jane Austen's six novels, from the R data package ``r-cran-janeaustenr``:
    only the ``.deb`` is needed (``apt-get download`` + ``dpkg-deb -x``), the
    R lazy-load database is parsed here without R.
  * The Jargon File 4.4.7 (``jargon-text``), plain-text edition.
  * Ambrose Bierce's The Devil's Dictionary (``dict-devil``), dictd data file.

Every text is reflowed to one paragraph per line, paragraphs separated by a
blank line, and cut into ~8 KB blocks; every 50th block goes to the
validation split, so train and validation never share a paragraph.

    python tools/train/prepare_corpus.py --austen-root /tmp/debs/ex --out tools/train/data
"""

from __future__ import annotations

import argparse
import gzip
import re
import struct
import subprocess
import zlib
from itertools import zip_longest
from pathlib import Path

BLOCK_CHARS = 8192
VAL_EVERY = 50  # 2 % of the blocks
HELDOUT_MAX_BYTES = 190_000
AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data"
JARGON_TXT = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
DEVIL_DICT = Path("/usr/share/dictd/devil.dict.dz")
BOX_CHARS = re.compile("[\u2500-\u257f]")


def reflow(lines: list[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs (a blank line ends one)."""
    paras: list[str] = []
    cur: list[str] = []
    for line in [*lines, ""]:
        s = line.strip()
        if s:
            cur.append(s)
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    return paras


def kjv_paragraphs() -> list[str]:
    """One paragraph per verse (number dropped); a chapter title before each chapter."""
    out = subprocess.run(
        ["bible", "gen1:1-rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    paras: list[str] = []
    verse: list[str] = []
    for line in out.splitlines():
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m or not line.strip() or re.match(r"^\S.* \d+$", line):
            if verse:
                paras.append(" ".join(verse))
            verse = [m.group(2).strip()] if m else []
            if not m and line.strip():
                paras.append(line.strip())  # chapter title, e.g. "Genesis 1"
        else:
            verse.append(line.strip())
    if verse:
        paras.append(" ".join(verse))
    return paras


def _r_strings(blob: bytes) -> list[str]:
    """Decode an R-serialised (XDR, version 3) character vector: the only type we need."""
    if blob[:2] != b"X\n":
        raise ValueError("not an XDR R serialisation")
    pos = 2 + 12  # format, writer version, minimal reader version
    (enc_len,) = struct.unpack(">i", blob[pos : pos + 4])
    pos += 4 + enc_len  # native encoding name (format 3 only)
    flags, length = struct.unpack(">ii", blob[pos : pos + 8])
    if flags & 0xFF != 16:  # STRSXP
        raise ValueError(f"expected a character vector, got SEXP type {flags & 0xFF}")
    pos += 8
    strings: list[str] = []
    for _ in range(length):
        _cflags, n = struct.unpack(">ii", blob[pos : pos + 8])
        pos += 8
        if n < 0:  # NA_character_
            strings.append("")
            continue
        strings.append(blob[pos : pos + n].decode("utf-8"))
        pos += n
    return strings


def austen_paragraphs(root: Path) -> list[str]:
    """The six novels from janeaustenr's lazy-load database (zlib entries at known offsets)."""
    data = root / AUSTEN_DATA
    index = gzip.decompress((data / "Rdata.rdx").read_bytes())
    names = re.findall(rb"\x00\x04\x00\t\x00\x00\x00.([a-z]+)", index)[:6]
    # The index lists (offset, length) int pairs for each book, in the order of `names`.
    pairs = re.findall(rb"\x00\x00\x00\r\x00\x00\x00\x02(.{8})", index, flags=re.S)
    rdb = (data / "Rdata.rdb").read_bytes()
    paras: list[str] = []
    for _name, raw in zip(names, pairs, strict=True):
        off, size = struct.unpack(">ii", raw)
        entry = rdb[off : off + size]
        paras += reflow(_r_strings(zlib.decompress(entry[4:])))
    return paras


def jargon_paragraphs() -> list[str]:
    """Jargon File lexicon; table rows drawn with box characters are dropped."""
    text = gzip.decompress(JARGON_TXT.read_bytes()).decode("utf-8")
    lines = [ln for ln in text.splitlines() if not BOX_CHARS.search(ln)]
    return reflow(lines)


def devil_paragraphs() -> list[str]:
    """The Devil's Dictionary; the dictd bookkeeping entries (00-database-*) are dropped."""
    text = gzip.decompress(DEVIL_DICT.read_bytes()).decode("latin-1")
    lines = [ln for ln in text.splitlines() if not ln.startswith(("00-database", "http://"))]
    return reflow(lines)


def split_blocks(paras: list[str]) -> tuple[list[str], list[str]]:
    """Cut paragraphs into ~BLOCK_CHARS blocks; every VAL_EVERY-th block is validation."""
    blocks: list[str] = []
    cur: list[str] = []
    size = 0
    for p in paras:
        cur.append(p)
        size += len(p) + 2
        if size >= BLOCK_CHARS:
            blocks.append("\n\n".join(cur))
            cur, size = [], 0
    if cur:
        blocks.append("\n\n".join(cur))
    val = [b for i, b in enumerate(blocks) if i % VAL_EVERY == VAL_EVERY // 2]
    train = [b for i, b in enumerate(blocks) if i % VAL_EVERY != VAL_EVERY // 2]
    return train, val


def heldout_text(val_blocks: list[str]) -> str:
    """The leading validation blocks within HELDOUT_MAX_BYTES (tests/data/demo_heldout.txt)."""
    kept: list[str] = []
    size = 0
    for b in val_blocks:
        n = len(b.encode("utf-8")) + 2
        if size + n > HELDOUT_MAX_BYTES:
            break
        kept.append(b)
        size += n
    return "\n\n".join(kept) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--austen-root", type=Path, required=True, help="dpkg-deb -x of r-cran-janeaustenr"
    )
    ap.add_argument("--out", type=Path, default=Path("tools/train/data"))
    ap.add_argument("--heldout", type=Path, default=Path("tests/data/demo_heldout.txt"))
    args = ap.parse_args()
    sources = {
        "kjv": kjv_paragraphs(),
        "austen": austen_paragraphs(args.austen_root),
        "jargon": jargon_paragraphs(),
        "devil": devil_paragraphs(),
    }
    train: list[str] = []
    val_by_source: list[list[str]] = []
    for name, paras in sources.items():
        t, v = split_blocks(paras)
        print(
            f"{name}: {len(paras)} paragraphs, {sum(map(len, paras))} chars, "
            f"{len(t)} train / {len(v)} val blocks"
        )
        train += t
        val_by_source.append(v)
    # Round-robin over sources so that a prefix of val (the shipped held-out file) mixes all.
    val = [b for group in zip_longest(*val_by_source) for b in group if b is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.txt").write_text("\n\n".join(train) + "\n", encoding="utf-8")
    (args.out / "val.txt").write_text("\n\n".join(val) + "\n", encoding="utf-8")
    args.heldout.parent.mkdir(parents=True, exist_ok=True)
    args.heldout.write_text(heldout_text(val), encoding="utf-8")


if __name__ == "__main__":
    main()
