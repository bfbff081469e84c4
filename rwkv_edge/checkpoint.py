"""Read RWKV checkpoints without torch and without running pickle code.

Formats (detected from the first bytes, never from the file name):
  * BlinkDL ``.pth`` and HF ``pytorch_model.bin``: torch's zip format. The
    pickle inside is read by a restricted unpickler that knows only the
    handful of globals a tensor state dict needs and refuses everything else
    (``UnsafeCheckpointError`` names the global). Tensor data is memory-mapped
    straight out of the (uncompressed) zip entries.
  * safetensors (``*.safetensors``), memory-mapped.
  * A directory in the HF layout (``RWKV/v5-Eagle-7B-HF``): its
    ``*.safetensors`` or ``pytorch_model*.bin`` shards.
  * GGUF files written by rwkv-edge (see ``rwkv_edge.gguf_file``).
HF names (``rwkv.blocks.0.attention.key.weight``) are mapped onto BlinkDL's
(``blocks.0.att.key.weight``), the internal names everywhere.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .checkpoint_base import Checkpoint
from .errors import FormatError, IoError, UnsafeCheckpointError, VersionError
from .tensors import (
    MAX_DIM,
    Tensor,
    checked_dims,
    closing_on_error,
    map_readonly,
    open_regular,
    quote,
)


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open any supported checkpoint or model file lazily."""
    p = Path(path)
    if p.is_dir():
        return _open_hf_dir(p)
    if not p.exists():
        raise IoError(f"no such file: {p}")
    with open_regular(p) as f:  # a FIFO or device is refused, not waited on
        head = f.read(16)
    if head[:4] == b"GGUF":
        from .gguf_file import read_gguf

        return read_gguf(p)
    if head[:4] == b"PK\x03\x04":
        return _finish(p, *_read_torch_zip(p), kind="pth")
    if len(head) >= 9 and head[8:9] == b"{":
        return _finish(p, *_read_safetensors(p), kind="safetensors")
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        raise FormatError(
            f"{p.name}: legacy (pre-1.6, non-zip) torch serialization is not supported; "
            "re-save it with a current torch.save"
        )
    raise FormatError(f"{p.name}: not a checkpoint (unknown magic {head[:4]!r})")


def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], list[Any]]:
    """The tensors of a .pth or safetensors file under their own names, through the same
    checked readers as open_checkpoint but with no model to detect (a state-tuning file
    holds only ``time_state``s). The second item keeps the mapping alive: close each."""
    p = Path(path)
    with open_regular(p) as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return _read_torch_zip(p)
    if len(head) >= 9 and head[8:9] == b"{":
        return _read_safetensors(p)
    raise FormatError(f"{p.name}: not a .pth or safetensors file (magic {head[:4]!r})")


def _finish(p: Path, tensors: dict[str, Tensor], keep: list[Any], kind: str) -> Checkpoint:
    tensors = _normalize_names(tensors, p)
    return Checkpoint(p, tensors, kind, keepalive=keep)


# ---------------------------------------------------------------------------
# HF names -> BlinkDL names
# ---------------------------------------------------------------------------

_HF_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^rwkv\.embeddings\."), "emb."),
    (re.compile(r"^rwkv\.blocks\.0\.pre_ln\."), "blocks.0.ln0."),
    (re.compile(r"^rwkv\.ln_out\."), "ln_out."),
    (re.compile(r"^rwkv\.blocks\."), "blocks."),
    (re.compile(r"\.attention\."), ".att."),
    (re.compile(r"\.feed_forward\."), ".ffn."),
    (re.compile(r"\.time_mix_key$"), ".time_mix_k"),
    (re.compile(r"\.time_mix_value$"), ".time_mix_v"),
    (re.compile(r"\.time_mix_receptance$"), ".time_mix_r"),
    (re.compile(r"\.time_mix_gate$"), ".time_mix_g"),
]


def hf_to_blink(name: str) -> str:
    """Map one HF RWKV5 tensor name onto BlinkDL's; BlinkDL names pass unchanged."""
    for pattern, repl in _HF_RULES:
        name = pattern.sub(repl, name)
    return name


def _normalize_names(tensors: dict[str, Tensor], p: Path) -> dict[str, Tensor]:
    if any(n.startswith("_strategy") or n == "_version" for n in tensors):
        raise FormatError(
            f"{p.name}: this file was pre-converted by the rwkv pip package for one strategy "
            "(its weights are transposed or quantized); use the original checkpoint"
        )
    tensors = fla_rwkv7_to_blink(tensors, p)
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        new = hf_to_blink(name)
        if new in out:
            raise FormatError(f"{p.name}: tensor {quote(new)} appears twice")
        out[new] = Tensor(new, t.shape, t.dtype, t.raw)
    return out


# flash-linear-attention RWKV7ForCausalLM names -> BlinkDL x070 names. The LoRA
# layers are nn.Linear ([out, in]): lora.0.weight [D, C] is X1 transposed,
# lora.2.weight [C, D] is X2 transposed, lora.2.bias is X0 (the gate has none).
_FLA7_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_FLA7_TOP = {
    "model.embeddings.weight": "emb.weight",
    "model.norm.weight": "ln_out.weight",
    "model.norm.bias": "ln_out.bias",
    "lm_head.weight": "head.weight",
}
_FLA7_LAYER = {
    "pre_norm.": "ln0.",
    "attn_norm.": "ln1.",
    "ffn_norm.": "ln2.",
    "attn.r_proj.": "att.receptance.",
    "attn.k_proj.": "att.key.",
    "attn.v_proj.": "att.value.",
    "attn.o_proj.": "att.output.",
    "attn.g_norm.": "att.ln_x.",
    "attn.": "att.",
    "ffn.": "ffn.",
}
_FLA7_LORA = re.compile(r"^attn\.([wavg])_lora\.lora\.(0\.weight|2\.weight|2\.bias)$")


def _fla7_name(rest: str) -> tuple[str, bool]:
    """BlinkDL suffix of one FLA layer tensor, and whether its matrix is transposed."""
    m = _FLA7_LORA.match(rest)
    if m:
        letter, part = m.groups()
        index = {"0.weight": 1, "2.weight": 2, "2.bias": 0}[part]
        return f"att.{letter}{index}", part != "2.bias"
    for old, new in _FLA7_LAYER.items():
        if rest.startswith(old):
            return new + rest[len(old) :], False
    return rest, False  # unknown: kept, so detection names it


def fla_rwkv7_to_blink(tensors: dict[str, Tensor], p: Path) -> dict[str, Tensor]:
    """Rename (and transpose the LoRA matrices of) an FLA RWKV-7 state dict; others pass."""
    if not any(n.startswith("model.layers.") and ".attn." in n for n in tensors):
        return tensors
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        m = _FLA7_RE.match(name)
        if m:
            rest, transpose = _fla7_name(m.group(2))
            new = f"blocks.{m.group(1)}.{rest}"
        else:
            new, transpose = _FLA7_TOP.get(name, name), False
        if transpose and len(t.shape) == 2:
            t = Tensor(new, t.shape[::-1], t.dtype, np.asarray(t.raw).T)
        if new in out:
            raise FormatError(f"{p.name}: tensor '{new}' appears twice")
        out[new] = Tensor(new, t.shape, t.dtype, t.raw)
    return out


# ---------------------------------------------------------------------------
# torch zip checkpoints: the restricted unpickler
# ---------------------------------------------------------------------------

_STORAGE_DTYPES: dict[str, tuple[str, np.dtype[Any]]] = {
    "FloatStorage": ("f32", np.dtype("<f4")),
    "HalfStorage": ("f16", np.dtype("<f2")),
    "BFloat16Storage": ("bf16", np.dtype("<u2")),
    "DoubleStorage": ("f64", np.dtype("<f8")),
}
_TORCH_DTYPES = {
    "float32": "FloatStorage",
    "float": "FloatStorage",
    "float16": "HalfStorage",
    "half": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "float64": "DoubleStorage",
}


def _refuse_build(obj: object, _state: object) -> None:
    """``__setstate__`` of every object of ours a pickle can reach: BUILD is refused.

    The restricted unpickler refuses BUILD itself (``_load_build``); this is the
    second lock, for any path that would call ``__setstate__`` directly.
    """
    raise FormatError(f"checkpoint pickle tries to modify a {type(obj).__name__} (BUILD)")


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co: just a dtype tag."""

    __slots__ = ("name", "np_dtype", "tag")
    __setstate__ = _refuse_build

    def __init__(self, storage_name: str) -> None:
        self.name = storage_name
        self.tag, self.np_dtype = _STORAGE_DTYPES[storage_name]


class _SafeFunction:
    """A whitelisted function as the pickle sees it: callable, with no attributes to set."""

    __slots__ = ("_fn",)
    __setstate__ = _refuse_build

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class _Storage:
    """A storage record from a persistent id: ``data`` is exactly its bytes in the zip entry.

    Nothing is trusted from the record but its dtype: every view is checked
    against ``data.size``, the elements that really exist.
    """

    __slots__ = ("data", "key", "stype")
    __setstate__ = _refuse_build

    def __init__(self, stype: _StorageType, key: str, data: np.ndarray) -> None:
        self.stype = stype
        self.key = key
        self.data = data


class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns here: a view, validated against its storage."""

    __slots__ = ("array", "dtype")
    __setstate__ = _refuse_build

    def __init__(self, storage: object, offset: object, size: object, stride: object) -> None:
        if not isinstance(storage, _Storage):
            raise FormatError("tensor rebuilt from something that is not a storage")
        if type(offset) is not int or not 0 <= offset < MAX_DIM:
            raise FormatError("bad tensor geometry: the storage offset is not a small int")
        size_t = checked_dims(size, "bad tensor geometry: the size")
        stride_t = checked_dims(stride, "bad tensor geometry: the stride")
        if len(size_t) != len(stride_t):
            raise FormatError(f"bad tensor geometry size={size_t} stride={stride_t}")
        avail = int(storage.data.size)  # elements that exist, whatever the record claimed
        numel = math.prod(size_t)  # small: MAX_RANK dims below MAX_DIM
        if offset > avail:
            raise FormatError(f"tensor at offset {offset} reads past its storage of {avail}")
        if numel > 0:
            last = offset + sum((s - 1) * st for s, st in zip(size_t, stride_t, strict=True))
            if last >= avail:
                raise FormatError(
                    f"tensor of size {size_t} at offset {offset} reads past its storage "
                    f"of {avail} elements"
                )
        if numel > avail:
            # Only stride-0 or overlapping views get here: never weights, and a
            # huge one would turn into a huge allocation at to_f32().
            raise FormatError(
                f"tensor of size {size_t} has {numel} elements but its storage only {avail}"
            )
        item = storage.stype.np_dtype.itemsize
        base = storage.data[offset:]
        self.array = np.lib.stride_tricks.as_strided(
            base, shape=size_t, strides=tuple(st * item for st in stride_t), writeable=False
        )
        self.dtype = storage.stype.tag


def _rebuild_tensor_v2(
    storage: object, offset: object, size: object, stride: object, *_rest: object
) -> _LazyTensor:
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data: object, *_rest: object) -> object:
    return data


def _new_ordered_dict(*args: object) -> OrderedDict[Any, Any]:
    """torch pickles an OrderedDict as ``OrderedDict()`` then SETITEMS: never with arguments
    (``OrderedDict(pairs)`` would hash keys the unpickler has not checked)."""
    if args:
        raise FormatError("checkpoint pickle calls OrderedDict with arguments")
    return OrderedDict()


# module, name -> the object handed to the pickle. Nothing else is reachable.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _SafeFunction(_new_ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): _SafeFunction(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _SafeFunction(_rebuild_parameter),
    **{("torch", n): _StorageType(n) for n in _STORAGE_DTYPES},
    **{("torch", d): _StorageType(s) for d, s in _TORCH_DTYPES.items()},
}

# Dict keys must hash in time linear in their size: a tuple built by doubling
# through the memo hashes (and compares) in exponential time, and a deep one
# overflows the C stack. State dicts only ever use str keys; the others are harmless.
_KEY_TYPES = (str, int, float, bool, bytes, type(None))

# Opcodes no tensor state dict uses: object construction outside REDUCE, and
# sets (they hash their items). Refused outright, before they act.
_REFUSED_OPCODES = {
    pickle.INST: "INST",
    pickle.OBJ: "OBJ",
    pickle.NEWOBJ: "NEWOBJ",
    pickle.NEWOBJ_EX: "NEWOBJ_EX",
    pickle.EMPTY_SET: "EMPTY_SET",
    pickle.ADDITEMS: "ADDITEMS",
    pickle.FROZENSET: "FROZENSET",
    pickle.NEXT_BUFFER: "NEXT_BUFFER",
    pickle.READONLY_BUFFER: "READONLY_BUFFER",
}


def _refuse_opcode(name: str) -> Any:
    def refuse(self: Any) -> None:
        raise UnsafeCheckpointError(
            f"checkpoint pickle uses the {name} opcode, which a tensor state dict never "
            "needs; refusing to load it (nothing was executed)"
        )

    return refuse


def _check_key(key: object) -> object:
    if type(key) not in _KEY_TYPES:
        raise FormatError(f"checkpoint pickle uses a {type(key).__name__} as a dict key")
    return key


# The pure-Python unpickler, not the C one: the C unpickler keeps its memo in
# an array indexed by the memo key, so a 200-byte pickle with LONG_BINPUT
# 0x7fffffff makes it allocate and zero ~16 GB. Here the memo is a dict. A
# state dict's pickle is small (~100 KB for a 7B model), so speed is no issue.
class _RestrictedUnpickler(pickle._Unpickler):
    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    # the pure-Python unpickler's working parts the opcode handlers below use
    # (typeshed declares only its public interface)
    stack: list[Any]
    append: Callable[[Any], None]
    read: Callable[[int], bytes]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, data: bytes, load_storage: Any) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage
        self._size = len(data)

    def find_class(self, module: str, name: str) -> Any:
        obj = _SAFE_GLOBALS.get((module, name))
        if obj is None:
            raise UnsafeCheckpointError(
                f"checkpoint pickle asks for '{quote(module)[1:-1]}.{quote(name)[1:-1]}', "
                "which a tensor state dict never needs; refusing to load it "
                "(nothing was executed)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        # Types first, then values: nothing of pid is formatted or compared before.
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise FormatError(f"unexpected persistent id in checkpoint (a {type(pid).__name__})")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or type(key) is not str or len(key) > 256:
            raise FormatError("bad storage record in checkpoint (type or key)")
        if type(numel) is not int or numel < 0:
            raise FormatError("bad storage record in checkpoint (element count)")
        return self._load_storage(stype, key, numel)

    def _load_build(self) -> None:
        """BUILD sets attributes: refused on everything but a fresh OrderedDict, whose
        state (torch's ``_metadata``) is dropped unread."""
        self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not OrderedDict:
            raise FormatError(f"checkpoint pickle tries to modify a {type(inst).__name__} (BUILD)")

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = _check_key(self.stack.pop())
        self.stack[-1][key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        for i in range(0, len(items) - 1, 2):
            target[_check_key(items[i])] = items[i + 1]

    def _load_dict(self) -> None:
        items = self.pop_mark()
        self.append({_check_key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._size:  # bounded by the bytes the pickle has, before allocating
            raise FormatError(f"checkpoint pickle claims a {n}-byte bytearray")
        self.append(bytearray(self.read(n)))

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.DICT[0]] = _load_dict
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8
    for _op, _name in _REFUSED_OPCODES.items():
        dispatch[_op[0]] = _refuse_opcode(_name)
    del _op, _name


def _zip_entry_array(mm: mmap.mmap, info: zipfile.ZipInfo) -> np.ndarray:
    """The bytes of one zip entry as a uint8 array: a view of the map, exactly the entry."""
    what = f"zip entry {quote(info.filename)}"
    if info.compress_type != zipfile.ZIP_STORED:
        # torch.save stores everything uncompressed; inflating a lying entry
        # (a zip bomb) could take any amount of memory.
        raise FormatError(f"{what} is compressed; torch never compresses checkpoint data")
    if info.file_size != info.compress_size:
        raise FormatError(f"{what} is stored but claims two different sizes")
    off = info.header_offset
    if not 0 <= off <= len(mm) - 30 or mm[off : off + 4] != b"PK\x03\x04":
        raise FormatError(f"{what} has a bad local header")
    name_len, extra_len = struct.unpack_from("<HH", mm, off + 26)
    start = off + 30 + name_len + extra_len
    if start + info.file_size > len(mm):
        raise FormatError(f"{what} runs past the end of the file (truncated?)")
    return np.frombuffer(mm, dtype=np.uint8, count=info.file_size, offset=start)


def _read_torch_zip(p: Path) -> tuple[dict[str, Tensor], list[Any]]:
    f = open_regular(p)
    mm = map_readonly(f, p.name)
    with closing_on_error(mm, f):
        return _unpickle_zip(p, _open_zip(p, f), mm), [mm, f]


def _open_zip(p: Path, f: Any) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(f)
    except Exception as e:  # zipfile raises many types on a damaged directory
        raise FormatError(
            f"{p.name}: not a readable torch zip checkpoint ({type(e).__name__}: {e!s:.200})"
        ) from None


def _unpickle_zip(p: Path, zf: zipfile.ZipFile, mm: mmap.mmap) -> dict[str, Tensor]:
    pkl_names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl_names) != 1:
        raise FormatError(f"{p.name}: expected one data.pkl in the zip, found {len(pkl_names)}")
    prefix = pkl_names[0][: -len("data.pkl")]
    entries = {i.filename: i for i in zf.infolist()}
    pkl = bytes(_zip_entry_array(mm, entries[pkl_names[0]]))

    def load_storage(stype: _StorageType, key: str, numel: int) -> _Storage:
        info = entries.get(f"{prefix}data/{key}")
        if info is None:
            raise FormatError(f"{p.name}: storage {quote(key)} is missing from the zip")
        raw = _zip_entry_array(mm, info)
        item = stype.np_dtype.itemsize
        if numel > raw.size // item:
            raise FormatError(
                f"{p.name}: storage {quote(key)} holds {raw.size} bytes, needs {numel * item}"
            )
        return _Storage(stype, key, raw[: numel * item].view(stype.np_dtype))

    try:
        obj = _RestrictedUnpickler(pkl, load_storage).load()
    except (FormatError, UnsafeCheckpointError) as e:
        if p.name in str(e):
            raise
        raise type(e)(f"{p.name}: {e}") from None
    except Exception as e:  # any other unpickling failure is a corrupt file
        # RecursionError, MemoryError included; the message of a pickle error
        # never quotes more than an opcode or a short line.
        msg = f"{p.name}: corrupt checkpoint pickle ({type(e).__name__}: {e!s:.200})"
        raise FormatError(msg) from None
    return _tensors_from_state_dict(obj, p)


def _tensors_from_state_dict(obj: Any, p: Path) -> dict[str, Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # trainer checkpoints wrap the weights
    if not isinstance(obj, dict):
        raise FormatError(f"{p.name}: the pickle holds a {type(obj).__name__}, not a state dict")
    out: dict[str, Tensor] = {}
    for name, val in obj.items():
        if not isinstance(name, str):
            # type name only: repr() of a hostile key can recurse or be huge
            raise FormatError(f"{p.name}: tensor name is a {type(name).__name__}, not a str")
        if not isinstance(val, _LazyTensor):
            if name.startswith("_"):
                out[name] = Tensor(name, (), "f32", np.zeros(0, np.float32))  # flagged later
                continue
            raise FormatError(
                f"{p.name}: entry {quote(name)} is a {type(val).__name__}, not a tensor"
            )
        out[name] = Tensor(name, tuple(val.array.shape), val.dtype, val.array)
    return out


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

_ST_DTYPES: dict[str, tuple[str, np.dtype[Any]]] = {
    "F32": ("f32", np.dtype("<f4")),
    "F16": ("f16", np.dtype("<f2")),
    "BF16": ("bf16", np.dtype("<u2")),
    "F64": ("f64", np.dtype("<f8")),
}
_ST_MAX_HEADER = 100 * 1024 * 1024


def _read_safetensors(p: Path) -> tuple[dict[str, Tensor], list[Any]]:
    f = open_regular(p)
    mm = map_readonly(f, p.name)
    with closing_on_error(mm, f):
        return _parse_safetensors(p, mm), [mm, f]


def _parse_safetensors(p: Path, mm: mmap.mmap) -> dict[str, Tensor]:
    (hlen,) = struct.unpack_from("<Q", mm, 0) if len(mm) >= 8 else (-1,)
    if not 0 <= hlen <= min(_ST_MAX_HEADER, len(mm) - 8):
        raise FormatError(f"{p.name}: safetensors header length {hlen} is impossible")
    try:
        header = json.loads(bytes(mm[8 : 8 + hlen]))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # RecursionError: deeply nested JSON arrays
        raise FormatError(
            f"{p.name}: bad safetensors header ({type(e).__name__}: {e!s:.200})"
        ) from None
    if not isinstance(header, dict):
        raise FormatError(f"{p.name}: safetensors header is not a JSON object")
    base = 8 + hlen
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _safetensors_entry(p, mm, base, name, info)
    return out


def _safetensors_entry(p: Path, mm: mmap.mmap, base: int, name: str, info: Any) -> Tensor:
    what = f"{p.name}: tensor {quote(name)}"
    if not isinstance(info, dict):
        raise FormatError(f"{what} has a malformed header entry (a {type(info).__name__})")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise FormatError(f"{what} has no {key!r} in its header entry")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
        shown = quote(dtype) if isinstance(dtype, str) else f"a {type(dtype).__name__}"
        raise FormatError(f"{what} has unsupported dtype {shown}")
    tag, dt = _ST_DTYPES[dtype]
    # ints only, checked before any arithmetic: JSON gives floats, Infinity, huge ints
    shape = checked_dims(info["shape"], f"{what}: shape")
    offsets = checked_dims(info["data_offsets"], f"{what}: data_offsets")
    if len(offsets) != 2:
        raise FormatError(f"{what}: data_offsets must be [begin, end]")
    begin, end = offsets
    count = math.prod(shape)
    if end < begin or end - begin != count * dt.itemsize:
        raise FormatError(f"{what}: size does not match its shape {shape}")
    if base + end > len(mm):
        raise FormatError(f"{what} runs past the end of the file (truncated?)")
    arr = np.frombuffer(mm, dtype=dt, count=count, offset=base + begin).reshape(shape)
    return Tensor(name, shape, tag, arr)


# ---------------------------------------------------------------------------
# HF model directories
# ---------------------------------------------------------------------------


def _open_hf_dir(d: Path) -> Checkpoint:
    shards = sorted(d.glob("*.safetensors")) or sorted(d.glob("pytorch_model*.bin"))
    if not shards:
        raise FormatError(f"{d}: no *.safetensors or pytorch_model*.bin files in this directory")
    tensors: dict[str, Tensor] = {}
    keep: list[Any] = []
    for shard in shards:
        ts, k = _read_torch_zip(shard) if shard.suffix == ".bin" else _read_safetensors(shard)
        tensors.update(_normalize_names(ts, shard))
        keep.extend(k)
    return Checkpoint(d, tensors, "hf", keepalive=keep)


__all__ = ["Checkpoint", "VersionError", "hf_to_blink", "open_checkpoint"]
