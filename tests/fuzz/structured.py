"""Structure-aware inputs for the checkpoint readers: fuzzer bytes -> a .pth or safetensors file.

    pth_file(data) / safetensors_file(data) / checkpoint_file(data) -> bytes of a file

A fuzz input is read as a list of decisions (``Draw``): for each tensor of a
complete, valid model (tests/test_hostile_checkpoints.py's ``_MODEL_SHAPES``),
keep it or lie about one of its parts (a size, a stride, an offset, a storage
record, its type, BUILD on it, a memo-doubled structure in its place, random
opcodes); then lie about the zip layout (compression, entry sizes, header
offsets, truncation) or the safetensors header (dtypes, shapes, offsets as
floats / Infinity / huge ints, layer numbers, header length). Random bytes
would almost never get past the zip directory or the JSON parser; these files
reach the unpickler, the geometry checks, config detection and the engines'
loaders. Pure Python and deterministic, so tests/test_hostile_files.py rebuilds
every regression input without atheris.

``checkpoint_file`` is the older ``checkpoint`` target's format: a mode byte, then
a whole file (0), a data.pkl for a fixed zip (1) or a safetensors header (2).
"""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
F32_16 = bytes(range(64))


def _hostile() -> ModuleType:
    """tests/test_hostile_checkpoints.py: its pickle assembler and model shapes."""
    name = "test_hostile_checkpoints"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Draw:
    """Decisions read from fuzzer bytes; zeros once they run out (zero = the valid choice)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        """A choice among n: one byte for up to 256, two beyond."""
        if n <= 1:
            return 0
        if n <= 256:
            return self.byte() % n
        return (self.byte() | self.byte() << 8) % n

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.below(len(items))]

    def chunk(self, most: int) -> bytes:
        n = self.below(most + 1)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


# ---------------------------------------------------------------------------
# .pth
# ---------------------------------------------------------------------------


def _long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return (
        b"\x8a" + bytes([len(raw)]) + raw
        if len(raw) < 256
        else b"\x8b" + struct.pack("<i", len(raw)) + raw
    )


def _odd_values(h: ModuleType) -> list[bytes]:
    """Pickled values that are not what a size, stride, offset or count should be."""
    return [
        h._i(0),
        h._i(1),
        h._i(-1),
        h._i(2**31 - 1),
        _long(2**63),
        _long(2**64 + 7),
        _long(1 << 40000),  # a 40000-bit int
        b"G" + struct.pack(">d", 1.5),
        b"G" + struct.pack(">d", float("inf")),
        b"G" + struct.pack(">d", float("nan")),
        h._s("8"),
        b"N",
        b"\x88",  # True
        h._tup(h._i(4)),
        h._doubled(40),
        h._doubled(40, b"t"),
    ]


def _tensor_lie(d: Draw, h: ModuleType, shape: tuple[int, ...], offset: int) -> bytes:
    """The pickle of one tensor of the model: valid, or with one part replaced."""
    numel = h._MODEL_NUMEL
    parts: dict[str, Any] = {
        "key": h._s("0"),
        "stype": h._glob("torch", "FloatStorage"),
        "numel": h._i(numel),
        "offset": h._i(offset),
        "size": [h._i(s) for s in shape],
        "stride": [h._i(s) for s in h._contiguous(shape)],
    }
    choice = d.below(16)
    odd = _odd_values(h)
    if choice == 1 and parts["size"]:
        parts["size"][d.below(len(parts["size"]))] = d.pick(odd)
    elif choice == 2 and parts["stride"]:
        parts["stride"][d.below(len(parts["stride"]))] = d.pick(odd)
    elif choice == 3:
        parts["offset"] = d.pick(odd)
    elif choice == 4:
        parts["numel"] = d.pick(odd)
    elif choice == 5:
        parts["key"] = d.pick([h._s("1"), h._s("../0"), h._s("0" * 300), b"N", h._doubled(30)])
    elif choice == 6:
        module, name = d.pick([("torch", "HalfStorage"), ("torch", "DoubleStorage"),
                               ("torch", "bfloat16"), ("os", "system"),
                               ("torch._utils", "_rebuild_tensor_v2")])  # fmt: skip
        parts["stype"] = h._glob(module, name)
    elif choice == 7:
        parts["size"] = parts["size"] + [h._i(1)] * d.below(12)
    elif choice == 8:
        parts["size"] = parts["size"][: d.below(len(parts["size"]) + 1)]
    if choice == 9:  # a 4-element record, then BUILD raises its count (issue 18's OOB read)
        parts["numel"] = h._i(4)
    record = h._tup(h._s("storage"), parts["stype"], parts["key"], h._s("cpu"), parts["numel"])
    storage = record + b"Q"
    if choice == 9:
        storage += h._tup(b"N", h._dict(numel=d.pick([h._i(numel), *odd]))) + b"b"
    size = b"(" + b"".join(parts["size"]) + b"t"
    stride = b"(" + b"".join(parts["stride"]) + b"t"
    if choice == 10:
        size = d.pick(odd)
    tensor = h._call(
        h._glob("torch._utils", "_rebuild_tensor_v2"),
        storage,
        parts["offset"],
        size,
        stride,
        b"\x89",
        h._call(h._glob("collections", "OrderedDict")),
    )
    if choice == 11:  # BUILD on the tensor
        tensor += h._tup(b"N", h._dict(array=h._s("x"))) + b"b"
    elif choice == 12:
        tensor = d.pick([h._doubled(60), h._doubled(60, b"t"), record + b"Q", b"N", h._i(3)])
    elif choice == 13:  # raw opcodes from the input, spliced in
        tensor = d.chunk(24) + tensor
    elif choice == 14:
        tensor = h._call(h._glob("torch._utils", "_rebuild_parameter"), tensor, b"\x89")
    return tensor


def _pth_pickle(d: Draw, h: ModuleType) -> bytes:
    items: list[bytes] = []
    off = 0
    for name, shape in h._MODEL_SHAPES.items():
        key = h._s(name)
        what = d.below(24)
        if what == 1:
            continue  # a missing tensor
        if what == 2:
            hf_name = h._s(name.replace("blocks.", "rwkv.blocks."))
            odd_keys = [h._doubled(40, b"t"), h._i(7), b"N", h._s("blocks.99999999999.x")]
            key = d.pick([*odd_keys, hf_name, h._s("_strategy")])
        items.append(key + _tensor_lie(d, h, shape, off))
        off += _numel(shape)
    body = b"}(" + b"".join(items) + b"u"
    wrap = d.below(8)
    if wrap == 1:
        body = h._call(h._glob("collections", "OrderedDict")) + b"(" + b"".join(items) + b"u"
    elif wrap == 2:  # BUILD on the OrderedDict with torch's _metadata (allowed)
        body = (h._call(h._glob("collections", "OrderedDict")) + b"(" + b"".join(items) + b"u"
                + h._tup(b"N", h._dict(_metadata=h._dict())) + b"b")  # fmt: skip
    elif wrap == 3:
        body = h._dict(state_dict=body)
    elif wrap == 4:
        body = d.chunk(64) + body
    proto = d.pick([b"\x80\x02", b"\x80\x02", b"\x80\x04", b"\x80\x05"])
    if proto != b"\x80\x02" and d.below(4) == 0:
        body = b"\x95" + struct.pack("<Q", d.pick([len(body) + 1, 1 << 40, 0])) + body  # FRAME
    return proto + body + b"."


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _zip_lies(d: Draw, raw: bytes) -> bytes:
    """Lie in the zip directory: entry sizes, local header offsets, lengths; or truncate."""
    data = bytearray(raw)
    for _ in range(d.below(4)):
        cd = data.rfind(b"PK\x01\x02")
        entries = []
        while cd >= 0:
            entries.append(cd)
            cd = data.rfind(b"PK\x01\x02", 0, cd)
        if not entries:
            break
        at = d.pick(entries)
        field = d.pick([(20, "<I"), (24, "<I"), (42, "<I"), (28, "<H"), (30, "<H"), (10, "<H")])
        value = d.pick([0, 1, 0xFFFF, 0xFFFFFFFF, len(data), len(data) // 2, d.below(1 << 16)])
        if at + field[0] + 4 <= len(data):
            struct.pack_into(field[1], data, at + field[0], value & (0xFFFF if field[1] == "<H"
                                                                     else 0xFFFFFFFF))  # fmt: skip
    if d.below(8) == 1:
        del data[d.below(len(data)) :]
    return bytes(data)


def pth_file(data: bytes) -> bytes:
    """A torch-zip checkpoint built from fuzzer decisions (see the module docstring)."""
    h = _hostile()
    d = Draw(data)
    pkl = _pth_pickle(d, h)
    storage = h._model_storage()
    if d.below(6) == 1:
        storage = storage[: d.below(len(storage))]
    buf = io.BytesIO()
    layout = d.below(8)
    with zipfile.ZipFile(buf, "w") as zf:
        prefix = "archive/" if layout != 1 else ""
        zf.writestr(prefix + "data.pkl", pkl)
        mode = zipfile.ZIP_DEFLATED if layout == 2 else zipfile.ZIP_STORED
        zf.writestr(prefix + "data/0", storage, compress_type=mode)
        if layout == 3:
            zf.writestr("archive/data/1", F32_16)
            zf.writestr("other/data.pkl", pkl)
        if layout == 4:
            zf.writestr("archive/data/../../escape", F32_16)
    return _zip_lies(d, buf.getvalue())


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

_ODD_JSON: list[str] = ["0", "-1", "1.5", "1e999", "-1e999", "NaN", "2" * 30, "9" * 5000, "null",
                        '"8"', "true", "[]", "[1, 2]", "{}", "[" * 50 + "]" * 50]  # fmt: skip


def _st_entry(d: Draw, name: str, shape: tuple[int, ...], begin: int, end: int) -> str:
    fields = {
        "dtype": '"F32"',
        "shape": json.dumps(list(shape)),
        "data_offsets": json.dumps([begin, end]),
    }
    choice = d.below(12)
    if choice == 1:
        fields["dtype"] = d.pick(['"F16"', '"F64"', '"BF16"', '"I64"', '"f32"', "1", '["F32"]'])
    elif choice == 2 and shape:
        dims = [str(s) for s in shape]
        dims[d.below(len(dims))] = d.pick(_ODD_JSON)
        fields["shape"] = "[" + ", ".join(dims) + "]"
    elif choice == 3:
        offs = [str(begin), str(end)]
        offs[d.below(2)] = d.pick(_ODD_JSON)
        fields["data_offsets"] = "[" + ", ".join(offs) + "]"
    elif choice == 4:
        fields["shape"] = d.pick(_ODD_JSON)
    elif choice == 5:
        del fields[d.pick(list(fields))]
    elif choice == 6:
        return json.dumps(name) + ": " + d.pick(_ODD_JSON)
    elif choice == 7:
        fields["data_offsets"] = json.dumps([0, end - begin])  # overlaps the first tensor
    elif choice == 8:
        name = d.pick(["blocks.99999999999.att.ln_x.weight", "blocks.\u0663.att.ln_x.weight",
                       "blocks.0.att.time_maa_x", "x" * 5000, name.upper()])  # fmt: skip
    body = ", ".join(f'"{k}": {v}' for k, v in fields.items())
    return json.dumps(name) + ": {" + body + "}"


def safetensors_file(data: bytes) -> bytes:
    """A safetensors file built from fuzzer decisions (see the module docstring)."""
    h = _hostile()
    d = Draw(data)
    entries: list[str] = []
    off = 0
    for name, shape in h._MODEL_SHAPES.items():
        n = 4 * _numel(shape)
        if d.below(24) != 1:
            entries.append(_st_entry(d, name, shape, off, off + n))
        off += n
    if d.below(6) == 1:
        entries.append('"__metadata__": ' + d.pick([*_ODD_JSON, '{"format": "pt"}']))
    header = ("{" + ", ".join(entries) + "}").encode()
    storage = h._model_storage()
    hlen = len(header)
    lie = d.below(10)
    if lie == 1:
        hlen = d.pick([0, 1, hlen + 1, hlen - 1, 2**63, 2**64 - 1, len(header) + len(storage)])
    elif lie == 2:
        storage = storage[: d.below(len(storage))]
    return struct.pack("<Q", hlen & (2**64 - 1)) + header + storage


# ---------------------------------------------------------------------------
# The older 'checkpoint' target: a mode byte, then a file, a data.pkl or a header
# ---------------------------------------------------------------------------


def _as_torch_zip(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/data/0", F32_16)
    return buf.getvalue()


def _as_safetensors(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + F32_16


def checkpoint_file(data: bytes) -> bytes:
    """Mode byte: 0 whole file, 1 data.pkl in a valid zip, 2 safetensors header."""
    if not data:
        return b""
    wrap: Callable[[bytes], bytes] = (lambda b: b, _as_torch_zip, _as_safetensors)[data[0] % 3]
    return wrap(data[1:])


# target name -> (fuzz input -> file bytes, file suffix)
BUILDERS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "checkpoint": (checkpoint_file, ".pth"),
    "pth": (pth_file, ".pth"),
    "safetensors": (safetensors_file, ".safetensors"),
    "gguf": (lambda b: b, ".gguf"),
    "c": (lambda b: b, ".gguf"),
    "attacks": (lambda b: b, ""),  # whole files, their names end in their suffix
}
