"""Read and write rwkv-edge GGUF model files (layout: ``gguf_schema``).

Reading is done here, not with ``gguf.GGUFReader``: that reader builds one
numpy view per array element (slow on the 1 MB embedded vocabulary) and
reports bad files with assertion errors. This parser bounds-checks every
length and offset against the file size and raises ``FormatError`` /
``VersionError`` naming the problem. Tensor data is memory-mapped, never
copied.

Writing uses ``gguf.GGUFWriter`` for the header. Tensors stream one by one
into a data file beside the destination, so the header (which lists every
tensor and the quantizer's report) can be written once all of them are
known; the header and the data are then joined in an unnamed file that is
fsynced and linked over the destination (``rwkv_edge.atomic_file``). A crash
or kill at any point leaves the destination untouched and no temp file behind.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import gguf_schema as S
from .atomic_file import atomic_output
from .checkpoint_base import Checkpoint
from .config import ModelConfig, detect_config
from .errors import FormatError, IoError, ShapeError, VersionError
from .quant import BLOCK_BYTES, QK, quantize, row_bytes
from .tensors import Tensor, closing_on_error, f32_to_bf16, map_readonly, open_regular

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)

# GGML tensor type ids of the dtypes rwkv-edge stores.
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 8, "bf16": 30}
_DTYPE_OF_GGML = {v: k for k, v in GGML_TYPES.items()}
_NP_DTYPES: dict[str, np.dtype[Any]] = {
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "bf16": np.dtype("<u2"),
}

# GGUF metadata value types: id -> struct format (scalars only).
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY = 1 << 28  # refuse absurd element counts before allocating anything

_REQUIRED_U32 = {
    "n_layer": S.KEY_N_LAYER,
    "n_embd": S.KEY_N_EMBD,
    "n_head": S.KEY_N_HEAD,
    "head_size": S.KEY_HEAD_SIZE,
    "n_ffn": S.KEY_N_FFN,
    "n_vocab": S.KEY_N_VOCAB,
}
TOKENIZER_KINDS = ("world", "sentencepiece", "bytes")


def nbytes_of(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` takes in ``dtype`` (Python ints: a hostile shape cannot wrap)."""
    n = math.prod(int(d) for d in shape)
    if dtype in BLOCK_BYTES:
        return n // QK * BLOCK_BYTES[dtype]
    return n * _NP_DTYPES[dtype].itemsize


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


class _Cursor:
    """Bounds-checked little-endian reads from a memory map."""

    def __init__(self, buf: mmap.mmap, name: str) -> None:
        self.buf = buf
        self.pos = 0
        self.name = name

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"{self.name}: file ends inside {what} (truncated?)")
        start = self.pos
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        start = self.take(n, what)
        try:
            return bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.name}: {what} is not valid UTF-8") from None

    def value(self, vtype: int, what: str) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            return self.array(what)
        raise FormatError(f"{self.name}: {what} has unknown value type {vtype}")

    def array(self, what: str) -> Any:
        etype = self.unpack("<I", what)
        count = self.unpack("<Q", what)
        if count > _MAX_ARRAY:
            raise FormatError(f"{self.name}: {what} claims {count} elements")
        if etype == 0:  # uint8: the embedded tokenizer file, kept as bytes
            start = self.take(count, what)
            return bytes(self.buf[start : start + count])
        if etype == _ARRAY:  # rwkv-edge never writes them; refusing also bounds recursion
            raise FormatError(f"{self.name}: {what} is an array of arrays")
        if etype in _SCALARS:
            dt = np.dtype(_SCALARS[etype])
            start = self.take(count * dt.itemsize, what)
            return np.frombuffer(self.buf, dt, count, start).tolist()
        return [self.value(etype, what) for _ in range(count)]


@dataclass
class _TensorEntry:
    name: str
    shape: tuple[int, ...]  # numpy order
    dtype: str
    offset: int  # relative to the data section


def _read_header(cur: _Cursor) -> tuple[dict[str, Any], list[_TensorEntry]]:
    if len(cur.buf) < 24 or cur.buf[:4] != GGUF_MAGIC:
        raise FormatError(f"{cur.name}: not a GGUF file (bad magic or too short)")
    cur.pos = 4
    version = cur.unpack("<I", "the header")
    if version not in GGUF_VERSIONS:
        raise VersionError(
            f"{cur.name}: GGUF version {version} is not supported "
            f"(this reader knows {GGUF_VERSIONS})"
        )
    n_tensors = cur.unpack("<Q", "the header")
    n_kv = cur.unpack("<Q", "the header")
    if n_tensors > len(cur.buf) // 24 or n_kv > len(cur.buf) // 12:
        raise FormatError(
            f"{cur.name}: header claims {n_tensors} tensors and {n_kv} keys, "
            f"more than {len(cur.buf)} bytes can hold (truncated?)"
        )
    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("a metadata key")
        kv[key] = cur.value(cur.unpack("<I", f"metadata '{key}'"), f"metadata '{key}'")
    return kv, [_read_tensor_info(cur) for _ in range(n_tensors)]


def _read_tensor_info(cur: _Cursor) -> _TensorEntry:
    name = cur.string("a tensor name")
    n_dims = cur.unpack("<I", f"tensor '{name}'")
    if not 1 <= n_dims <= 4:
        raise FormatError(f"{cur.name}: tensor '{name}' has {n_dims} dimensions")
    ne = [cur.unpack("<Q", f"tensor '{name}'") for _ in range(n_dims)]
    gtype = cur.unpack("<I", f"tensor '{name}'")
    offset = cur.unpack("<Q", f"tensor '{name}'")
    if gtype not in _DTYPE_OF_GGML:
        raise FormatError(
            f"{cur.name}: tensor '{name}' has GGML type {gtype}, which rwkv-edge "
            f"does not use (supported: {', '.join(GGML_TYPES)})"
        )
    dtype = _DTYPE_OF_GGML[gtype]
    if dtype in BLOCK_BYTES and ne[0] % QK:
        raise FormatError(f"{cur.name}: {dtype} tensor '{name}' has rows of {ne[0]} elements")
    return _TensorEntry(name, tuple(reversed(ne)), dtype, offset)


def _get(kv: Mapping[str, Any], key: str, kind: type, name: str) -> Any:
    if key not in kv:
        raise FormatError(f"{name}: metadata key '{key}' is missing")
    val = kv[key]
    ok = isinstance(val, kind) and not (kind is int and isinstance(val, bool))
    if kind is float and isinstance(val, int) and not isinstance(val, bool):
        ok, val = True, float(val)
    if not ok:
        raise FormatError(
            f"{name}: metadata '{key}' is a {type(val).__name__}, expected {kind.__name__}"
        )
    return val


def _check_identity(kv: Mapping[str, Any], name: str) -> None:
    arch = kv.get(S.KEY_ARCH)
    if arch not in S.ARCHS:
        kind = VersionError if isinstance(arch, str) and arch.startswith("rwkv") else FormatError
        raise kind(f"{name}: architecture is {arch!r}; rwkv-edge runs {' and '.join(S.ARCHS)}")
    fv = _get(kv, S.KEY_FILE_VERSION, int, name)
    if fv > S.FILE_VERSION:
        raise VersionError(
            f"{name}: rwkv-edge file version {fv} is newer than this reader "
            f"({S.FILE_VERSION}); upgrade rwkv-edge"
        )


def config_from_kv(kv: Mapping[str, Any], name: str) -> ModelConfig:
    """The ModelConfig the metadata describes (validated)."""
    arch = kv.get(S.KEY_ARCH, S.ARCH)
    dims = {k: _get(kv, S.arch_key(key, arch), int, name) for k, key in _REQUIRED_U32.items()}
    if min(dims.values()) <= 0 or dims["n_head"] * dims["head_size"] != dims["n_embd"]:
        raise FormatError(f"{name}: inconsistent hyper-parameters {dims}")
    code = _get(kv, S.arch_key(S.KEY_VERSION, arch), int, name)
    if (code == 70) != (arch == S.ARCH_V7):
        raise FormatError(f"{name}: version {code} does not belong to architecture {arch!r}")
    if arch == S.ARCH_V7:
        dims |= {k: _get(kv, key, int, name) for k, key in S.KEYS_V7_LORA.items()}
    # eps are stored as float32; 7 digits give back the float64 that was written
    ln_eps, gn_eps = (
        float(f"{_get(kv, S.arch_key(key, arch), float, name):.7g}")
        for key in (S.KEY_LN_EPS, S.KEY_GN_EPS)
    )
    return replace(ModelConfig.from_version_code(code, **dims), ln_eps=ln_eps, gn_eps=gn_eps)


def _decode_json(kv: Mapping[str, Any], key: str, name: str) -> Any:
    if key not in kv:
        return None
    try:
        return json.loads(_get(kv, key, str, name))
    except json.JSONDecodeError as e:
        raise FormatError(f"{name}: metadata '{key}' is not valid JSON ({e})") from None


def _metadata(kv: dict[str, Any], config: ModelConfig, name: str) -> dict[str, Any]:
    kind = _get(kv, S.KEY_TOKENIZER_KIND, str, name)
    if kind not in TOKENIZER_KINDS:
        raise FormatError(f"{name}: unknown tokenizer kind {kind!r}")
    data = kv.get(S.KEY_TOKENIZER_DATA, b"")
    if not isinstance(data, bytes) or (kind != "bytes" and not data):
        raise FormatError(f"{name}: tokenizer '{kind}' has no embedded data")
    # optional: absent means "f32" (no rounding), as in the C loader
    key = S.arch_key(S.KEY_EMB_LN_DTYPE, kv.get(S.KEY_ARCH, S.ARCH))
    emb_ln = _get(kv, key, str, name) if key in kv else "f32"
    if emb_ln not in S.EMB_LN_DTYPES:
        raise FormatError(f"{name}: emb_ln_dtype {emb_ln!r} is not f32, f16 or bf16")
    return {
        **kv,  # raw keys too, for readers that look keys up by their gguf_schema name
        "config": config,
        "tokenizer_kind": kind,
        "tokenizer_data": data,
        "emb_ln_dtype": emb_ln,
        "file_version": kv[S.KEY_FILE_VERSION],
        "recipe": _decode_json(kv, S.KEY_RECIPE, name),
        "report": _decode_json(kv, S.KEY_REPORT, name),
        "source_sha256": kv.get(S.KEY_SOURCE_SHA256),
        "source_name": kv.get(S.KEY_SOURCE_NAME),
    }


def _check_no_overlap(entries: list[_TensorEntry], name: str) -> None:
    """Each tensor's bytes are its own (the C reader assumes it too)."""
    end, prev = 0, ""
    for e in sorted(entries, key=lambda e: e.offset):
        if e.offset < end:
            raise FormatError(f"{name}: tensors '{prev}' and '{e.name}' overlap")
        end, prev = e.offset + nbytes_of(e.dtype, e.shape), e.name


def _map_tensors(
    mm: mmap.mmap, entries: list[_TensorEntry], data_start: int, name: str
) -> dict[str, Tensor]:
    _check_no_overlap(entries, name)
    out: dict[str, Tensor] = {}
    for e in entries:
        if e.name in out:
            raise FormatError(f"{name}: tensor '{e.name}' appears twice")
        size = nbytes_of(e.dtype, e.shape)
        start = data_start + e.offset
        if e.offset % S.ALIGNMENT:
            raise FormatError(f"{name}: tensor '{e.name}' is not {S.ALIGNMENT}-byte aligned")
        if start + size > len(mm):
            raise FormatError(
                f"{name}: tensor '{e.name}' runs past the end of the file (truncated?)"
            )
        if e.dtype in BLOCK_BYTES:
            byte_shape = (*e.shape[:-1], row_bytes(e.dtype, e.shape[-1]))
            raw = np.frombuffer(mm, np.uint8, size, start).reshape(byte_shape)
        else:
            dt = _NP_DTYPES[e.dtype]
            raw = np.frombuffer(mm, dt, size // dt.itemsize, start).reshape(e.shape)
        out[e.name] = Tensor(e.name, e.shape, e.dtype, raw)
    return out


def _check_shapes(tensors: Mapping[str, Tensor], config: ModelConfig, name: str) -> None:
    try:
        found = detect_config({n: t.shape for n, t in tensors.items()})
    except (FormatError, VersionError) as e:
        raise FormatError(f"{name}: tensors do not form an RWKV model ({e})") from None
    fields: tuple[str, ...] = ("version", "n_layer", "n_embd", "n_head", "head_size")
    fields += ("n_ffn", "n_vocab", "lora_w", "lora_a", "lora_v", "lora_g")
    diff = [f for f in fields if getattr(found, f) != getattr(config, f)]
    if diff:
        raise FormatError(f"{name}: metadata and tensor shapes disagree on {', '.join(diff)}")


def read_gguf(path: str | os.PathLike[str]) -> Checkpoint:
    """Open an rwkv-edge GGUF file: validated metadata plus memory-mapped tensors.

    ``metadata`` holds: config (ModelConfig), tokenizer_kind, tokenizer_data
    (bytes), emb_ln_dtype, file_version, recipe and report (decoded JSON or
    None), source_sha256, source_name, and every raw key under its
    gguf_schema name.
    """
    p = Path(path)
    f = open_regular(p)  # a FIFO or device is refused, not waited on
    mm = map_readonly(f, p.name)
    with closing_on_error(mm, f):
        cur = _Cursor(mm, p.name)
        kv, entries = _read_header(cur)
        _check_identity(kv, p.name)
        align = _get(kv, S.KEY_ALIGNMENT, int, p.name) if S.KEY_ALIGNMENT in kv else 32
        if align != S.ALIGNMENT:
            raise FormatError(f"{p.name}: data alignment {align}, expected {S.ALIGNMENT}")
        config = config_from_kv(kv, p.name)
        metadata = _metadata(kv, config, p.name)
        data_start = -(-cur.pos // align) * align
        tensors = _map_tensors(mm, entries, data_start, p.name)
        _check_shapes(tensors, config, p.name)
    return Checkpoint(p, tensors, "gguf", metadata, keepalive=[mm, f])


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


@dataclass
class ChunkedTensor:
    """A tensor given as consecutive row chunks, so a large one never sits in memory whole.

    ``shape`` is the logical (element) shape; chunks hold rows of it, as float
    arrays for f32/f16/bf16 or uint8 blocks for block formats.
    """

    shape: tuple[int, ...]
    chunks: Iterable[np.ndarray]


@dataclass
class _Written:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass
class WriteResult:
    path: Path
    file_size: int
    tensors: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)


def _to_storage(dtype: str, data: np.ndarray, name: str) -> np.ndarray:
    """The bytes-ready array of one tensor (or chunk) in ``dtype``."""
    if dtype in BLOCK_BYTES:
        if data.dtype == np.uint8:
            return np.ascontiguousarray(data)
        return quantize(data, dtype, name)
    if dtype == "bf16":
        return data if data.dtype == np.uint16 else f32_to_bf16(np.asarray(data, np.float32))
    if dtype not in _NP_DTYPES:
        raise ShapeError(f"tensor '{name}': unknown dtype {dtype!r}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise FormatError(f"tensor '{name}' holds NaN or inf values")
    with np.errstate(over="ignore"):  # an fp16 overflow is reported just below
        out = np.ascontiguousarray(data, dtype=_NP_DTYPES[dtype])
    if dtype == "f16" and data.dtype != out.dtype and not np.isfinite(out).all():
        raise FormatError(f"tensor '{name}' has values beyond the fp16 range; use f32 or bf16")
    return out


def _logical_shape(dtype: str, data: np.ndarray) -> tuple[int, ...]:
    if dtype in BLOCK_BYTES and data.dtype == np.uint8:
        return (*data.shape[:-1], data.shape[-1] // BLOCK_BYTES[dtype] * QK)
    return tuple(int(d) for d in data.shape)


def _stream_tensor(
    out: IO[bytes], name: str, dtype: str, data: np.ndarray | ChunkedTensor
) -> _Written:
    """Append one tensor at the next aligned offset of ``out``."""
    if dtype not in GGML_TYPES:
        raise ShapeError(f"tensor '{name}': dtype {dtype!r} is not one of {tuple(GGML_TYPES)}")
    out.write(b"\0" * (-out.tell() % S.ALIGNMENT))
    if isinstance(data, ChunkedTensor):
        shape, chunks = tuple(data.shape), data.chunks
    else:
        shape, chunks = _logical_shape(dtype, data), [data]
    written = 0
    for chunk in chunks:
        arr = _to_storage(dtype, chunk, name)
        out.write(arr.data.cast("B"))
        written += arr.nbytes
    if dtype in BLOCK_BYTES and shape[-1] % QK:
        raise ShapeError(f"tensor '{name}': rows of {shape[-1]} are not whole {dtype} blocks")
    if written != nbytes_of(dtype, shape):
        raise ShapeError(
            f"tensor '{name}': got {written} bytes, shape {shape} in {dtype} needs "
            f"{nbytes_of(dtype, shape)}"
        )
    return _Written(name, dtype, shape, written)


def _add_metadata(w: Any, config: ModelConfig, meta: Mapping[str, Any]) -> None:
    """Every key an engine needs (gguf_schema), in a fixed order."""
    w.add_custom_alignment(S.ALIGNMENT)
    w.add_uint32(S.KEY_FILE_VERSION, S.FILE_VERSION)
    if meta.get("name"):
        w.add_string(S.KEY_NAME, str(meta["name"]))
    arch = S.ARCH_V7 if config.is_v7 else S.ARCH
    w.add_uint32(S.arch_key(S.KEY_VERSION, arch), config.version_code)
    for attr, key in _REQUIRED_U32.items():
        w.add_uint32(S.arch_key(key, arch), int(getattr(config, attr)))
    if config.is_v7:
        for attr, key in S.KEYS_V7_LORA.items():
            w.add_uint32(key, int(getattr(config, attr)))
    w.add_float32(S.arch_key(S.KEY_LN_EPS, arch), config.ln_eps)
    w.add_float32(S.arch_key(S.KEY_GN_EPS, arch), config.gn_eps)
    w.add_string(S.arch_key(S.KEY_EMB_LN_DTYPE, arch), meta["emb_ln_dtype"])
    kind, data = meta["tokenizer"]
    w.add_string(S.KEY_TOKENIZER_KIND, kind)
    if data:
        w.add_array(S.KEY_TOKENIZER_DATA, bytes(data))
    for key, mkey in ((S.KEY_RECIPE, "recipe"), (S.KEY_REPORT, "report")):
        if meta.get(mkey) is not None:
            w.add_string(key, json.dumps(meta[mkey], sort_keys=True))
    for key, mkey in ((S.KEY_SOURCE_SHA256, "source_sha256"), (S.KEY_SOURCE_NAME, "source_name")):
        if meta.get(mkey):
            w.add_string(key, str(meta[mkey]))


def _write_header(
    tmp: Path, config: ModelConfig, meta: Mapping[str, Any], written: list[_Written]
) -> IO[bytes]:
    """Write magic, metadata and tensor table to ``tmp``; return the open file."""
    import gguf  # the reference writer, imported only when a file is written

    w = gguf.GGUFWriter(tmp, S.ARCH_V7 if config.is_v7 else S.ARCH)
    _add_metadata(w, config, meta)
    for t in written:
        if t.dtype in BLOCK_BYTES:
            byte_shape = (*t.shape[:-1], row_bytes(t.dtype, t.shape[-1]))
            w.add_tensor_info(
                t.name,
                byte_shape,
                np.dtype(np.uint8),
                t.nbytes,
                raw_dtype=gguf.GGMLQuantizationType(GGML_TYPES[t.dtype]),
            )
        else:
            raw = gguf.GGMLQuantizationType.BF16 if t.dtype == "bf16" else None
            w.add_tensor_info(t.name, t.shape, _NP_DTYPES[t.dtype], t.nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout: IO[bytes] = w.fout[0]
    return fout


def _check_meta(meta: Mapping[str, Any]) -> None:
    kind, data = meta["tokenizer"]
    if kind not in TOKENIZER_KINDS:
        raise ShapeError(f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    if kind != "bytes" and not data:
        raise ShapeError(f"tokenizer '{kind}' needs its file's bytes")
    if meta["emb_ln_dtype"] not in S.EMB_LN_DTYPES:
        raise ShapeError(f"emb_ln_dtype must be f32, f16 or bf16, got {meta['emb_ln_dtype']!r}")


def write_gguf(
    dst: str | os.PathLike[str],
    config: ModelConfig,
    tensors: Iterable[tuple[str, str, np.ndarray | ChunkedTensor]],
    *,
    tokenizer: tuple[str, bytes] | None = None,
    emb_ln_dtype: str = "f32",
    recipe: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    source_sha256: str | None = None,
    source_name: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> WriteResult:
    """Write a model file atomically, streaming ``(name, dtype, data)`` one at a time.

    dtype is f32, f16, bf16, q8_0, q4_0 or q4_1; data is the values (numpy
    order) or, for block formats, uint8 blocks (float data is quantized
    round-to-nearest), or a ChunkedTensor. ``report`` may be a callable: it is
    called after the last tensor, so a generator can fill it as it goes.
    An existing ``dst`` is refused unless ``force``.
    """
    dst = Path(dst)
    meta = {
        "tokenizer": tokenizer or ("bytes", b""),
        "emb_ln_dtype": emb_ln_dtype,
        "recipe": recipe,
        "source_sha256": source_sha256,
        "source_name": source_name,
        "name": name,
    }
    _check_meta(meta)
    if dst.exists() and not force:
        raise IoError(f"{dst} exists; pass force=True (--force) to overwrite it")
    if not dst.parent.is_dir():
        raise IoError(f"directory {dst.parent} does not exist")
    # The tensors stream into an unnamed scratch file (O_TMPFILE where the OS has
    # it), the header then goes first into the output, and only the complete,
    # fsynced output is given dst's name: an interrupted run leaves nothing.
    with (
        tempfile.TemporaryFile(dir=dst.parent, prefix=f".{dst.name}.", suffix=".data.tmp") as bf,
        atomic_output(dst, overwrite=force) as target,
    ):
        written = [_stream_tensor(bf, n, d, a) for n, d, a in tensors]
        meta["report"] = report() if callable(report) else report
        with _write_header(Path(target.path), config, meta, written) as out:
            out.write(b"\0" * (-out.tell() % S.ALIGNMENT))
            bf.seek(0)
            shutil.copyfileobj(bf, out, 16 << 20)
            out.flush()
    return WriteResult(dst, dst.stat().st_size, [(t.name, t.dtype, t.shape) for t in written])


def iter_tensors(ckpt: Mapping[str, Tensor]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, dtype, raw) of every tensor of an opened file, to copy it unchanged."""
    for name, t in ckpt.items():
        yield name, t.dtype, np.asarray(t.raw)


# ---------------------------------------------------------------------------
# Any checkpoint -> a float (or test-quantized) GGUF: how the C core, which reads only
# GGUF, runs .pth and safetensors files
# ---------------------------------------------------------------------------


def write_checkpoint_gguf(
    ckpt: Checkpoint, path: Path, matrix_type: str | None = None, emb_ln_dtype: str | None = None
) -> None:
    """Write a checkpoint as an rwkv5 GGUF: float matrices as stored (f32/f16/bf16),
    every small tensor as f32 (``gguf_file.write_gguf`` squeezes ``time_mix_*``).

    ``matrix_type`` ("q8_0", "q4_0", "q4_1") quantizes every matrix instead;
    tests use it to build quantized fixtures. ``emb_ln_dtype`` overrides the
    embedding rounding (default: the checkpoint's dtype, RWKV5_SPEC.md 5.3).
    """
    write_gguf(
        path,
        ckpt.config,
        (_entry(n, ckpt[n], matrix_type) for n in ckpt),
        emb_ln_dtype=emb_ln_dtype or S.emb_ln_dtype(ckpt.metadata, ckpt.source_dtype),
        source_name=ckpt.path.name,
        force=True,
    )


def _entry(name: str, t: Tensor, matrix_type: str | None) -> tuple[str, str, np.ndarray]:
    """(name, GGUF dtype, data) of one tensor."""
    if not S.is_matrix(name, t.shape):
        return name, "f32", t.to_f32()
    if matrix_type is not None:
        return name, matrix_type, t.to_f32()
    if t.dtype in ("bf16", "f16"):  # kept as stored: the C core multiplies them directly
        return name, t.dtype, np.asarray(t.raw).reshape(t.shape)
    return name, "f32", t.to_f32()
