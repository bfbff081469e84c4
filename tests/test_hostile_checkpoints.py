"""Hostile and broken .pth / safetensors files: each must fail cleanly, none may run code.

Every file here is built by the test. Code-execution payloads would create a
marker file; the test asserts the marker never appears, so a regression in the
restricted unpickler shows up as a failing assertion rather than a silent exploit.
Structural lies (sizes, strides, offsets, header lengths) must end in a
``FormatError`` that names the problem, never an out-of-bounds read, an
unrelated exception type or a huge allocation.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge.checkpoint import open_checkpoint
from rwkv_edge.errors import FormatError, UnsafeCheckpointError

# ---------------------------------------------------------------------------
# A tiny pickle assembler: hostile pickles are written opcode by opcode, so the
# test controls exactly which opcodes reach the unpickler.
# ---------------------------------------------------------------------------


def _s(text: str) -> bytes:
    """BINUNICODE: a str."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _i(value: int) -> bytes:
    """BININT (signed 32-bit) or LONG1 for anything larger."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _glob(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0 form)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4 form)."""
    return _s(module) + _s(name) + b"\x93"


def _call(func: bytes, *args: bytes) -> bytes:
    """REDUCE: func(*args)."""
    return func + _tup(*args) + b"R"


def _dict(**items: bytes) -> bytes:
    return b"}(" + b"".join(_s(k) + v for k, v in items.items()) + b"u"


def _pickle(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _storage(key: str, numel: int, stype: str = "FloatStorage") -> bytes:
    """A persistent id as torch writes it: ('storage', torch.XStorage, key, 'cpu', numel)."""
    return _tup(_s("storage"), _glob("torch", stype), _s(key), _s("cpu"), _i(numel)) + b"Q"


def _tensor(
    key: str,
    numel: int,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    stype: str = "FloatStorage",
) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    return _call(
        _glob("torch._utils", "_rebuild_tensor_v2"),
        _storage(key, numel, stype),
        _i(offset),
        _tup(*(_i(s) for s in size)),
        _tup(*(_i(s) for s in stride)),
        b"\x89",
        _call(_glob("collections", "OrderedDict")),
    )


def _write_zip(
    path: Path,
    pkl: bytes,
    storages: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
    prefix: str = "archive/",
    compress: int = zipfile.ZIP_STORED,
) -> Path:
    """A torch-style zip: <prefix>data.pkl plus <prefix>data/<key> storages.

    Entries carry a fixed date, so the same call always writes the same bytes."""

    def put(zf: zipfile.ZipFile, name: str, raw: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = compress
        zf.writestr(info, raw)

    with zipfile.ZipFile(path, "w") as zf:
        put(zf, prefix + "data.pkl", pkl)
        for key, raw in (storages or {}).items():
            put(zf, f"{prefix}data/{key}", raw)
        for name, raw in (extra or {}).items():
            put(zf, name, raw)
    return path


F32_16 = np.arange(16, dtype=np.float32).tobytes()  # one 16-float storage


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file every code-execution payload tries to create."""
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a payload inside a checkpoint was executed"


def _expect(path: Path, exc: type[BaseException], *words: str) -> str:
    """Open path, require exc, and require each word in the message (case-insensitive)."""
    with pytest.raises(exc) as info:
        open_checkpoint(path).close()
    msg = str(info.value)
    for w in words:
        assert w.lower() in msg.lower(), f"message {msg!r} does not mention {w!r}"
    return msg


# ---------------------------------------------------------------------------
# A positive control: the reader does load a well-formed handcrafted pickle, so
# the negative tests below fail for the reason they claim.
# ---------------------------------------------------------------------------


def _rwkv_tensors(**extra: bytes) -> bytes:
    """The smallest tensor set detect_config accepts (a 1-layer v5.0 shape), from storage '0'."""
    return _dict(
        **{
            "emb.weight": _tensor("0", 16, 0, (4, 4), (4, 1)),
            "blocks.0.att.ln_x.weight": _tensor("0", 16, 4, (4,), (1,)),
            "blocks.0.att.time_decay": _tensor("0", 16, 0, (2,), (1,)),
            "blocks.0.ffn.key.weight": _tensor("0", 16, 2, (2, 4), (4, 1)),
        },
        **extra,
    )


def test_handcrafted_tensor_pickle_loads(tmp_path: Path) -> None:
    p = _write_zip(tmp_path / "ok.pth", _pickle(_rwkv_tensors()), {"0": F32_16})
    with open_checkpoint(p) as ck:
        assert ck.config.n_embd == 4 and ck.config.n_head == 2
        got = ck["blocks.0.ffn.key.weight"].to_f32()
        np.testing.assert_array_equal(got, [[2, 3, 4, 5], [6, 7, 8, 9]])


# ---------------------------------------------------------------------------
# Code-execution payloads: refused by name, never executed
# ---------------------------------------------------------------------------


def _payloads(cmd: str, marker: Path) -> dict[str, bytes]:
    """Pickles that would create `marker` if any global were resolved for real."""
    py = f"open({str(marker)!r}, 'w').close()"
    return {
        "global_os_system": _call(_glob("os", "system"), _s(cmd)),
        "global_posix_system": _call(_glob("posix", "system"), _s(cmd)),
        "global_builtin_eval_py2": _call(_glob("__builtin__", "eval"), _s(py)),
        "global_builtins_eval": _call(_glob("builtins", "eval"), _s(py)),
        "global_builtins_exec": _call(_glob("builtins", "exec"), _s(py)),
        "global_subprocess": _call(
            _glob("subprocess", "check_call"), _tup(_s("touch"), _s(str(marker)))
        ),
        "stack_global_os_system": _stack_glob("os", "system") + _tup(_s(cmd)) + b"R",
        "stack_global_dotted": _stack_glob("torch._utils", "_rebuild_tensor_v2.__globals__"),
        "inst": b"(" + _s(cmd) + b"ios\nsystem\n",
        "obj": b"(" + _glob("os", "system") + _s(cmd) + b"o",
        "newobj_popen": _glob("subprocess", "Popen") + _tup(_s("touch"), _s(str(marker))) + b"\x81",
        "newobj_ex": _glob("subprocess", "Popen")
        + _tup(_tup(_s("touch"), _s(str(marker))))
        + b"}\x92",
        "build_setstate": _call(_glob("collections", "OrderedDict"))
        + _tup(b"N", _dict(__setstate__=_glob("os", "system")))
        + b"b",
        "numpy_reconstruct": _call(_glob("numpy.core.multiarray", "_reconstruct")),
        "copyreg_reconstructor": _call(_glob("copyreg", "_reconstructor")),
        "getattr_chain": _call(_glob("builtins", "getattr"), _glob("os", "path"), _s("join")),
        "importlib": _call(_glob("importlib", "import_module"), _s("os")),
        "torch_load": _call(_glob("torch", "load"), _s(str(marker))),
        "payload_as_tensor_value": _dict(w=_call(_glob("os", "system"), _s(cmd))),
        "payload_in_storage_type": _dict(
            w=_tup(_s("storage"), _glob("os", "system"), _s("0"), _s("cpu"), _i(1)) + b"Q"
        ),
    }


PAYLOAD_NAMES = list(_payloads("", Path("x")))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_code_payload_is_refused_and_not_run(name: str, tmp_path: Path, marker: Path) -> None:
    body = _payloads(f"touch {marker}", marker)[name]
    p = _write_zip(tmp_path / f"{name}.pth", _pickle(body), {"0": F32_16})
    msg = _expect(p, UnsafeCheckpointError, "refusing")
    assert "nothing was executed" in msg


def test_extension_opcode_is_refused(tmp_path: Path, marker: Path) -> None:
    # EXT1 resolves through copyreg's registry, which must route via find_class.
    import copyreg

    copyreg.add_extension("os", "system", 241)
    try:
        body = b"\x82\xf1" + _tup(_s(f"touch {marker}")) + b"R"
        p = _write_zip(tmp_path / "ext.pth", _pickle(body))
        _expect(p, UnsafeCheckpointError, "os.system")
    finally:
        copyreg.remove_extension("os", "system", 241)


def test_build_cannot_rewrite_the_whitelist(tmp_path: Path) -> None:
    """BUILD on a whitelisted global must not change how later files load."""
    tamper = _glob("torch", "FloatStorage") + _tup(b"N", _dict(tag=_s("bf16"))) + b"b0"
    fn_tamper = (
        _glob("torch._utils", "_rebuild_tensor_v2")
        + _tup(b"N", _dict(__setstate__=_glob("collections", "OrderedDict")))
        + b"b0"
    )
    for i, body in enumerate((tamper, fn_tamper)):
        p = _write_zip(tmp_path / f"t{i}.pth", _pickle(body + _dict()), {"0": F32_16})
        with pytest.raises(FormatError):
            open_checkpoint(p)
    good = _write_zip(tmp_path / "good.pth", _pickle(_rwkv_tensors()), {"0": F32_16})
    with open_checkpoint(good) as ck:
        assert ck["blocks.0.att.ln_x.weight"].dtype == "f32"
        np.testing.assert_array_equal(ck["blocks.0.att.ln_x.weight"].to_f32(), [4, 5, 6, 7])


def test_build_cannot_replace_a_tensors_array(tmp_path: Path) -> None:
    body = _dict(w=_tensor("0", 16, 0, (4,), (1,)) + _tup(b"N", _dict(array=_s("x"))) + b"b")
    p = _write_zip(tmp_path / "b.pth", _pickle(body), {"0": F32_16})
    _expect(p, FormatError)


# ---------------------------------------------------------------------------
# Structural lies in the pickle or the zip
# ---------------------------------------------------------------------------

GEOMETRY_LIES = {
    # name: (storage numel, offset, size, stride, words in the message)
    "size_past_storage": (16, 0, (5, 4), (4, 1), ("past its storage",)),
    "offset_past_storage": (16, 15, (2,), (1,), ("past its storage",)),
    "stride_past_storage": (16, 0, (2, 2), (1000, 1), ("past its storage",)),
    "huge_stride": (16, 0, (2,), (2**62,), ("geometry",)),
    "negative_stride": (16, 8, (2,), (-4,), ("geometry",)),
    "negative_size": (16, 0, (-1,), (1,), ("geometry",)),
    "negative_offset": (16, -4, (2,), (1,), ("geometry",)),
    "rank_mismatch": (16, 0, (2, 2), (1,), ("geometry",)),
    "huge_numel_stride0": (16, 0, (2**40,), (0,), ("elements",)),
    "huge_numel_2d": (16, 0, (2**31, 2**31), (0, 0), ("elements",)),
    "numel_overflows_int64": (16, 0, (2**32, 2**32), (0, 0), ("elements",)),
    "storage_bigger_than_entry": (64, 0, (4,), (1,), ("holds 64 bytes",)),
    "negative_numel": (-1, 0, (1,), (1,), ("storage record",)),
}


@pytest.mark.parametrize("name", list(GEOMETRY_LIES))
def test_tensor_geometry_lies(name: str, tmp_path: Path) -> None:
    numel, offset, size, stride, words = GEOMETRY_LIES[name]
    pkl = _pickle(_dict(w=_tensor("0", numel, offset, size, stride)))
    p = _write_zip(tmp_path / f"{name}.pth", pkl, {"0": F32_16})
    _expect(p, FormatError, *words)


def test_missing_storage_entry(tmp_path: Path) -> None:
    pkl = _pickle(_dict(w=_tensor("7", 16, 0, (4,), (1,))))
    _expect(_write_zip(tmp_path / "m.pth", pkl, {"0": F32_16}), FormatError, "'7'", "missing")


@pytest.mark.parametrize("key", ["../../../../etc/passwd", "/etc/passwd", "..\\..\\x", "0/../0"])
def test_storage_key_path_traversal(key: str, tmp_path: Path) -> None:
    pkl = _pickle(_dict(w=_tensor(key, 4, 0, (4,), (1,))))
    _expect(_write_zip(tmp_path / "k.pth", pkl, {"0": F32_16}), FormatError, "missing")


def test_traversal_entry_names_are_never_extracted(tmp_path: Path) -> None:
    """Evil entry names sit in the zip; reading must not create anything outside it."""
    victim = tmp_path / "outside" / "escaped"
    evil = {f"archive/data/../../../{victim.parent.name}/escaped": b"x", "/tmp/abs_escape": b"x"}
    pkl = _pickle(_dict(w=_tensor("0", 16, 0, (4,), (1,))))
    p = _write_zip(tmp_path / "t.pth", pkl, {"0": F32_16}, extra=evil)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(FormatError):  # a lone tensor is not an RWKV model
        open_checkpoint(p)
    assert sorted(tmp_path.rglob("*")) == before
    assert not victim.exists()


ZIP_LIES: dict[str, Callable[[Path], Path]] = {
    "no_data_pkl": lambda p: _write_zip(p, b"", extra={}, prefix="archive/x"),
    "two_data_pkl": lambda p: _write_zip(p, _pickle(_dict()), extra={"b/data.pkl": b""}),
    "nested_zip": lambda p: _nested_zip(p),
    "pickle_not_dict": lambda p: _write_zip(p, _pickle(_tup(_i(1)))),
    "value_not_tensor": lambda p: _write_zip(p, _pickle(_dict(w=_i(3)))),
    "non_string_key": lambda p: _write_zip(p, _pickle(b"}(" + _i(1) + _i(2) + b"u")),
    "bad_persistent_id": lambda p: _write_zip(p, _pickle(_dict(w=_s("x") + b"Q"))),
    "truncated_pickle": lambda p: _write_zip(p, _pickle(_dict(w=_i(3)))[:-6]),
    "pickle_garbage": lambda p: _write_zip(p, b"\x80\x02\xff\xfe\xfd"),
    "huge_binbytes": lambda p: _write_zip(p, b"\x80\x03\x8e" + struct.pack("<Q", 2**62)),
    "storage_is_rebuild_fn": lambda p: _write_zip(
        p,
        _pickle(
            _dict(
                w=_call(
                    _glob("torch._utils", "_rebuild_tensor_v2"),
                    _glob("torch", "FloatStorage"),
                    _i(0),
                    _tup(_i(1)),
                    _tup(_i(1)),
                )
            )
        ),
    ),
    "deep_key": lambda p: _write_zip(p, _pickle(b"}(" + b"(" * 5000 + b"t" * 5000 + _i(1) + b"u")),
}


def _nested_zip(p: Path) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("archive/data.pkl", _pickle(_dict()))
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("model.pth", inner.getvalue())
    return p


@pytest.mark.parametrize("name", list(ZIP_LIES))
def test_zip_and_pickle_lies(name: str, tmp_path: Path) -> None:
    p = ZIP_LIES[name](tmp_path / f"{name}.pth")
    _expect(p, FormatError)


_MEMO_BOMB_CHILD = """
import os, resource, sys
if not os.environ.get("RWKV_EDGE_UNDER_ASAN"):  # ASan reserves terabytes of address space
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from rwkv_edge.checkpoint import open_checkpoint
from rwkv_edge.errors import RwkvEdgeError
try:
    open_checkpoint(sys.argv[1]).close()
    print("ok")
except RwkvEdgeError as e:
    print("refused", type(e).__name__)
except MemoryError:
    print("MemoryError")
"""


@pytest.mark.parametrize("index", [2**31 - 1, 2**32 - 1])
def test_memo_index_bomb(index: int, tmp_path: Path) -> None:
    """LONG_BINPUT with a huge memo key (found by fuzzing): the C unpickler sizes an
    array by the key and zeroes ~16-32 GB. Run in a child with 2 GiB of address space."""
    body = _rwkv_tensors()[:-1] + b"r" + struct.pack("<I", index) + b"u"
    p = _write_zip(tmp_path / "memo.pth", _pickle(body), {"0": F32_16})
    out = subprocess.run(
        [sys.executable, "-c", _MEMO_BOMB_CHILD, str(p)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.stdout.strip() in ("ok", "refused FormatError"), out.stdout + out.stderr[-1000:]


def test_ln_x_without_block_layers(tmp_path: Path) -> None:
    """An att.ln_x name outside 'blocks.N.' (found by fuzzing) leaves no layer numbers:
    a FormatError, not the bare ValueError of max([])."""
    body = _dict(
        **{
            "emb.weight": _tensor("0", 16, 0, (4, 4), (4, 1)),
            "xblocks.0.att.ln_x.weight": _tensor("0", 16, 4, (4,), (1,)),
        }
    )
    p = _write_zip(tmp_path / "nolayers.pth", _pickle(body), {"0": F32_16})
    _expect(p, FormatError, "blocks.N.")


def test_compressed_storage_bomb_is_refused(tmp_path: Path) -> None:
    """torch never compresses; a deflated 64 MiB of zeros must not be inflated into memory."""
    big = 64 << 20
    pkl = _pickle(_dict(w=_tensor("0", big // 4, 0, (big // 4,), (1,))))
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", bytes(big), compress_type=zipfile.ZIP_DEFLATED)
    assert (tmp_path / "bomb.pth").stat().st_size < big // 100
    _expect(tmp_path / "bomb.pth", FormatError, "compressed")


# ---------------------------------------------------------------------------
# Whole-file damage: truncation, byte corruption, garbage, legacy format
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_pth(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save(
        {
            "emb.weight": torch.arange(12.0).reshape(3, 4),
            "blocks.0.att.ln_x.weight": torch.ones(4, dtype=torch.bfloat16),
            "blocks.0.att.time_decay": torch.zeros(2, dtype=torch.float16),
            "blocks.0.ffn.key.weight": torch.zeros(8, 4),
        },
        buf,
    )
    return buf.getvalue()


def test_torch_fixture_loads(torch_pth: bytes, tmp_path: Path) -> None:
    """Positive control for the damage tests below: the undamaged file opens."""
    p = tmp_path / "ok.pth"
    p.write_bytes(torch_pth)
    with open_checkpoint(p) as ck:
        np.testing.assert_array_equal(ck["emb.weight"].to_f32()[2], [8, 9, 10, 11])
        assert ck["blocks.0.att.ln_x.weight"].dtype == "bf16"


def _open_or_format_error(path: Path) -> bool:
    """True if it opened; False on FormatError; any other exception fails the test."""
    try:
        open_checkpoint(path).close()
    except FormatError:
        return False
    return True


def _fresh(tmp_path: Path, n: int, data: bytes) -> Path:
    # A new name per variant: rewriting one file in place makes ext4 flush
    # (auto_da_alloc), which is 50x slower.
    p = tmp_path / f"v{n}"
    p.write_bytes(data)
    return p


def test_truncated_at_every_byte(torch_pth: bytes, tmp_path: Path) -> None:
    for n in range(len(torch_pth)):
        with pytest.raises(FormatError):
            open_checkpoint(_fresh(tmp_path, n, torch_pth[:n]))


def test_corrupted_at_every_byte(torch_pth: bytes, tmp_path: Path) -> None:
    """One byte flipped anywhere: a clean error or a load, never another exception."""
    opened = 0
    for n in range(len(torch_pth)):
        data = bytearray(torch_pth)
        data[n] ^= 0xFF
        opened += _open_or_format_error(_fresh(tmp_path, n, bytes(data)))
    assert 0 < opened < len(torch_pth)  # flips in tensor data load; most others are caught


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"P",
        b"PK\x03\x04",
        b"PK\x03\x04" + os.urandom(500),
        b"\x00" * 4096,
        b"<html>404 Not Found</html>",
        b"\x80\x02}q\x00.",
        b"GGUF"[:3],
    ],
    ids=repr,
)
def test_garbage_files(data: bytes, tmp_path: Path) -> None:
    p = tmp_path / "g.pth"
    p.write_bytes(data)
    _expect(p, FormatError)


def test_legacy_torch_format(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    p = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, p, _use_new_zipfile_serialization=False)
    _expect(p, FormatError, "legacy")


def test_failed_loads_do_not_leak_file_descriptors(tmp_path: Path) -> None:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc")
    bad_pth = _write_zip(tmp_path / "b.pth", _pickle(_dict(w=_tensor("9", 4, 0, (4,), (1,)))))
    bad_st = _safetensors(
        tmp_path / "b.safetensors",
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        b"",
    )
    before = len(os.listdir(fd_dir))
    kept = []  # the errors stay alive, as in a caller that logs them: their frames too
    for _ in range(50):
        for p in (bad_pth, bad_st):
            with pytest.raises(FormatError) as e:
                open_checkpoint(p)
            kept.append(e)
    assert len(os.listdir(fd_dir)) <= before


def test_hostile_shard_in_hf_directory(tmp_path: Path, marker: Path) -> None:
    d = tmp_path / "hf"
    d.mkdir()
    _write_zip(
        d / "pytorch_model.bin", _pickle(_call(_glob("os", "system"), _s(f"touch {marker}")))
    )
    _expect(d, UnsafeCheckpointError, "os.system")


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


def _safetensors(path: Path, header: object, data: bytes, hlen: int | None = None) -> Path:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw) if hlen is None else hlen) + raw + data)
    return path


def _entry(
    dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None
) -> dict[str, object]:
    return {
        "dtype": dtype,
        "shape": [4] if shape is None else shape,
        "data_offsets": [0, 16] if offsets is None else offsets,
    }


ST_LIES: dict[str, tuple[object, int | None, bytes, tuple[str, ...]]] = {
    # name: (header, header length override, data, words in the message)
    "hlen_huge": ({"w": _entry()}, 2**63, F32_16, ("header length",)),
    "hlen_past_eof": ({"w": _entry()}, 10_000, F32_16, ("header length",)),
    "hlen_zero": ({"w": _entry()}, 0, F32_16, ("header",)),
    "bad_json": (b'{"w": {"dtype": "F32",', None, F32_16, ("header",)),
    "non_utf8": (b'{"\xff\xfe": 1}', None, F32_16, ("header",)),
    "json_array": ([1, 2, 3], None, F32_16, ()),  # not even sniffed as safetensors
    "json_not_object": (b"{" + b" " * 7 + b"}", None, F32_16, ()),
    "deep_json": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, b"", ("header",)),
    "offsets_past_eof": ({"w": _entry(offsets=[0, 16])}, None, F32_16[:8], ("past the end",)),
    "offsets_far_past_eof": (
        {"w": _entry(shape=[2**40], offsets=[0, 2**42])},
        None,
        F32_16,
        ("past the end",),
    ),
    "offsets_negative": ({"w": _entry(offsets=[-16, 0])}, None, F32_16, ("size",)),
    "offsets_reversed": ({"w": _entry(offsets=[16, 0])}, None, F32_16, ("size",)),
    "dtype_size_lie": ({"w": _entry(dtype="F64")}, None, F32_16, ("size",)),
    "dtype_unknown": ({"w": _entry(dtype="I64")}, None, F32_16, ("I64",)),
    "dtype_not_string": ({"w": _entry(dtype=["F32"])}, None, F32_16, ("w",)),  # type: ignore[arg-type]
    "shape_negative": ({"w": _entry(shape=[-4], offsets=[0, 0])}, None, F32_16, ("size",)),
    "shape_overflow": (
        {"w": _entry(shape=[2**32, 2**32], offsets=[0, 0])},
        None,
        F32_16,
        ("size",),
    ),
    "shape_not_list": (
        {"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}},
        None,
        F32_16,
        ("w",),
    ),
    "entry_not_object": ({"w": "F32"}, None, F32_16, ("w",)),
    "missing_offsets": ({"w": {"dtype": "F32", "shape": [4]}}, None, F32_16, ("data_offsets",)),
}


@pytest.mark.parametrize("name", list(ST_LIES))
def test_safetensors_lies(name: str, tmp_path: Path) -> None:
    header, hlen, data, words = ST_LIES[name]
    p = _safetensors(tmp_path / f"{name}.safetensors", header, data, hlen)
    _expect(p, FormatError, *words)


def test_safetensors_truncated_at_every_byte(tmp_path: Path) -> None:
    header = {
        "emb.weight": _entry(shape=[2, 2]),
        "blocks.0.att.ln_x.weight": _entry(shape=[2]),
        "blocks.0.att.time_decay": _entry(shape=[1], offsets=[0, 4]),
        "blocks.0.ffn.key.weight": _entry(shape=[4, 2], offsets=[16, 48]),
        "__metadata__": {"format": "pt"},
    }
    header["blocks.0.att.ln_x.weight"]["data_offsets"] = [0, 8]
    full = _safetensors(tmp_path / "full.safetensors", header, F32_16[:48]).read_bytes()
    with open_checkpoint(tmp_path / "full.safetensors") as ck:  # positive control
        assert ck.config.n_ffn == 4
    for n in range(len(full)):
        with pytest.raises(FormatError):
            open_checkpoint(_fresh(tmp_path, n, full[:n]))


# ---------------------------------------------------------------------------
# Round 2 (issue 18): attacks on a complete, loadable model. ATTACKS builds each
# file; tests/fuzz/make_seeds.py seeds the fuzzers with them and
# tests/fuzz/regressions/ holds copies that tests/test_hostile_files.py runs through
# both engines, `info` and `quantize` in a child with a memory limit.
# ---------------------------------------------------------------------------

# A whole v5.2 model: C=8, H=2 (N=4), F=16, V=16, one layer, every tensor a view of storage "0".
_C, _H, _F, _V = 8, 2, 16, 16
_MODEL_SHAPES: dict[str, tuple[int, ...]] = {
    "emb.weight": (_V, _C),
    "blocks.0.ln0.weight": (_C,),
    "blocks.0.ln0.bias": (_C,),
    **{f"blocks.0.{n}": (_C,) for n in ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias")},
    **{f"blocks.0.att.time_mix_{m}": (1, 1, _C) for m in "kvrg"},
    "blocks.0.att.time_decay": (_H, _C // _H),
    "blocks.0.att.time_faaaa": (_H, _C // _H),
    **{f"blocks.0.att.{m}.weight": (_C, _C) for m in ("receptance", "key", "value", "output")},
    "blocks.0.att.gate.weight": (_C, _C),
    "blocks.0.att.ln_x.weight": (_C,),
    "blocks.0.att.ln_x.bias": (_C,),
    "blocks.0.ffn.time_mix_k": (1, 1, _C),
    "blocks.0.ffn.time_mix_r": (1, 1, _C),
    "blocks.0.ffn.key.weight": (_F, _C),
    "blocks.0.ffn.receptance.weight": (_C, _C),
    "blocks.0.ffn.value.weight": (_C, _F),
    "ln_out.weight": (_C,),
    "ln_out.bias": (_C,),
    "head.weight": (_V, _C),
}
_MODEL_NUMEL = sum(int(np.prod(s)) for s in _MODEL_SHAPES.values())


def _model_storage() -> bytes:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(_MODEL_NUMEL) * 0.3).astype(np.float32).tobytes()


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))


def _model_pickle(**override: bytes) -> bytes:
    """The whole model's state dict; ``override`` replaces (or adds) entries by name."""
    items: dict[str, bytes] = {}
    off = 0
    for name, shape in _MODEL_SHAPES.items():
        items[name] = _tensor("0", _MODEL_NUMEL, off, shape, _contiguous(shape))
        off += int(np.prod(shape))
    items.update(override)
    return _pickle(b"}(" + b"".join(_s(k) + v for k, v in items.items()) + b"u")


def _model_zip(path: Path, pkl: bytes | None = None, **storages: bytes) -> Path:
    return _write_zip(path, pkl or _model_pickle(), {"0": _model_storage(), **storages})


def _doubled(levels: int, close: bytes = b"l") -> bytes:
    """A list (or with close=b"t" a tuple) nested ``levels`` deep, each level holding the
    previous one twice through the memo: 2**levels leaves in a few bytes."""
    out = (b"]" if close == b"l" else b")") + b"q\x000"  # EMPTY_LIST/TUPLE, BINPUT 0, POP
    for _ in range(levels):
        out += b"(h\x00h\x00" + close + b"q\x000"
    return out + b"h\x00"


def _storage_build_oob(p: Path) -> Path:
    """The critical one: a storage record of 4 floats, then BUILD raises its numel."""
    pid = _tup(_s("storage"), _glob("torch", "FloatStorage"), _s("1"), _s("cpu"), _i(4)) + b"Q"
    build = _tup(b"N", _dict(numel=_i(_V * _C))) + b"b"
    head = _call(
        _glob("torch._utils", "_rebuild_tensor_v2"),
        pid + build,
        _i(0),
        _tup(_i(_V), _i(_C)),
        _tup(_i(_C), _i(1)),
    )
    return _model_zip(p, _model_pickle(**{"head.weight": head}), **{"1": F32_16})


def _pid_doubled(p: Path) -> Path:
    return _model_zip(p, _model_pickle(**{"head.weight": _doubled(60) + b"Q"}))


def _key_doubled(p: Path) -> Path:
    pid = _tup(_s("storage"), _glob("torch", "FloatStorage"), _doubled(60), _s("cpu"), _i(4))
    return _model_zip(p, _model_pickle(**{"head.weight": pid + b"Q"}))


def _dict_key_doubled(p: Path) -> Path:
    return _model_zip(p, _pickle(b"}" + _doubled(60, b"t") + _i(1) + b"s"))


def _huge_size_ints(p: Path) -> Path:
    big = b"\x8b" + struct.pack("<i", 4000) + b"\x7f" * 4000  # LONG4: a 32000-bit int
    size = b"(" + big * 3 + b"t"
    head = _call(
        _glob("torch._utils", "_rebuild_tensor_v2"),
        _storage("0", 16),
        _i(0),
        size,
        size,
    )
    return _model_zip(p, _model_pickle(**{"head.weight": head}))


def _bytearray8(p: Path) -> Path:
    return _model_zip(p, b"\x80\x05\x96" + struct.pack("<Q", 2**31) + b".")


def _float_dim(p: Path) -> Path:
    emb = _call(
        _glob("torch._utils", "_rebuild_tensor_v2"),
        _storage("0", _MODEL_NUMEL),
        _i(0),
        _tup(_i(_V), b"G" + struct.pack(">d", 8.5)),
        _tup(_i(_C), _i(1)),
    )
    return _model_zip(p, _model_pickle(**{"emb.weight": emb}))


def _shape_lie(name: str, shape: tuple[int, ...]) -> Callable[[Path], Path]:
    def build(p: Path) -> Path:
        t = _tensor("0", _MODEL_NUMEL, 0, shape, _contiguous(shape))
        return _model_zip(p, _model_pickle(**{name: t}))

    return build


def _safetensors_model(p: Path, **override: object) -> Path:
    header: dict[str, object] = {}
    off = 0
    for name, shape in _MODEL_SHAPES.items():
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header.update(override)
    return _safetensors(p, header, _model_storage())


def _st_layer_bomb(p: Path) -> Path:
    return _safetensors(
        p,
        {"blocks.99999999999.att.ln_x.weight": _entry(), "emb.weight": _entry(shape=[2, 2])},
        F32_16,
    )


def _st_infinity(p: Path) -> Path:
    return _safetensors_model(
        p, **{"head.weight": {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 1e999]}}
    )


def _st_float_dim(p: Path) -> Path:
    return _safetensors_model(
        p, **{"head.weight": {"dtype": "F32", "shape": [16, 8.0], "data_offsets": [0, 512]}}
    )


def _truncated_entry_lie(p: Path) -> Path:
    """A stored storage entry whose local sizes run into the central directory."""
    p = _model_zip(p)
    data = bytearray(p.read_bytes())
    i = data.rfind(b"PK\x01\x02")  # patch the last central entry's sizes upward
    while i >= 0:
        if data[i + 46 : i + 46 + 14] == b"archive/data/0":
            struct.pack_into("<II", data, i + 20, 1 << 20, 1 << 20)
        i = data.rfind(b"PK\x01\x02", 0, i)
    p.write_bytes(bytes(data))
    return p


ATTACKS: dict[str, Callable[[Path], Path]] = {
    "storage-build-oob.pth": _storage_build_oob,
    "pid-doubled-list.pth": _pid_doubled,
    "storage-key-doubled-list.pth": _key_doubled,
    "dict-key-doubled-tuple.pth": _dict_key_doubled,
    "size-huge-ints.pth": _huge_size_ints,
    "bytearray8-2gb.pth": _bytearray8,
    "float-dimension.pth": _float_dim,
    "emb-1d.pth": _shape_lie("emb.weight", (_V * _C,)),
    "time-decay-0d.pth": _shape_lie("blocks.0.att.time_decay", ()),
    "ffn-key-0d.pth": _shape_lie("blocks.0.ffn.key.weight", ()),
    "zero-dim.pth": _shape_lie("blocks.0.att.key.weight", (_C, 0)),
    "time-mix-k-wrong.pth": _shape_lie("blocks.0.att.time_mix_k", (1, 1, _C - 1)),
    "head-wrong.pth": _shape_lie("head.weight", (_V - 1, _C)),
    "entry-size-lie.pth": _truncated_entry_lie,
    "layer-bomb.safetensors": _st_layer_bomb,
    "offsets-infinity.safetensors": _st_infinity,
    "float-dimension.safetensors": _st_float_dim,
}


def test_attack_control_model_loads(tmp_path: Path) -> None:
    """Positive control: the model the attacks start from opens and is complete."""
    for p in (_model_zip(tmp_path / "m.pth"), _safetensors_model(tmp_path / "m.safetensors")):
        with open_checkpoint(p) as ck:
            ck.check_complete()
            assert ck.config.version == "5.2" and ck.config.n_head == _H
            np.testing.assert_array_equal(
                ck["head.weight"].to_f32().ravel(),
                np.frombuffer(_model_storage(), np.float32)[-_V * _C :],
            )


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused_quickly(name: str, tmp_path: Path) -> None:
    """Each attack of issue 18 ends in a FormatError naming the file, in well under a second."""
    import time

    p = ATTACKS[name](tmp_path / name)
    t0 = time.perf_counter()
    msg = _expect(p, FormatError, name)
    assert time.perf_counter() - t0 < 2.0, msg
    assert len(msg) < 400, msg


def test_bytearray8_within_the_pickle_still_loads(tmp_path: Path) -> None:
    """The BYTEARRAY8 bound is the pickle's size, not a refusal of the opcode."""
    body = _dict(w=b"\x96" + struct.pack("<Q", 3) + b"abc")
    p = _write_zip(tmp_path / "ba.pth", b"\x80\x05" + body + b".", {"0": F32_16})
    _expect(p, FormatError, "not a tensor")  # got past the opcode


def test_torch_metadata_build_is_accepted(tmp_path: Path) -> None:
    """module.state_dict() pickles its _metadata with BUILD on the OrderedDict: allowed."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 3)
    sd = net.state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, tmp_path / "m.pth")
    from rwkv_edge.checkpoint import _read_torch_zip

    tensors, _keep = _read_torch_zip(tmp_path / "m.pth")
    np.testing.assert_array_equal(tensors["weight"].to_f32(), net.weight.detach().numpy())


@pytest.mark.parametrize("kind", ["fifo", "dir", "dev"])
def test_special_files_are_refused(kind: str, tmp_path: Path) -> None:
    if kind == "fifo":
        p = tmp_path / "fifo.pth"
        os.mkfifo(p)
    elif kind == "dir":
        p = tmp_path / "d.safetensors"
        p.mkdir()
        (p / "x.txt").write_text("x")
    else:
        p = Path("/dev/zero")
    with pytest.raises(FormatError):
        open_checkpoint(p).close()
