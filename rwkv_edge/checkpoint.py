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

import contextlib
import json
import math
import mmap
import os
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .config import ModelConfig, detect_config
from .errors import FormatError, IoError, UnsafeCheckpointError, VersionError
from .tensors import Tensor, closing_on_error, map_readonly

# ---------------------------------------------------------------------------
# The Checkpoint container
# ---------------------------------------------------------------------------


class Checkpoint(Mapping[str, Tensor]):
    """Named tensors of one model (BlinkDL names) plus what the file says of itself."""

    def __init__(
        self,
        path: Path,
        tensors: dict[str, Tensor],
        kind: str,
        metadata: dict[str, Any] | None = None,
        keepalive: list[Any] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind  # "pth" | "safetensors" | "hf" | "gguf"
        self.metadata = metadata or {}
        self._tensors = tensors
        self._keepalive = keepalive or []  # mmaps and open files backing the arrays
        self.config: ModelConfig = self._config_from_metadata() or detect_config(
            {n: t.shape for n, t in tensors.items()}
        )

    def _config_from_metadata(self) -> ModelConfig | None:
        cfg = self.metadata.get("config")
        return cfg if isinstance(cfg, ModelConfig) else None

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise FormatError(f"{self.path.name}: no tensor '{name}'") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def source_dtype(self) -> str:
        """The float dtype most weights are stored in (decides the bf16 emb quirk)."""
        return self._tensors["emb.weight"].dtype

    def close(self) -> None:
        """Drop the tensors and unmap the file (arrays taken from it must not be used after)."""
        self._tensors = {}
        for obj in self._keepalive:
            # A numpy view may still reference the map; then it closes when freed.
            with contextlib.suppress(BufferError, OSError):
                obj.close()
        self._keepalive = []

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open any supported checkpoint or model file lazily."""
    p = Path(path)
    if p.is_dir():
        return _open_hf_dir(p)
    if not p.exists():
        raise IoError(f"no such file: {p}")
    with open(p, "rb") as f:
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
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        new = hf_to_blink(name)
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
    """``__setstate__`` of every object a pickle can reach: the BUILD opcode is refused.

    The whitelisted globals are module-level singletons, so a BUILD on one would
    change how every later file loads in this process (e.g. retag FloatStorage as
    bf16); a BUILD on a tensor could replace its validated array.
    """
    raise FormatError(f"checkpoint pickle tries to modify a {type(obj).__name__} (BUILD)")


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co: just a dtype tag."""

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
    """A storage record from a persistent id; its bytes come from the zip entry."""

    def __init__(self, stype: _StorageType, key: str, numel: int, data: np.ndarray) -> None:
        self.stype = stype
        self.key = key
        self.numel = numel
        self.data = data


class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns here: a view, validated against its storage."""

    __setstate__ = _refuse_build

    def __init__(
        self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        if not isinstance(storage, _Storage):
            raise FormatError("tensor rebuilt from something that is not a storage")
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
            raise FormatError(f"bad tensor geometry size={size} stride={stride} offset={offset}")
        numel = math.prod(size)  # Python ints: np.prod wraps around at 2**63
        if numel > 0:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
            if last >= storage.numel:
                raise FormatError(
                    f"tensor of size {size} at offset {offset} reads past its storage "
                    f"of {storage.numel} elements"
                )
        if numel > storage.numel:
            # Only stride-0 or overlapping views get here: never weights, and a
            # huge one would turn into a huge allocation at to_f32().
            raise FormatError(
                f"tensor of size {size} has {numel} elements but its storage only "
                f"{storage.numel} elements"
            )
        item = storage.stype.np_dtype.itemsize
        base = storage.data
        view = np.lib.stride_tricks.as_strided(
            base[offset:] if base.size else base,
            shape=size,
            strides=tuple(st * item for st in stride),
            writeable=False,
        )
        self.dtype = storage.stype.tag
        self.array = view


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, *_rest: Any) -> Any:
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


# module, name -> the object handed to the pickle. Nothing else is reachable.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _SafeFunction(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _SafeFunction(_rebuild_parameter),
    **{("torch", n): _StorageType(n) for n in _STORAGE_DTYPES},
    **{("torch", d): _StorageType(s) for d, s in _TORCH_DTYPES.items()},
}


# The pure-Python unpickler, not the C one: the C unpickler keeps its memo in
# an array indexed by the memo key, so a 200-byte pickle with LONG_BINPUT
# 0x7fffffff makes it allocate and zero ~16 GB. Here the memo is a dict. A
# state dict's pickle is small (~100 KB for a 7B model), so speed is no issue.
class _RestrictedUnpickler(pickle._Unpickler):
    def __init__(self, data: bytes, load_storage: Any) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        obj = _SAFE_GLOBALS.get((module, name))
        if obj is None:
            raise UnsafeCheckpointError(
                f"checkpoint pickle asks for '{module}.{name}', which a tensor state dict "
                "never needs; refusing to load it (nothing was executed)"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise FormatError(f"unexpected persistent id in checkpoint: {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise FormatError(f"bad storage record in checkpoint: {pid!r:.80}")
        return self._load_storage(stype, str(key), numel)


def _zip_entry_array(zf: zipfile.ZipFile, mm: mmap.mmap, info: zipfile.ZipInfo) -> np.ndarray:
    """The bytes of one zip entry as a uint8 array; a view of the map when stored."""
    if info.compress_type != zipfile.ZIP_STORED:
        # torch.save stores tensor data uncompressed; inflating a lying entry
        # (a zip bomb) could take any amount of memory.
        raise FormatError(
            f"zip entry '{info.filename}' is compressed; torch never compresses tensor data"
        )
    off = info.header_offset
    if off + 30 > len(mm) or mm[off : off + 4] != b"PK\x03\x04":
        raise FormatError(f"zip entry '{info.filename}' has a bad local header")
    name_len, extra_len = struct.unpack_from("<HH", mm, off + 26)
    start = off + 30 + name_len + extra_len
    if start + info.file_size > len(mm):
        raise FormatError(f"zip entry '{info.filename}' runs past the end of the file (truncated?)")
    return np.frombuffer(mm, dtype=np.uint8, count=info.file_size, offset=start)


_MAX_PICKLE_BYTES = 1 << 30  # a 7B model's data.pkl is ~100 KB; bounds a lying zip


def _read_torch_zip(p: Path) -> tuple[dict[str, Tensor], list[Any]]:
    f = open(p, "rb")
    mm: mmap.mmap | None = None
    try:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        tensors = _unpickle_zip(p, _open_zip(p, f), mm)
    except BaseException:
        # Close now rather than at garbage collection: a process that probes
        # many bad files must not run out of descriptors.
        if mm is not None:
            with contextlib.suppress(BufferError):  # a view still alive; freed with it
                mm.close()
        f.close()
        raise
    return tensors, [mm, f]


def _open_zip(p: Path, f: Any) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(f)
    except Exception as e:  # zipfile raises many types on a damaged directory
        raise FormatError(
            f"{p.name}: not a readable torch zip checkpoint ({type(e).__name__}: {e})"
        ) from None


def _unpickle_zip(p: Path, zf: zipfile.ZipFile, mm: mmap.mmap) -> dict[str, Tensor]:
    pkl_names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl_names) != 1:
        raise FormatError(f"{p.name}: expected one data.pkl in the zip, found {len(pkl_names)}")
    prefix = pkl_names[0][: -len("data.pkl")]
    entries = {i.filename: i for i in zf.infolist()}
    if entries[pkl_names[0]].file_size > _MAX_PICKLE_BYTES:
        raise FormatError(f"{p.name}: data.pkl claims {entries[pkl_names[0]].file_size} bytes")

    def load_storage(stype: _StorageType, key: str, numel: int) -> _Storage:
        info = entries.get(f"{prefix}data/{key}")
        if info is None:
            raise FormatError(f"{p.name}: storage '{key:.80}' is missing from the zip")
        raw = _zip_entry_array(zf, mm, info)
        need = numel * stype.np_dtype.itemsize
        if raw.size < need:
            raise FormatError(f"{p.name}: storage '{key}' holds {raw.size} bytes, needs {need}")
        return _Storage(stype, key, numel, raw[:need].view(stype.np_dtype))

    try:
        obj = _RestrictedUnpickler(zf.read(pkl_names[0]), load_storage).load()
    except (FormatError, UnsafeCheckpointError):
        raise
    except Exception as e:  # any other unpickling failure is a corrupt file
        msg = f"{p.name}: corrupt checkpoint pickle ({type(e).__name__}: {e})"
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
            raise FormatError(f"{p.name}: entry '{name}' is a {type(val).__name__}, not a tensor")
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
    f = open(p, "rb")
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
        raise FormatError(f"{p.name}: bad safetensors header ({type(e).__name__}: {e})") from None
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
    try:
        tag, dt = _ST_DTYPES[info["dtype"]]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
    except KeyError as e:
        raise FormatError(f"{p.name}: tensor '{name}' has unsupported or missing {e}") from None
    except (TypeError, ValueError):
        raise FormatError(f"{p.name}: tensor '{name}' has a malformed header entry") from None
    count = math.prod(shape)  # Python ints: np.prod wraps around at 2**63
    if any(s < 0 for s in shape) or begin < 0 or end - begin != count * dt.itemsize:
        raise FormatError(f"{p.name}: tensor '{name}' size does not match its shape {shape}")
    if base + end > len(mm):
        raise FormatError(f"{p.name}: tensor '{name}' runs past the end of the file (truncated?)")
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
