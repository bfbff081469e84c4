"""Read rwkv.cpp ``.bin`` model files (``ggmf``) back into BlinkDL's checkpoint layout.

File (all little-endian int32, no padding):
    magic 0x67676d66 ("ggmf"), version 100|101, n_vocab, n_embed, n_layer, data_type
    then until EOF, per tensor: dim_count, key_length, data_type,
    dims[dim_count] (ggml order: fastest first), key bytes, data
Tensor types: 0 FP32, 1 FP16, 2 Q4_0, 3 Q4_1, 7 Q5_0, 8 Q5_1, 9 Q8_0 (ggml
blocks of 32; version 101 only, older quantized files used other layouts).

rwkv.cpp's converter changes v5 parameters (RWKV5_SPEC.md section 6); this
undoes each change so the result converts like any checkpoint:
  * ``time_*`` were squeezed: ``time_mix_*`` go back to [1, 1, C];
  * ``time_decay`` was stored as ``exp(-exp(w))`` (shape [H,N,1], [H,1,1] or
    [H,1]): w = log(-log(stored)), trailing 1s dropped;
  * ``time_first`` (gate-less 5.0) was stored as ``exp(u)`` [H,1,1]: u = log(stored), [H];
  * ``time_faaaa`` gained a trailing 1: dropped.
Q8_0/Q4_0/Q4_1 blocks stay blocks (lazy); Q5_0/Q5_1 are dequantized on load.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from rwkv_edge.checkpoint import Checkpoint
from rwkv_edge.errors import FormatError, VersionError
from rwkv_edge.quant import QK
from rwkv_edge.tensors import Tensor, closing_on_error, map_readonly

MAGIC = b"fmgg"  # 0x67676d66 written little-endian
_FLOAT: dict[int, tuple[str, np.dtype[Any]]] = {
    0: ("f32", np.dtype("<f4")),
    1: ("f16", np.dtype("<f2")),
}
_BLOCKS = {2: ("q4_0", 18), 3: ("q4_1", 20), 7: ("q5_0", 22), 8: ("q5_1", 24), 9: ("q8_0", 34)}
_MAX_DIMS = 4


def is_rwkvcpp(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


def _dequantize_q5(blk: npt.NDArray[np.uint8], with_min: bool) -> npt.NDArray[np.float32]:
    """ggml Q5_0 / Q5_1: 4 low bits in nibbles (i, i + 16), the 5th bit in a uint32 mask."""
    d = blk[:, :2].copy().view("<f2").astype(np.float32)
    pos = 4 if with_min else 2
    m = blk[:, 2:4].copy().view("<f2").astype(np.float32) if with_min else None
    qh = blk[:, pos : pos + 4].copy().view("<u4")
    qs = blk[:, pos + 4 :]
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)
    high = ((qh >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.int32)
    q = low | (high << 4)
    if m is None:
        return (q - 16).astype(np.float32) * d
    return q.astype(np.float32) * d + m


def _read_tensor(mm: mmap.mmap, pos: int, name_hint: str) -> tuple[Tensor, int]:
    if pos + 12 > len(mm):
        raise FormatError(f"{name_hint}: file ends inside a tensor header (truncated?)")
    n_dims, key_len, dtype = struct.unpack_from("<iii", mm, pos)
    if not 1 <= n_dims <= _MAX_DIMS or not 0 < key_len < 4096:
        raise FormatError(
            f"{name_hint}: bad tensor header at byte {pos} (dims {n_dims}, key length {key_len})"
        )
    pos += 12
    if pos + 4 * n_dims + key_len > len(mm):
        raise FormatError(f"{name_hint}: file ends inside a tensor header (truncated?)")
    ne = struct.unpack_from(f"<{n_dims}i", mm, pos)
    pos += 4 * n_dims
    name = bytes(mm[pos : pos + key_len]).decode("utf-8", errors="replace")
    pos += key_len
    if any(d <= 0 for d in ne):
        raise FormatError(f"{name_hint}: tensor '{name}' has dimensions {ne}")
    shape = tuple(reversed(ne))
    count = int(np.prod(shape))
    if dtype in _FLOAT:
        tag, dt = _FLOAT[dtype]
        size = count * dt.itemsize
    elif dtype in _BLOCKS:
        tag, block = _BLOCKS[dtype]
        if ne[0] % QK:
            raise FormatError(f"{name_hint}: {tag} tensor '{name}' rows of {ne[0]} elements")
        size = count // QK * block
    else:
        raise FormatError(f"{name_hint}: tensor '{name}' has unsupported data type {dtype}")
    if pos + size > len(mm):
        raise FormatError(
            f"{name_hint}: tensor '{name}' runs past the end of the file (truncated?)"
        )
    return _make_tensor(mm, pos, name, shape, dtype, size), pos + size


def _make_tensor(
    mm: mmap.mmap, pos: int, name: str, shape: tuple[int, ...], dtype: int, size: int
) -> Tensor:
    if dtype in _FLOAT:
        tag, dt = _FLOAT[dtype]
        return Tensor(
            name, shape, tag, np.frombuffer(mm, dt, size // dt.itemsize, pos).reshape(shape)
        )
    tag, block = _BLOCKS[dtype]
    raw = np.frombuffer(mm, np.uint8, size, pos)
    if tag in ("q5_0", "q5_1"):  # no runtime format: widen now
        vals = _dequantize_q5(raw.reshape(-1, block), tag == "q5_1").reshape(shape)
        return Tensor(name, shape, "f32", vals)
    return Tensor(name, shape, tag, raw.reshape(*shape[:-1], shape[-1] // QK * block))


def _f64(t: Tensor) -> npt.NDArray[np.float64]:
    return t.to_f32().astype(np.float64)


def _drop_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _undo(t: Tensor) -> Tensor:
    """BlinkDL's raw parameter from rwkv.cpp's stored form (module docstring)."""
    name = t.name
    if ".time_mix_" in name:
        return Tensor(name, (1, 1, int(np.prod(t.shape))), t.dtype, t.raw.reshape(1, 1, -1))
    shape = _drop_trailing_ones(t.shape)
    if name.endswith(".time_decay"):
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.log(-np.log(_f64(t)))
        if not np.isfinite(w).all():
            raise FormatError(f"'{name}' holds values outside (0, 1); not exp(-exp(w))")
        return Tensor(name, shape, "f32", w.astype(np.float32).reshape(shape))
    if name.endswith(".time_first"):
        return Tensor(name, shape, "f32", np.log(_f64(t)).astype(np.float32).reshape(shape))
    if name.endswith(".time_faaaa"):
        return Tensor(name, shape, t.dtype, t.raw.reshape(shape))
    return t


def _check_header(mm: mmap.mmap, name: str) -> dict[str, int]:
    if len(mm) < 24 or mm[:4] != MAGIC:
        raise FormatError(f"{name}: not an rwkv.cpp model file (no 'ggmf' magic)")
    version, n_vocab, n_embed, n_layer, dtype = struct.unpack_from("<5i", mm, 4)
    if version not in (100, 101):
        raise VersionError(f"{name}: rwkv.cpp file version {version} is not supported (100, 101)")
    if min(n_vocab, n_embed, n_layer) <= 0:
        raise FormatError(
            f"{name}: bad header (vocab {n_vocab}, embed {n_embed}, layers {n_layer})"
        )
    return {
        "version": version,
        "n_vocab": n_vocab,
        "n_embed": n_embed,
        "n_layer": n_layer,
        "data_type": dtype,
    }


def read_rwkvcpp(path: str | Path) -> Checkpoint:
    """Open an rwkv.cpp ``.bin`` as a Checkpoint in BlinkDL's layout (kind "rwkvcpp")."""
    p = Path(path)
    f = open(p, "rb")
    mm = map_readonly(f, p.name)
    with closing_on_error(mm, f):
        return _parse(p, f, mm)


def _parse(p: Path, f: BinaryIO, mm: mmap.mmap) -> Checkpoint:
    head = _check_header(mm, p.name)
    tensors: dict[str, Tensor] = {}
    pos = 24
    while pos < len(mm):
        t, pos = _read_tensor(mm, pos, p.name)
        if head["version"] == 100 and t.dtype not in ("f32", "f16"):
            raise VersionError(
                f"{p.name}: quantized tensors of file version 100 use an old "
                "block layout; re-quantize with a current rwkv.cpp"
            )
        if t.name in tensors:
            raise FormatError(f"{p.name}: tensor '{t.name}' appears twice")
        tensors[t.name] = _undo(t)
    if any(".time_maa" in n for n in tensors):
        raise VersionError(f"{p.name}: an RWKV v6 file; only RWKV v5 is supported")
    emb = tensors.get("emb.weight")
    if emb is None or emb.shape != (head["n_vocab"], head["n_embed"]):
        raise FormatError(
            f"{p.name}: emb.weight does not match the header's "
            f"{head['n_vocab']} x {head['n_embed']}"
        )
    meta: dict[str, Any] = {"rwkvcpp": head}
    return Checkpoint(p, tensors, "rwkvcpp", meta, keepalive=[mm, f])
