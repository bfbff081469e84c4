"""Hostile and broken GGUF files against both readers: clean errors, no crash, no hang.

A small valid model file (1 layer, 32 wide, q8_0 matrices) is taken apart into
its metadata and tensor table and reassembled with one lie at a time. The
Python reader (``read_gguf``) runs in this process; the C loader
(``Model.load(..., backend="c")``) runs all variants in one child process
with a memory limit and a timeout, so a segfault, an abort, a hang or a huge
allocation shows up as a failed test naming the variant instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge.errors import FormatError, RwkvEdgeError, VersionError

gguf_file = pytest.importorskip("rwkv_edge.gguf_file")
convert = pytest.importorskip("rwkv_edge.quantize.convert")
recipe_mod = pytest.importorskip("rwkv_edge.quantize.recipe")

C_MEMORY_LIMIT = 4 << 30  # address space of the child: a lying size must not allocate it
C_TIMEOUT_S = 240

# ---------------------------------------------------------------------------
# The valid fixture
# ---------------------------------------------------------------------------


def _tiny_safetensors(path: Path) -> Path:
    """A 1-layer v5.2 model, n_embd 32 (one head of 32), n_ffn 32, byte vocab."""
    g = np.random.default_rng(7)
    c, v = 32, 256
    shapes = {
        "emb.weight": (v, c),
        "head.weight": (v, c),
        "ln_out.weight": (c,),
        "ln_out.bias": (c,),
        "blocks.0.ln0.weight": (c,),
        "blocks.0.ln0.bias": (c,),
    }
    p = "blocks.0."
    for n in ("ln1", "ln2", "att.ln_x"):
        shapes[p + n + ".weight"] = shapes[p + n + ".bias"] = (c,)
    for m in ("k", "v", "r", "g"):
        shapes[p + f"att.time_mix_{m}"] = (1, 1, c)
    shapes[p + "att.time_decay"] = shapes[p + "att.time_faaaa"] = (1, c)
    for n in ("receptance", "key", "value", "output", "gate"):
        shapes[p + f"att.{n}.weight"] = (c, c)
    for n in ("key", "receptance", "value"):
        shapes[p + f"ffn.{n}.weight"] = (c, c)
    shapes[p + "ffn.time_mix_k"] = shapes[p + "ffn.time_mix_r"] = (1, 1, c)
    header, blobs, off = {}, [], 0
    for name, shape in shapes.items():
        raw = (g.standard_normal(shape) * 0.3).astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("tiny")
    dst = d / "tiny.gguf"
    convert.convert(_tiny_safetensors(d / "tiny.safetensors"), dst, recipe_mod.make_recipe("q8_0"))
    return dst.read_bytes()


# ---------------------------------------------------------------------------
# Take a GGUF apart and put it back together (with lies)
# ---------------------------------------------------------------------------

_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


@dataclass(frozen=True)
class KV:
    key: str
    vtype: int
    payload: bytes  # the encoded value after the type field


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]
    gtype: int
    offset: int


@dataclass(frozen=True)
class Gguf:
    version: int
    kvs: tuple[KV, ...]
    tensors: tuple[TensorInfo, ...]
    data: bytes  # the data section, from its aligned start
    n_tensors: int | None = None  # header counts; None = the true count
    n_kv: int | None = None

    def kv(self, key: str) -> KV:
        return next(k for k in self.kvs if k.key == key)

    def with_kv(self, key: str, vtype: int, payload: bytes) -> Gguf:
        kvs = (*(k for k in self.kvs if k.key != key), KV(key, vtype, payload))
        return replace(self, kvs=kvs)

    def without_kv(self, key: str) -> Gguf:
        return replace(self, kvs=tuple(k for k in self.kvs if k.key != key))

    def with_tensor(self, i: int, **changes: object) -> Gguf:
        ts = list(self.tensors)
        ts[i] = replace(ts[i], **changes)  # type: ignore[arg-type]
        return replace(self, tensors=tuple(ts))


def _gstr(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _value_len(buf: bytes, pos: int, vtype: int) -> int:
    """Bytes the encoded value of type vtype at pos takes."""
    if vtype in _SCALAR_SIZE:
        return _SCALAR_SIZE[vtype]
    if vtype == 8:
        return 8 + struct.unpack_from("<Q", buf, pos)[0]
    etype, count = struct.unpack_from("<IQ", buf, pos)
    n = 12
    for _ in range(count):
        n += _value_len(buf, pos + n, etype)
    return n


def parse(buf: bytes) -> Gguf:
    version, n_t, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos, kvs = 24, []
    for _ in range(n_kv):
        klen = struct.unpack_from("<Q", buf, pos)[0]
        key = buf[pos + 8 : pos + 8 + klen].decode()
        pos += 8 + klen
        vtype = struct.unpack_from("<I", buf, pos)[0]
        size = _value_len(buf, pos + 4, vtype)
        kvs.append(KV(key, vtype, buf[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    tensors = []
    for _ in range(n_t):
        nlen = struct.unpack_from("<Q", buf, pos)[0]
        name = buf[pos + 8 : pos + 8 + nlen].decode()
        pos += 8 + nlen
        nd = struct.unpack_from("<I", buf, pos)[0]
        ne = struct.unpack_from(f"<{nd}Q", buf, pos + 4)
        gtype, off = struct.unpack_from("<IQ", buf, pos + 4 + 8 * nd)
        tensors.append(TensorInfo(name, ne, gtype, off))
        pos += 4 + 8 * nd + 12
    start = -(-pos // 64) * 64
    return Gguf(version, tuple(kvs), tuple(tensors), buf[start:])


def assemble(g: Gguf) -> bytes:
    n_t = len(g.tensors) if g.n_tensors is None else g.n_tensors
    n_kv = len(g.kvs) if g.n_kv is None else g.n_kv
    out = bytearray(b"GGUF" + struct.pack("<IQQ", g.version, n_t, n_kv))
    for k in g.kvs:
        out += _gstr(k.key) + struct.pack("<I", k.vtype) + k.payload
    for t in g.tensors:
        out += _gstr(t.name) + struct.pack(f"<I{len(t.ne)}Q", len(t.ne), *t.ne)
        out += struct.pack("<IQ", t.gtype, t.offset)
    out += bytes(-len(out) % 64)
    return bytes(out) + g.data


def header_end(buf: bytes) -> int:
    """Bytes before the data section."""
    return len(buf) - len(parse(buf).data)


def test_assembler_round_trips(tiny: bytes) -> None:
    """Positive control: the unmodified reassembly is the same file, and both readers load it."""
    assert assemble(parse(tiny)) == tiny


# ---------------------------------------------------------------------------
# The lies
# ---------------------------------------------------------------------------

U32, U64, STR, ARR = 4, 10, 8, 9


def _idx(g: Gguf, name: str) -> int:
    return next(i for i, t in enumerate(g.tensors) if t.name == name)


def _nested_arrays(depth: int) -> bytes:
    return struct.pack("<IQ", ARR, 1) * depth + struct.pack("<IQ", U32, 0)


def _overlap(g: Gguf) -> Gguf:
    a, b = _idx(g, "blocks.0.ln1.weight"), _idx(g, "blocks.0.ln1.bias")
    return g.with_tensor(b, offset=g.tensors[a].offset)


def _dup_name(g: Gguf) -> Gguf:
    return g.with_tensor(_idx(g, "blocks.0.ln1.bias"), name="blocks.0.ln1.weight")


def _swap_dtype(name: str, gtype: int) -> Callable[[Gguf], Gguf]:
    return lambda g: g.with_tensor(_idx(g, name), gtype=gtype)


def _ne(name: str, ne: tuple[int, ...]) -> Callable[[Gguf], Gguf]:
    return lambda g: g.with_tensor(_idx(g, name), ne=ne)


def _offset(name: str, fn: Callable[[int, int], int]) -> Callable[[Gguf], Gguf]:
    def lie(g: Gguf) -> Gguf:
        i = _idx(g, name)
        return g.with_tensor(i, offset=fn(g.tensors[i].offset, len(g.data)))

    return lie


def _u32(key: str, value: int) -> Callable[[Gguf], Gguf]:
    return lambda g: g.with_kv(key, U32, struct.pack("<I", value))


def _first_key_len(n: int) -> Callable[[bytes], bytes]:
    return lambda b: b[:24] + struct.pack("<Q", n) + b[32:]


LN = "blocks.0.ln1.weight"
EMB = "emb.weight"
# name -> (mutation of the parsed file, or of its bytes, exceptions the Python reader may raise)
LIES: dict[str, Callable[[Gguf], Gguf]] = {
    "version_1": lambda g: replace(g, version=1),
    "version_99": lambda g: replace(g, version=99),
    "n_tensors_2^63": lambda g: replace(g, n_tensors=2**63),
    "n_tensors_plus_1": lambda g: replace(g, n_tensors=len(g.tensors) + 1),
    "n_kv_2^64-1": lambda g: replace(g, n_kv=2**64 - 1),
    "n_kv_plus_1": lambda g: replace(g, n_kv=len(g.kvs) + 1),
    "unknown_value_type": lambda g: g.with_kv("x.bad", 13, b"\0" * 8),
    "string_len_2^63": lambda g: g.with_kv("x.s", STR, struct.pack("<Q", 2**63)),
    "string_len_past_eof": lambda g: g.with_kv("x.s", STR, struct.pack("<Q", 10**6) + b"ab"),
    "string_not_utf8": lambda g: g.with_kv("x.s", STR, _gstr(b"\xff\xfe\xfd")),
    "string_overlong_utf8": lambda g: g.with_kv("x.s", STR, _gstr(b"a\xc0\xaf")),
    "string_surrogate_utf8": lambda g: g.with_kv("x.s", STR, _gstr(b"\xed\xa0\x80")),
    "string_cut_utf8": lambda g: g.with_kv("x.s", STR, _gstr("é".encode()[:1])),
    "array_count_2^62": lambda g: g.with_kv("x.a", ARR, struct.pack("<IQ", U32, 2**62)),
    "array_of_strings_2^28": lambda g: g.with_kv("x.a", ARR, struct.pack("<IQ", STR, 2**28)),
    "array_elem_type_bad": lambda g: g.with_kv("x.a", ARR, struct.pack("<IQ", 77, 1)),
    "nested_arrays_50000": lambda g: g.with_kv("x.a", ARR, _nested_arrays(50_000)),
    "arch_is_llama": lambda g: g.with_kv("general.architecture", STR, _gstr("llama")),
    "arch_not_string": _u32("general.architecture", 5),
    "missing_block_count": lambda g: g.without_kv("rwkv5.block_count"),
    "block_count_2^32-1": _u32("rwkv5.block_count", 2**32 - 1),
    "block_count_0": _u32("rwkv5.block_count", 0),
    "n_embd_2^31": _u32("rwkv5.embedding_length", 2**31),
    "n_vocab_2^32-1": _u32("rwkv5.vocab_size", 2**32 - 1),
    "head_count_0": _u32("rwkv5.attention.head_count", 0),
    "alignment_0": _u32("general.alignment", 0),
    "alignment_3": _u32("general.alignment", 3),
    "alignment_2^31": _u32("general.alignment", 2**31),
    "n_dims_0": _ne(LN, ()),
    "n_dims_5": _ne(LN, (32, 1, 1, 1, 1)),
    "ne_zero": _ne(LN, (0,)),
    "ne_2^63": _ne(LN, (2**63,)),
    "ne_product_overflows": _ne(EMB, (2**32, 2**32)),
    "ne_bytes_wrap_to_zero": _ne(LN, (2**62, 4)),
    "emb_rows_lie": _ne(EMB, (32, 257)),
    "emb_transposed": _ne(EMB, (256, 32)),
    "dtype_unknown_99": _swap_dtype(LN, 99),
    "dtype_q4_0_for_q8_0": _swap_dtype(EMB, 2),
    "dtype_f32_for_q8_0": _swap_dtype(EMB, 0),
    "dtype_q8_0_for_norm": _swap_dtype(LN, 8),
    "dtype_f16_for_norm": _swap_dtype(LN, 1),
    "offset_past_eof": _offset(LN, lambda o, n: n + 64),
    "offset_wraps": _offset(LN, lambda o, n: 2**64 - 64),
    "offset_misaligned": _offset(LN, lambda o, n: o + 4),
    "tail_past_eof": _offset(LN, lambda o, n: n - 64),
    "overlapping_tensors": _overlap,
    "duplicate_tensor_name": _dup_name,
}
RAW_LIES: dict[str, Callable[[bytes], bytes]] = {
    "key_len_2^63": _first_key_len(2**63),
    "key_len_2^32": _first_key_len(2**32),
    "data_cut_by_one": lambda b: b[:-1],
    "magic_only": lambda b: b[:4],
    "wrong_magic": lambda b: b"GGUG" + b[4:],
}


def _variants(tiny: bytes) -> dict[str, bytes]:
    g = parse(tiny)
    out = {name: assemble(lie(g)) for name, lie in LIES.items()}
    out.update({name: lie(tiny) for name, lie in RAW_LIES.items()})
    return out


def _write(d: Path, name: str, data: bytes) -> Path:
    p = d / f"{name}.gguf"
    p.write_bytes(data)
    return p


# Known bugs of the Python reader (rwkv_edge/gguf_file.py): name -> reason for a
# strict xfail. Empty: nested arrays, np.prod wrap-around and overlapping
# tensors were found here and fixed in 71af0bc.
PY_BUGS: dict[str, str] = {}


# Type swaps that leave a legal file (a q4_0 embedding, an f16 or q8_0 norm):
# an engine may run them or refuse them, but must not crash.
OK_OR_ERROR = ("dtype_q4_0_for_q8_0", "dtype_q8_0_for_norm", "dtype_f16_for_norm")


def _py_outcome(p: Path) -> str:
    """'ok', or 'error' for a clean refusal; anything else propagates and fails the test.

    The Python side is read_gguf plus the numba engine: the reader checks the
    container, the engine the shape and type of each tensor it uses.
    """
    from rwkv_edge.model import Model

    try:
        gguf_file.read_gguf(p).close()
        Model.load(p, backend="numba").close()
    except (FormatError, VersionError, RwkvEdgeError):
        return "error"
    return "ok"


@pytest.mark.parametrize("name", [*LIES, *RAW_LIES])
def test_python_side_refuses(
    name: str, tiny: bytes, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if name in PY_BUGS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=PY_BUGS[name]))
    outcome = _py_outcome(_write(tmp_path, name, _variants(tiny)[name]))
    assert outcome == "error" or name in OK_OR_ERROR


def test_python_reader_error_is_not_masked_by_buffererror(tiny: bytes, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="past the end"):
        gguf_file.read_gguf(_write(tmp_path, "cut", tiny[:-1]))


def test_python_side_truncated(tiny: bytes, tmp_path: Path) -> None:
    """Truncation at every header byte and every 61st data byte."""
    end = header_end(tiny)
    for n in [*range(end), *range(end, len(tiny), 61)]:
        assert _py_outcome(_write(tmp_path, f"cut{n}", tiny[:n])) == "error", n


def test_python_side_flipped(tiny: bytes, tmp_path: Path) -> None:
    """One byte flipped at every header position: a clean error or a load, nothing else."""
    end = header_end(tiny)
    opened = 0
    for n in range(end):
        buf = bytearray(tiny)
        buf[n] ^= 0xFF
        opened += _py_outcome(_write(tmp_path, f"flip{n}", bytes(buf))) == "ok"
    assert opened < end


# ---------------------------------------------------------------------------
# The C loader, in a child process
# ---------------------------------------------------------------------------

_CHILD = r"""
import os, resource, sys
if not os.environ.get("RWKV_EDGE_UNDER_ASAN"):  # ASan reserves terabytes of address space
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from rwkv_edge import Model
from rwkv_edge.errors import RwkvEdgeError
for path in sys.argv[2:]:
    try:
        Model.load(path, backend="c", threads=1).close()
        print("ok", flush=True)
    except RwkvEdgeError as e:
        print("error", type(e).__name__, str(e).replace("\n", " ")[:200], flush=True)
    except MemoryError:
        print("nomem", flush=True)
"""


def run_c_loader(paths: list[Path]) -> list[str]:
    """One outcome line per path; fails naming the file that crashed or hung the loader."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(C_MEMORY_LIMIT), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=C_TIMEOUT_S,
            env=env,
            cwd="/",
        )
    except subprocess.TimeoutExpired as e:
        done = (e.stdout or b"").count(b"\n") if isinstance(e.stdout, bytes) else 0
        pytest.fail(f"C loader hung on {paths[done] if done < len(paths) else '?'}")
    lines = proc.stdout.splitlines()
    if proc.returncode != 0:
        bad = paths[len(lines)] if len(lines) < len(paths) else "?"
        pytest.fail(f"C loader died (rc {proc.returncode}) on {bad}: {proc.stderr[-2000:]}")
    assert len(lines) == len(paths)
    return lines


@pytest.fixture(scope="module")
def c_backend() -> None:
    from rwkv_edge.model import c_backend_available

    if not c_backend_available():
        pytest.skip("the C extension is not built")


def test_c_loader_refuses_every_lie(tiny: bytes, tmp_path: Path, c_backend: None) -> None:
    variants = _variants(tiny)
    names = ["valid", *variants]
    paths = [_write(tmp_path, n, variants.get(n, tiny)) for n in names]
    outcomes = dict(zip(names, run_c_loader(paths), strict=True))
    assert outcomes.pop("valid") == "ok"
    accepted = [n for n, o in outcomes.items() if o == "ok" and n not in OK_OR_ERROR]
    assert not accepted, f"the C loader accepted: {accepted}"
    nomem = [n for n, o in outcomes.items() if o == "nomem"]
    assert not nomem, f"the C loader tried to allocate > {C_MEMORY_LIMIT >> 30} GiB for {nomem}"
    vague = [n for n, o in outcomes.items() if o.startswith("error") and len(o.split()) < 3]
    assert not vague, f"errors without a message: {vague}"


def test_c_loader_accepts_real_utf8(tiny: bytes, tmp_path: Path, c_backend: None) -> None:
    text = "héllo 世界 👍 \U0010ffff"
    ok = assemble(parse(tiny).with_kv("x.s", STR, _gstr(text)))
    assert run_c_loader([_write(tmp_path, "utf8", ok)]) == ["ok"]


def test_c_loader_truncated_and_flipped(tiny: bytes, tmp_path: Path, c_backend: None) -> None:
    end = header_end(tiny)
    cuts = [*range(end), *range(end, len(tiny), 61)]
    paths = [_write(tmp_path, f"cut{n}", tiny[:n]) for n in cuts]
    flips = []
    for n in range(end):
        buf = bytearray(tiny)
        buf[n] ^= 0xFF
        flips.append(_write(tmp_path, f"flip{n}", bytes(buf)))
    outcomes = run_c_loader(paths + flips)
    cut_ok = [n for n, o in zip(cuts, outcomes, strict=False) if not o.startswith("error")]
    assert not cut_ok, f"truncated files loaded or ran out of memory: {cut_ok[:10]}"
    assert sum(o == "nomem" for o in outcomes[len(cuts) :]) == 0


# ---------------------------------------------------------------------------
# rwkv5.emb_ln_dtype: optional ("f32" when absent), f32 / f16 / bf16 in both engines
# ---------------------------------------------------------------------------

EMB_LN_KEY = "rwkv5.emb_ln_dtype"


@pytest.mark.parametrize("value", [None, "f32", "f16", "bf16", "f8"])
def test_emb_ln_dtype_values(value: str | None, tiny: bytes, tmp_path: Path) -> None:
    """gguf_schema: absent means f32 (the C loader always did; the Python reader
    used to refuse the file), f16 and bf16 are accepted, anything else is refused."""
    from rwkv_edge import Model, c_backend_available

    with gguf_file.read_gguf(_write(tmp_path, "orig", tiny)) as ck:
        assert ck.metadata["emb_ln_dtype"] == "f32"
    g = parse(tiny)
    g = g.without_kv(EMB_LN_KEY) if value is None else g.with_kv(EMB_LN_KEY, STR, _gstr(value))
    p = _write(tmp_path, "emb", assemble(g))
    backends = ["numba", *(["c"] if c_backend_available() else [])]
    if value == "f8":
        with pytest.raises(FormatError, match="emb_ln_dtype"):
            gguf_file.read_gguf(p)
        for b in backends:
            with pytest.raises(FormatError, match="emb_ln_dtype"):
                Model.load(p, backend=b, threads=1)
        return
    with gguf_file.read_gguf(p) as ck:
        assert ck.metadata["emb_ln_dtype"] == (value or "f32")
    for b in backends:
        with Model.load(p, backend=b, threads=1) as m:
            got = m.forward([1, 2, 3])
        if value is None:  # the same model as the original file's explicit "f32"
            with Model.load(_write(tmp_path, "orig", tiny), backend=b, threads=1) as m:
                np.testing.assert_array_equal(got, m.forward([1, 2, 3]))


# ---------------------------------------------------------------------------
# The tokenizer file a GGUF embeds is parsed from the model file too
# ---------------------------------------------------------------------------

VOCAB_BUG = (
    "tokenizer.WorldTokenizer sizes its id table by the largest id in the file-supplied "
    "vocab: one line \"1073741824 'a' 1\" allocates 8 GB, 2**40 raises MemoryError; refuse "
    "ids above a bound (the World vocab has 65529; or the model's n_vocab) with FormatError"
)


def test_world_vocab_huge_id() -> None:  # was xfail(VOCAB_BUG); fixed in tokenizer.py
    tokenizer = pytest.importorskip("rwkv_edge.tokenizer")
    with pytest.raises(FormatError):
        tokenizer.tokenizer_from_kind("world", b"1099511627776 'a' 1\n")


@pytest.mark.parametrize(
    "vocab",
    [
        b"\xff\xfe",
        b"1 'a' 2\n",
        b"0 'a' 1\n",
        b"1 'a' 1\n1 'b' 1\n",
        b"1 __import__('os') 1\n",
        b"1 " + b"(" * 1000 + b")" * 1000 + b" 1\n",
        b"x 'a' 1\n",
        b"1 1.5 1\n",
    ],
    ids=["not_utf8", "len_lie", "id_zero", "dup_id", "call", "deep", "bad_id", "float"],
)
def test_world_vocab_lies(vocab: bytes) -> None:
    tokenizer = pytest.importorskip("rwkv_edge.tokenizer")
    with pytest.raises(FormatError):
        tokenizer.tokenizer_from_kind("world", vocab)
