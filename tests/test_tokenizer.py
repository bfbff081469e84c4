"""Tokenizers: ids identical to the reference TRIE_TOKENIZER, exact round trips, streaming."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge.errors import FormatError, TokenError
from rwkv_edge.tokenizer import (
    ByteTokenizer,
    SentencePieceTokenizer,
    WorldTokenizer,
    parse_world_vocab,
    tokenizer_for_model,
    tokenizer_from_kind,
)

# LANDSCAPE.md section 4, run with rwkv pip 0.8.32's TRIE_TOKENIZER.
REFERENCE_IDS = {
    "Hello world": [33155, 40213],
    "User: hi\n\nAssistant:": [24281, 59, 4571, 261, 5585, 41693, 59],
    "你好，世界": [10464, 11685, 19137, 10267, 14610],
    "Eagle 7B 2024": [70, 24459, 290, 67, 3493, 644],
}
# sha256 of the vocab with LF line endings (LANDSCAPE.md section 4); the wheel's copy is CRLF.
VOCAB_LF_SHA256 = "e6dee3d4e31b4d5c40ac99508ac6c701ceef4bed681bf2167ce9a908552bca89"


@pytest.fixture(scope="module")
def world() -> WorldTokenizer:
    return WorldTokenizer()


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    mod = pytest.importorskip("rwkv.rwkv_tokenizer")
    vocab = Path(mod.__file__).with_name("rwkv_vocab_v20230424.txt")
    return mod.TRIE_TOKENIZER(str(vocab))


# ---------------------------------------------------------------------------
# A varied corpus, built from a seed
# ---------------------------------------------------------------------------


def _rand_chars(r: random.Random, lo: int, hi: int, n: int) -> str:
    return "".join(chr(r.randrange(lo, hi)) for _ in range(n))


def _english(r: random.Random) -> str:
    words = (
        "the of and to in is was that for it with as his on be at by had are but from or "
        "have an they which one you were all we her she there would their will when who "
        "Eagle RWKV tokenizer World quantized CPU 2024 3.14159 1,000,000 don't I'm U.S.A."
    )
    out = []
    for _ in range(4000):
        w = r.choice(words.split())
        out.append(w.capitalize() if r.random() < 0.1 else w)
        out.append(r.choice([" ", " ", " ", ", ", ". ", "\n", "\n\n", "; ", "! ", "? "]))
    return "".join(out)


def _cjk_and_scripts(r: random.Random) -> str:
    phrases = [
        "你好，世界。",
        "这是一个测试。",
        "日本語のテキストです。",
        "한국어 문장입니다.",
        "Привет, мир!",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "Γειά σου Κόσμε",
        "สวัสดีชาวโลก",
    ]
    parts = [r.choice(phrases) for _ in range(1500)]
    parts += [
        _rand_chars(r, 0x4E00, 0xA000, 3000),
        _rand_chars(r, 0x3040, 0x30FF, 500),
        _rand_chars(r, 0xAC00, 0xD7A4, 500),
        _rand_chars(r, 0x0400, 0x0500, 500),
    ]
    r.shuffle(parts)
    return "".join(parts)


def _emoji(r: random.Random) -> str:
    singles = _rand_chars(r, 0x1F300, 0x1FB00, 1500)
    zwj = "👨\u200d👩\u200d👧\u200d👦 👍🏽 🏳️\u200d🌈 🇯🇵🇫🇷 ❤️ " * 50
    return singles + zwj + "".join(r.choice("😀😂🤔🔥✨🚀") + " " for _ in range(500))


def _code() -> str:
    import inspect
    import json

    import rwkv_edge.tokenizer as m

    src = inspect.getsource(json) + inspect.getsource(m)
    return src + '\n\tint main(void) {\r\n\t\treturn 0;\r\n\t}\n{"k": [1, 2.5e-3, null]}\n'


def _whitespace_and_controls(r: random.Random) -> str:
    out = []
    for _ in range(600):
        ws = r.choice([" ", "\t", "\n", "\r\n", "\u3000", "\u00a0"])
        out.append(ws * r.choice([1, 2, 3, 7, 64, 127, 128, 129, 200, 300]))
        out.append(r.choice(["x", "def", "你", "", "\x00", "\x1b[0m", "\x7f", "\u0085", "\ufeff"]))
    out.append("".join(chr(c) for c in range(0, 0x20)) + "\x7f" + _rand_chars(r, 0x80, 0xA0, 64))
    return "".join(out)


def _random_bytes(r: random.Random) -> bytes:
    raw = bytes(r.randrange(256) for _ in range(60000))
    # Valid text cut at every byte offset leaves half characters at the edges.
    cjk = "你好，世界。日本語".encode()
    cuts = b"".join(cjk[i:j] for i in range(len(cjk)) for j in range(i + 1, len(cjk), 5))
    return raw + cuts + b"\xe4\xbd" + b"\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80"


def _corpus_text() -> dict[str, str]:
    r = random.Random(20240128)
    return {
        "english": _english(r),
        "cjk": _cjk_and_scripts(r),
        "emoji": _emoji(r),
        "code": _code(),
        "whitespace": _whitespace_and_controls(r),
    }


CORPUS = _corpus_text()


# ---------------------------------------------------------------------------
# World tokenizer vs the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, ids", list(REFERENCE_IDS.items()))
def test_landscape_reference_outputs(world: WorldTokenizer, text: str, ids: list[int]) -> None:
    assert world.encode(text) == ids
    assert world.decode(ids) == text


@pytest.mark.parametrize("section", sorted(CORPUS))
def test_ids_match_reference_on_corpus(world: WorldTokenizer, reference, section: str) -> None:  # type: ignore[no-untyped-def]
    text = CORPUS[section]
    ours = world.encode(text)
    assert len(text.encode("utf-8")) > 10000
    assert ours == reference.encode(text)
    assert world.decode_bytes(ours) == text.encode("utf-8")


def test_ids_match_reference_on_random_bytes(world: WorldTokenizer, reference) -> None:  # type: ignore[no-untyped-def]
    data = _random_bytes(random.Random(7))
    ours = world.encode_bytes(data)
    assert ours == reference.encodeBytes(data)
    assert world.decode_bytes(ours) == data
    # Random bytes are mostly single-byte tokens, id = byte + 1.
    assert sum(1 for i in ours if i <= 256) > 0.9 * len(ours)


def test_vocab_facts(world: WorldTokenizer) -> None:
    assert world.vocab_size == 65530
    assert [world.encode_bytes(bytes([b])) for b in (0, 65, 255)] == [[1], [66], [256]]
    assert world.encode("\n\n") == [261]
    assert len(world.encode_bytes(b"\xe4\xbd")) == 1  # a partial UTF-8 token (spec 5.9)
    assert world.encode(" " * 128) == [65529]
    assert world.encode(" " * 129) == [65529, 33]
    assert world.encode("100") == [world.encode("10")[0], world.encode("0")[0]]
    assert world.decode_bytes([0]) == b""  # end of text decodes to nothing


def test_packaged_vocab_is_the_published_file() -> None:
    from importlib import resources

    data = resources.files("rwkv_edge").joinpath("data", "rwkv_vocab_v20230424.txt").read_bytes()
    assert len(data) == 1_159_262 and data.count(b"\r\n") == 65529
    assert hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest() == VOCAB_LF_SHA256


def test_crlf_and_lf_parse_alike() -> None:
    from importlib import resources

    text = resources.files("rwkv_edge").joinpath("data", "rwkv_vocab_v20230424.txt").read_text()
    crlf = parse_world_vocab(text)
    lf = parse_world_vocab(text.replace("\r\n", "\n"))
    assert crlf == lf and len(crlf) == 65529 and min(crlf) == 1 and max(crlf) == 65529
    assert sum(1 for t in crlf.values() if not _is_utf8(t)) == 486  # the b'...' lines
    assert crlf[65529] == b" " * 128


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize(
    "line, msg",
    [
        ("1 'ab' 3\n", "line says 3"),
        ("1 __import__('os').system('true') 1\n", "bad token literal"),
        ("1 [1] 1\n", "list"),
        ("x 'a' 1\n", "expected"),
        ("1 'a' 1\n1 'b' 1\n", "repeats"),
        ("1099511627776 'a' 1\n", "outside"),  # must not size a 2**40-entry table
        ("0 'a' 1\n", "outside"),
        ("1 " + "(" * 100000 + ")" * 100000 + " 1\n", "bad token literal"),
    ],
)
def test_bad_vocab_lines_are_refused(line: str, msg: str) -> None:
    with pytest.raises(FormatError, match=msg):
        parse_world_vocab(line)


def test_small_custom_vocab_without_all_bytes() -> None:
    vocab = b"1 'a' 1\r\n2 'ab' 2\r\n3 'abc' 3\r\n4 b'\\xff' 1\r\n"
    tok = WorldTokenizer(vocab)
    assert tok.encode("abcaba") == [3, 2, 1]
    assert tok.encode_bytes(b"ab\xffa") == [2, 4, 1]
    with pytest.raises(TokenError, match="offset 2"):
        tok.encode("abz")
    with pytest.raises(TokenError):
        tok.decode([5])


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


def test_stream_decoder_never_emits_half_a_character(world: WorldTokenizer) -> None:
    text = CORPUS["cjk"][:3000] + CORPUS["emoji"][:1000]
    ids = world.encode(text)
    dec = world.stream_decoder()
    pieces = [dec.feed(i) for i in ids]
    assert "".join(pieces) + dec.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    # Some tokens really are half characters, so some pieces must be empty.
    assert sum(1 for p in pieces if p == "") > 10


def test_stream_decoder_replaces_only_real_errors(world: WorldTokenizer) -> None:
    dec = world.stream_decoder()
    assert dec.feed_bytes(b"\xe4\xbd") == "" and dec.pending == b"\xe4\xbd"
    assert dec.feed_bytes(b"\xa0") == "你" and dec.pending == b""
    assert dec.feed_bytes(b"\xff") == "\ufffd"  # never valid: replaced at once
    assert dec.feed_bytes(b"\xe4") == ""
    assert dec.feed_bytes(b"A") == "\ufffdA"  # the continuation did not come
    assert dec.feed_bytes(b"\xf0\x9f") == ""
    assert dec.flush() == "\ufffd"  # incomplete at the end of the stream


# ---------------------------------------------------------------------------
# Byte and SentencePiece tokenizers, choosing one for a model
# ---------------------------------------------------------------------------


def test_byte_tokenizer() -> None:
    tok = ByteTokenizer()
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.decode([104, 195, 169]) == "hé"
    assert tok.decode_bytes([255, 0]) == b"\xff\x00"
    with pytest.raises(TokenError):
        tok.decode([256])


def test_sentencepiece_tokenizer(tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS["english"].splitlines()[:400]))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "m"),
        vocab_size=400,
        byte_fallback=True,
        minloglevel=2,
    )
    tok = tokenizer_from_kind("sentencepiece", (tmp_path / "m.model").read_bytes())
    assert isinstance(tok, SentencePieceTokenizer) and tok.vocab_size == 400
    ids = tok.encode("the tokenizer was 你")  # 你 only through byte fallback
    assert tok.decode(ids) == " the tokenizer was 你"  # leading word boundary kept
    assert tok.decode_bytes(ids).endswith("你".encode())


def test_tokenizer_for_byte_fixture(tiny_v2: Path) -> None:
    assert isinstance(tokenizer_for_model(tiny_v2), ByteTokenizer)


def _write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    header, off = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + bytes(off))


def test_tokenizer_for_world_sized_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "w.safetensors"
    c, v = 8, 65536
    _write_safetensors(
        p,
        {
            "emb.weight": (v, c),
            "blocks.0.att.ln_x.weight": (c,),
            "blocks.0.att.time_decay": (2,),
            "blocks.0.ffn.key.weight": (32, c),
        },
    )
    tok = tokenizer_for_model(p)
    assert isinstance(tok, WorldTokenizer) and tok.encode("Hello world") == [33155, 40213]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(FormatError, match="unknown tokenizer kind"):
        tokenizer_from_kind("bpe")


@pytest.mark.parametrize("kind", ["bytes", "world"])
def test_tokenizer_for_gguf_uses_the_embedded_one(tiny_v2: Path, tmp_path: Path, kind: str) -> None:
    convert = pytest.importorskip("rwkv_edge.quantize.convert")
    from importlib import resources

    from rwkv_edge.quantize.recipe import make_recipe

    vocab = resources.files("rwkv_edge").joinpath("data", "rwkv_vocab_v20230424.txt")
    embedded = (kind, vocab.read_bytes() if kind == "world" else b"")
    dst = tmp_path / "m.gguf"
    convert.convert(tiny_v2, dst, make_recipe("f32"), tokenizer=embedded)
    tok = tokenizer_for_model(dst)
    assert tok is not None and tok.kind == kind
    assert tok.encode("Hello world") == (
        [33155, 40213] if kind == "world" else list(b"Hello world")
    )


def test_sentencepiece_demo_style_round_trips_exactly(tmp_path: Path) -> None:
    """The demo model's options: identity normalisation, no dummy prefix, "\\n" a piece."""
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS["english"].splitlines()[:400]))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "d"), model_type="unigram",
        vocab_size=400, byte_fallback=True, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, user_defined_symbols=["\n"],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )  # fmt: skip
    tok = SentencePieceTokenizer(tmp_path / "d.model")
    assert tok.eos_id == 2 and tok.decode_bytes([1, 2]) == b""
    text = "User: the  tokenizer\n\nAssistant: was 你好 👍\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text == tok._sp.decode(ids)
    dec = tok.stream_decoder()
    pieces = [dec.feed(i) for i in ids]
    assert "".join(pieces) + dec.flush() == text and all("\ufffd" not in p for p in pieces)


@pytest.mark.parametrize("bad", [-1, 65530, 1 << 40])
def test_long_and_short_decodes_refuse_bad_ids(world: WorldTokenizer, bad: int) -> None:
    ids = world.encode(CORPUS["english"][:2000])
    assert len(ids) > 256  # the long (numba) path
    for seq in ([*ids[:10], bad], [*ids, bad], np.array([*ids[:300], 5])):
        if bad in list(seq):
            with pytest.raises(TokenError, match=r"outside|must be"):
                world.decode_bytes(seq)
    assert world.decode_bytes(np.array(ids)) == world.decode_bytes(ids[:100]) + world.decode_bytes(
        ids[100:]
    )


def test_top_level_exports_are_the_tokenizer_classes() -> None:
    import rwkv_edge
    import rwkv_edge.tokenizer as m

    assert rwkv_edge.WorldTokenizer is m.WorldTokenizer
    tok = rwkv_edge.WorldTokenizer()
    assert tok.decode(tok.encode("Hello, 世界")) == "Hello, 世界"
    assert rwkv_edge.ByteTokenizer().encode_bytes(b"ab") == [97, 98]
    with pytest.raises(AttributeError):
        _ = rwkv_edge.NoSuchName  # type: ignore[attr-defined]
