"""Tokenizers: World (greedy byte trie), SentencePiece, and raw bytes; one interface.

    tok = WorldTokenizer()                 # the packaged rwkv_vocab_v20230424.txt
    ids = tok.encode("Hello world")        # [33155, 40213]
    tok.decode_bytes(ids) == b"Hello world"
    dec = tok.stream_decoder()             # for generation: never emits half a character
    text = dec.feed([10464]) + dec.feed([11685]) + dec.flush()

Id 0 is the World models' end-of-text token ("use 0 for <|endoftext|>"); it is
not in the vocab file, so it decodes to nothing.
"""

from __future__ import annotations

import ast
import codecs
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._trie import ByteTrie, TokenTable
from .errors import FormatError, TokenError
from .tensors import open_regular

WORLD_VOCAB_FILE = "rwkv_vocab_v20230424.txt"
WORLD_N_VOCAB = 65536  # what World models' heads emit; ids above the vocab file's are unused
# Ids index a dense table, so a hostile file's "1099511627776 'a' 1" must not size it.
MAX_TOKEN_ID = 1 << 20


class Tokenizer:
    """The shared interface. Subclasses implement ``encode_bytes`` and ``decode_bytes``."""

    kind = ""
    vocab_size = 0  # one more than the largest id decode_bytes accepts
    eos_id: int | None = None  # the end-of-text id, if the model has one

    def encode_bytes(self, data: bytes) -> list[int]:
        raise NotImplementedError

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_bytes(text_bytes(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD each."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        out = _id_list(ids)
        # min/max run in C; the per-id check only happens to name the culprit.
        try:
            ok = not out or (min(out) >= 0 and max(out) < self.vocab_size)
        except TypeError:  # a str or None among the ids
            ok = False
        if not ok or not all(map(_is_int, out)):
            bad = next(i for i in out if not _is_int(i) or not 0 <= i < self.vocab_size)
            if not _is_int(bad):
                raise TokenError(f"token ids must be ints, got a {type(bad).__name__}")
            raise TokenError(f"token id {bad} is outside the tokenizer's [0, {self.vocab_size})")
        return out


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _id_list(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, list):
        return ids
    what = f"token ids must be a sequence of ints, got a {type(ids).__name__}"
    if isinstance(ids, (str, bytes)):
        raise TokenError(what)
    try:
        return list(ids)
    except TypeError:
        raise TokenError(what) from None


def text_bytes(text: str) -> bytes:
    """UTF-8 of ``text``. Lone surrogates U+DC80..U+DCFF are the bytes Python could not
    decode (argv, stdin, file names: PEP 383) and become those bytes again; any other
    lone surrogate has no UTF-8 form and is a TokenError naming where it is."""
    if not isinstance(text, str):
        raise TokenError(f"text must be a str, got a {type(text).__name__}")
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError as e:
        raise TokenError(
            f"text holds a lone surrogate U+{ord(text[e.start]):04X} at index {e.start}, "
            "which is not a character and has no UTF-8 form"
        ) from None


class StreamDecoder:
    """Turns a stream of token ids into text, holding back incomplete UTF-8 sequences.

    A character split across tokens (World has tokens that are half a CJK
    character) is emitted once complete. Bytes become U+FFFD only when no
    continuation could make them valid, or at ``flush()``.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: int | Iterable[int]) -> str:
        if isinstance(ids, int):
            ids = (ids,)
        return self._utf8.decode(self._tok.decode_bytes(ids))

    def feed_bytes(self, data: bytes) -> str:
        return self._utf8.decode(data)

    @property
    def pending(self) -> bytes:
        """Bytes held back because they may start a character."""
        return bytes(self._utf8.getstate()[0])

    def flush(self) -> str:
        """End of stream: whatever is pending, as U+FFFD if incomplete."""
        return self._utf8.decode(b"", final=True)

    def reset(self) -> None:
        self._utf8.reset()


class ByteTokenizer(Tokenizer):
    """Byte-level models (vocab 256): token id = byte value."""

    kind = "bytes"
    vocab_size = 256

    def encode_bytes(self, data: bytes) -> list[int]:
        return list(_as_bytes(data))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return bytes(self._check_ids(ids))


def _as_bytes(data: bytes) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TokenError(f"encode_bytes takes bytes, got a {type(data).__name__}")
    return bytes(data)


# ---------------------------------------------------------------------------
# World
# ---------------------------------------------------------------------------


def _parse_literal(lit: str, lineno: int) -> bytes:
    # Most lines are plain quoted strings without escapes; their content is the
    # text between the quotes, which is much faster than literal_eval.
    if len(lit) >= 2 and lit[0] in "'\"" and lit[-1] == lit[0] and "\\" not in lit:
        return lit[1:-1].encode("utf-8")
    try:
        val = ast.literal_eval(lit)
    except (ValueError, SyntaxError, RecursionError, MemoryError):  # deeply nested junk
        raise FormatError(f"vocab line {lineno}: bad token literal {lit[:40]!r}") from None
    if isinstance(val, str):
        return val.encode("utf-8")
    if isinstance(val, bytes):
        return val
    raise FormatError(f"vocab line {lineno}: token literal is a {type(val).__name__}")


def parse_world_vocab(text: str) -> dict[int, bytes]:
    """Parse ``<id> <python literal> <byte length>`` lines (LF or CRLF) without eval."""
    vocab: dict[int, bytes] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        first, last = line.find(" "), line.rfind(" ")
        try:
            idx, length = int(line[:first]), int(line[last + 1 :])
        except ValueError:
            raise FormatError(f"vocab line {lineno}: expected '<id> <literal> <len>'") from None
        tok = _parse_literal(line[first + 1 : last], lineno)
        if len(tok) != length:
            raise FormatError(f"vocab line {lineno}: token is {len(tok)} bytes, line says {length}")
        if not 0 < idx <= MAX_TOKEN_ID or idx in vocab:
            raise FormatError(
                f"vocab line {lineno}: id {idx} repeats or is outside [1, {MAX_TOKEN_ID}]"
            )
        vocab[idx] = tok
    if not vocab:
        raise FormatError("vocab file has no tokens")
    return vocab


class WorldTokenizer(Tokenizer):
    """RWKV World: greedy longest byte match over rwkv_vocab_v20230424 (ids 1..65529)."""

    kind = "world"
    eos_id = 0

    def __init__(self, vocab: str | os.PathLike[str] | bytes | None = None) -> None:
        """``vocab``: a path, the file's bytes, or None for the packaged World vocab."""
        if vocab is None:
            data = (resources.files("rwkv_edge") / "data" / WORLD_VOCAB_FILE).read_bytes()
        elif isinstance(vocab, bytes):
            data = vocab
        else:
            data = Path(vocab).read_bytes()
        try:
            table = parse_world_vocab(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise FormatError(f"vocab file is not UTF-8 ({e})") from None
        self.vocab_size = max(table) + 1
        # id -> bytes as a list so decoding is one index per token; id 0 (and
        # any gap in the ids) decodes to nothing.
        self._bytes = [b""] * self.vocab_size
        for i, t in table.items():
            self._bytes[i] = t
        self._table = TokenTable(self._bytes)
        try:
            self._trie = ByteTrie.build(list(table.values()), list(table.keys()))
        except ValueError as e:
            raise FormatError(f"vocab file: {e}") from None

    def encode_bytes(self, data: bytes) -> list[int]:
        try:
            return self._trie.encode(_as_bytes(data))
        except ValueError as e:  # only a vocab without all 256 single bytes gets here
            raise TokenError(str(e)) from None

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        ids = _id_list(ids)
        if len(ids) < 256:  # streaming decodes a token at a time: stay in Python
            return b"".join(map(self._bytes.__getitem__, self._check_ids(ids)))
        try:
            return self._table.decode(ids)
        except (IndexError, OverflowError, TypeError, ValueError):
            self._check_ids(ids)  # names the bad id
            raise TokenError(f"token ids must be ints in [0, {self.vocab_size})") from None

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode_bytes([token_id])


# ---------------------------------------------------------------------------
# SentencePiece (models that embed a .model protobuf in their GGUF file)
# ---------------------------------------------------------------------------


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model given as the serialized .model bytes (or a path)."""

    kind = "sentencepiece"

    def __init__(self, model: bytes | str | os.PathLike[str]) -> None:
        import sentencepiece as spm

        proto = model if isinstance(model, bytes) else Path(model).read_bytes()
        try:
            self._sp: Any = spm.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as e:
            raise FormatError(f"not a SentencePiece model ({e})") from None
        self.vocab_size = int(self._sp.get_piece_size())
        eos = int(self._sp.eos_id())
        self.eos_id = eos if eos >= 0 else None
        self._pieces = [self._piece_bytes(i) for i in range(self.vocab_size)]

    def _piece_bytes(self, i: int) -> bytes:
        sp = self._sp
        if sp.is_byte(i):  # byte-fallback pieces are spelled <0xAB>
            return bytes([int(sp.id_to_piece(i)[3:5], 16)])
        if sp.is_control(i) or sp.is_unknown(i):
            return b""
        return str(sp.id_to_piece(i)).replace("\u2581", " ").encode("utf-8")

    def encode(self, text: str) -> list[int]:
        return self.encode_bytes(text_bytes(text))

    def encode_bytes(self, data: bytes) -> list[int]:
        text = _as_bytes(data).decode("utf-8", errors="replace")
        return [int(i) for i in self._sp.encode(text)]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        # Piece by piece (not sp.decode) so that streaming and whole decoding
        # agree; a leading word-boundary space is kept, as a continuation needs.
        return b"".join([self._pieces[i] for i in self._check_ids(ids)])


# ---------------------------------------------------------------------------
# Which tokenizer a model file uses
# ---------------------------------------------------------------------------


def tokenizer_from_kind(kind: str, data: bytes | None = None) -> Tokenizer:
    """A tokenizer from a GGUF-style kind name and the embedded tokenizer file."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "world":
        return WorldTokenizer(data or None)
    if kind == "sentencepiece":
        if not data:
            raise FormatError("a sentencepiece tokenizer needs its embedded .model data")
        return SentencePieceTokenizer(data)
    raise FormatError(f"unknown tokenizer kind {kind!r} (expected world, sentencepiece or bytes)")


def tokenizer_for_vocab_size(n_vocab: int) -> Tokenizer | None:
    """The tokenizer implied by a head size: 256 bytes, 65536 World, else unknown."""
    if n_vocab == 256:
        return ByteTokenizer()
    if n_vocab == WORLD_N_VOCAB:
        return WorldTokenizer()
    return None


def _gguf_tokenizer(path: Path) -> Tokenizer | None:
    from .gguf_file import read_gguf

    ckpt = read_gguf(path)  # validates; says "tokenizer_kind" and "tokenizer_data" (bytes)
    try:
        kind, data = ckpt.metadata.get("tokenizer_kind"), ckpt.metadata.get("tokenizer_data")
        n_vocab = ckpt.config.n_vocab
    finally:
        ckpt.close()
    if kind is None:
        return tokenizer_for_vocab_size(n_vocab)
    blob = data if data is None or isinstance(data, bytes) else np.asarray(data, np.uint8).tobytes()
    return tokenizer_from_kind(str(kind), blob)


def tokenizer_for_model(path: str | os.PathLike[str]) -> Tokenizer | None:
    """The tokenizer of a model file, or None where nothing says which one.

    GGUF files name their tokenizer and embed its file; for checkpoints
    (.pth, safetensors, HF directories) the vocab size decides.
    """
    p = Path(path)
    if p.is_file():
        with open_regular(p) as f:
            if f.read(4) == b"GGUF":
                return _gguf_tokenizer(p)
    if p.is_dir() and (p / WORLD_VOCAB_FILE).is_file():
        return WorldTokenizer(p / WORLD_VOCAB_FILE)
    from .checkpoint import open_checkpoint

    with open_checkpoint(p) as ckpt:
        n_vocab = ckpt.config.n_vocab
    return tokenizer_for_vocab_size(n_vocab)
