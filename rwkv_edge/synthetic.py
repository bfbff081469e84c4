"""Write synthetic RWKV-v5.2 checkpoints of real shapes in BlinkDL's .pth format, without torch.

    rwkv-edge make-synthetic 24x1024 /tmp/x.pth --dtype bf16
    rwkv_edge.synthetic.write_synthetic(path, SyntheticSpec(24, 1024, dtype="bf16"))

Why: benchmarks need models of every real size (up to Eagle 7B, 32x4096,
15 GB in bf16) and CI cannot download them. Speed depends only on shapes and
formats, so random weights of the right shapes and plausible ranges do.

The file is torch's zip serialization written by hand: zip entries stored
uncompressed, each entry's data 64-byte aligned (an "FB" padding extra field,
as torch writes it), a protocol-2 pickle of an OrderedDict of
``torch._utils._rebuild_tensor_v2`` calls whose storages are persistent ids
``("storage", torch.<Float|Half|BFloat16>Storage, key, "cpu", numel)``, and a
``version`` record. Tensors are generated and written chunk by chunk (CRC
patched into the local header afterwards), so memory stays bounded for any
shape; zip64 records are written once offsets pass 4 GiB.

Weights: N(0, 1/sqrt(fan_in)) matrices (output projections further scaled by
1/sqrt(2·n_layer) so the residual stream stays O(1) over depth, as trained
models keep it), decay w with exp(-exp(w)) spread over ~0.7..0.998 along the
channels, small bonus (time_faaaa), token-shift mixes in (0, 1), LayerNorm
weights near 1, a small embedding. Same seed, same bytes.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

WORLD_VOCAB = 65536
HEAD_SIZE = 64
ALIGN = 64  # torch aligns every record's data to 64 bytes (mmap-able storages)
CHUNK_ELEMS = 1 << 23  # 8M floats = 32 MiB per generated chunk: bounds memory

# The standard shapes: name -> (n_layer, n_embd). 32x4096 is Eagle 7B.
SHAPES: dict[str, tuple[int, int]] = {
    "12x768": (12, 768),
    "24x1024": (24, 1024),
    "24x2048": (24, 2048),
    "32x4096": (32, 4096),
}
DTYPES = ("fp32", "fp16", "bf16")
_STORAGE = {"fp32": ("FloatStorage", 4), "fp16": ("HalfStorage", 2), "bf16": ("BFloat16Storage", 2)}


# ---------------------------------------------------------------------------
# What to generate
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape, dtype and seed of one synthetic v5.2 checkpoint."""

    n_layer: int
    n_embd: int
    n_vocab: int = WORLD_VOCAB
    head_size: int = HEAD_SIZE
    dtype: str = "bf16"
    seed: int = 0

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    @property
    def n_ffn(self) -> int:
        """Real v5 models: 3.5·C rounded down to a multiple of 32."""
        return int(self.n_embd * 3.5) // 32 * 32

    def check(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if min(self.n_layer, self.n_embd, self.n_vocab, self.head_size) <= 0:
            raise ValueError("all dimensions must be positive")
        if self.n_embd % self.head_size:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of {self.head_size}")


def parse_shape(text: str) -> tuple[int, int]:
    """'24x1024' (or any 'LAYERSxEMBD') -> (24, 1024)."""
    if text in SHAPES:
        return SHAPES[text]
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise ValueError(f"shape must be LAYERSxEMBD like 24x1024, got {text!r}")
    return int(m.group(1)), int(m.group(2))


# A generator fills one chunk of n values; it gets the tensor's own rng and
# the chunk's flat start index (decay ramps depend on the channel).
Filler = Callable[[np.random.Generator, int, int], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    fill: Filler

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


def _normal(std: float, mean: float = 0.0) -> Filler:
    return lambda rng, _start, n: rng.standard_normal(n, dtype=np.float32) * std + mean


def _uniform(lo: float, hi: float) -> Filler:
    return lambda rng, _start, n: rng.uniform(lo, hi, n).astype(np.float32)


def _decay(n_embd: int) -> Filler:
    """w along the channels so that exp(-exp(w)) runs from ~0.7 (fast) to ~0.998 (slow)."""
    lo, hi = np.log(-np.log(0.998)), np.log(-np.log(0.7))

    def fill(rng: np.random.Generator, start: int, n: int) -> npt.NDArray[np.float32]:
        pos = (np.arange(start, start + n) % n_embd) / max(n_embd - 1, 1)
        w = hi + (lo - hi) * pos + rng.uniform(-0.05, 0.05, n)
        return np.clip(w, lo, hi).astype(np.float32)

    return fill


def _block_plans(i: int, s: SyntheticSpec) -> list[TensorPlan]:
    c, f, h, n = s.n_embd, s.n_ffn, s.n_head, s.head_size
    mat_c = _normal(c**-0.5)
    out_scale = (2.0 * s.n_layer) ** -0.5
    p = f"blocks.{i}."
    plans = [
        TensorPlan(p + f"ln{j}.{k}", (c,), _normal(0.05, 1.0) if k == "weight" else _normal(0.02))
        for j in (1, 2)
        for k in ("weight", "bias")
    ]
    if i == 0:
        plans += [
            TensorPlan(p + "ln0.weight", (c,), _normal(0.05, 1.0)),
            TensorPlan(p + "ln0.bias", (c,), _normal(0.02)),
        ]
    plans += [TensorPlan(p + f"att.time_mix_{x}", (1, 1, c), _uniform(0.05, 0.95)) for x in "kvrg"]
    plans += [
        TensorPlan(p + "att.time_decay", (h, n), _decay(c)),
        TensorPlan(p + "att.time_faaaa", (h, n), _normal(0.1)),
        *(TensorPlan(p + f"att.{x}.weight", (c, c), mat_c) for x in ("receptance", "key", "value")),
        TensorPlan(p + "att.output.weight", (c, c), _normal(c**-0.5 * out_scale)),
        TensorPlan(p + "att.gate.weight", (c, c), mat_c),
        TensorPlan(p + "att.ln_x.weight", (c,), _normal(0.05, 1.0)),
        TensorPlan(p + "att.ln_x.bias", (c,), _normal(0.02)),
        TensorPlan(p + "ffn.time_mix_k", (1, 1, c), _uniform(0.05, 0.95)),
        TensorPlan(p + "ffn.time_mix_r", (1, 1, c), _uniform(0.05, 0.95)),
        TensorPlan(p + "ffn.key.weight", (f, c), mat_c),
        TensorPlan(p + "ffn.receptance.weight", (c, c), mat_c),
        TensorPlan(p + "ffn.value.weight", (c, f), _normal(f**-0.5 * out_scale)),
    ]
    return plans


def tensor_plans(s: SyntheticSpec) -> list[TensorPlan]:
    """Every tensor of a v5.2 checkpoint, in BlinkDL's key order."""
    plans = [TensorPlan("emb.weight", (s.n_vocab, s.n_embd), _normal(0.02))]
    for i in range(s.n_layer):
        plans += _block_plans(i, s)
    plans += [
        TensorPlan("ln_out.weight", (s.n_embd,), _normal(0.05, 1.0)),
        TensorPlan("ln_out.bias", (s.n_embd,), _normal(0.02)),
        TensorPlan("head.weight", (s.n_vocab, s.n_embd), _normal(s.n_embd**-0.5)),
    ]
    return plans


def to_dtype_bytes(x: npt.NDArray[np.float32], dtype: str) -> bytes:
    """float32 values -> little-endian bytes of fp32, fp16 or bf16 (round to nearest even)."""
    if dtype == "fp32":
        return x.astype("<f4").tobytes()
    if dtype == "fp16":
        return x.astype("<f2").tobytes()
    u = x.astype(np.float32).view(np.uint32)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype("<u2").tobytes()


def tensor_chunks(plan: TensorPlan, index: int, s: SyntheticSpec) -> Iterator[bytes]:
    """The tensor's bytes in bounded chunks; its rng is seeded by (seed, index)."""
    rng = np.random.default_rng(np.random.SeedSequence(s.seed, spawn_key=(index,)))
    for start in range(0, plan.numel, CHUNK_ELEMS):
        n = min(CHUNK_ELEMS, plan.numel - start)
        yield to_dtype_bytes(plan.fill(rng, start, n), s.dtype)


# ---------------------------------------------------------------------------
# The pickle: written opcode by opcode (no torch to pickle real objects with)
# ---------------------------------------------------------------------------


def _p_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _p_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])  # BININT1
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)  # BININT2
    if -(2**31) <= v < 2**31:
        return b"J" + struct.pack("<i", v)  # BININT
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def _p_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


_ORDERED_DICT = _p_global("collections", "OrderedDict") + b")R"  # OrderedDict()


def _p_tensor(storage: str, key: str, shape: tuple[int, ...]) -> bytes:
    """_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())."""
    numel = int(np.prod(shape))
    strides = [int(np.prod(shape[i + 1 :])) for i in range(len(shape))]
    pid = (
        _p_tuple(
            [
                _p_str("storage"),
                _p_global("torch", storage),
                _p_str(key),
                _p_str("cpu"),
                _p_int(numel),
            ]
        )
        + b"Q"
    )  # BINPERSID
    args = _p_tuple(
        [
            pid,
            _p_int(0),
            _p_tuple([_p_int(d) for d in shape]),
            _p_tuple([_p_int(d) for d in strides]),
            b"\x89",
            _ORDERED_DICT,
        ]
    )
    return _p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def state_dict_pickle(plans: list[TensorPlan], dtype: str) -> bytes:
    """Protocol-2 pickle of OrderedDict{name: tensor}; storage key i is plans[i]."""
    storage = _STORAGE[dtype][0]
    body = b"".join(
        _p_str(p.name) + _p_tensor(storage, str(i), p.shape) for i, p in enumerate(plans)
    )
    return b"\x80\x02" + _ORDERED_DICT + b"(" + body + b"u."  # MARK ... SETITEMS STOP


# ---------------------------------------------------------------------------
# The zip container: stored entries, aligned data, zip64 when needed
# ---------------------------------------------------------------------------

_U32 = 0xFFFFFFFF
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: fixed, so files are reproducible


@dataclass
class _Entry:
    name: bytes
    offset: int
    size: int
    crc: int = 0


class TorchZipWriter:
    """Streams records into a torch-style zip; ``close()`` writes the central directory."""

    def __init__(self, f: BinaryIO, archive: str = "archive", force_zip64: bool = False) -> None:
        self._f = f
        self._prefix = archive + "/"
        self._entries: list[_Entry] = []
        self._force_zip64 = force_zip64

    def write_record(self, name: str, chunks: Iterator[bytes] | bytes, size: int) -> None:
        """One stored entry of exactly ``size`` bytes; the CRC is patched in afterwards."""
        e = _Entry((self._prefix + name).encode(), self._f.tell(), size)
        if size >= _U32:
            raise ValueError(f"record {name} is {size} bytes; one record must stay under 4 GiB")
        pad = (-(e.offset + 30 + len(e.name) + 4)) % ALIGN
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB": torch's padding field
        self._f.write(self._local_header(e, extra))
        written = 0
        for chunk in [chunks] if isinstance(chunks, bytes) else chunks:
            e.crc = zlib.crc32(chunk, e.crc)
            self._f.write(chunk)
            written += len(chunk)
        if written != size:
            raise ValueError(f"record {name}: wrote {written} bytes, promised {size}")
        end = self._f.tell()
        self._f.seek(e.offset + 14)
        self._f.write(struct.pack("<I", e.crc))
        self._f.seek(end)
        self._entries.append(e)

    @staticmethod
    def _local_header(e: _Entry, extra: bytes) -> bytes:
        return (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                0,
                0,
                _DOS_DATE,
                e.crc,
                e.size,
                e.size,
                len(e.name),
                len(extra),
            )
            + e.name
            + extra
        )

    def _central_header(self, e: _Entry) -> bytes:
        big = self._force_zip64 or e.offset >= _U32
        extra = struct.pack("<HHQ", 0x0001, 8, e.offset) if big else b""
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                45,
                45 if big else 20,
                0,
                0,
                0,
                _DOS_DATE,
                e.crc,
                e.size,
                e.size,
                len(e.name),
                len(extra),
                0,
                0,
                0,
                0,
                _U32 if big else e.offset,
            )
            + e.name
            + extra
        )

    def close(self) -> None:
        cd_start = self._f.tell()
        for e in self._entries:
            self._f.write(self._central_header(e))
        cd_size = self._f.tell() - cd_start
        n = len(self._entries)
        big = self._force_zip64 or cd_start + cd_size >= _U32 or n >= 0xFFFF
        if big:
            z64 = self._f.tell()
            self._f.write(
                struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start)
            )
            self._f.write(struct.pack("<IIQI", 0x07064B50, 0, z64, 1))
        self._f.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(n, 0xFFFF),
                min(n, 0xFFFF),
                min(cd_size, _U32),
                _U32 if big else cd_start,
                0,
            )
        )


# ---------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------


def write_synthetic(
    path: str | Path,
    spec: SyntheticSpec,
    *,
    force_zip64: bool = False,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Write the checkpoint; returns its size in bytes."""
    spec.check()
    plans = tensor_plans(spec)
    itemsize = _STORAGE[spec.dtype][1]
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")  # never leave a truncated file under the name
    with open(tmp, "wb") as f:
        zw = TorchZipWriter(f, path.stem or "archive", force_zip64)
        pkl = state_dict_pickle(plans, spec.dtype)
        zw.write_record("data.pkl", pkl, len(pkl))
        zw.write_record("byteorder", b"little", 6)
        for i, plan in enumerate(plans):
            if progress and plan.numel >= CHUNK_ELEMS:
                progress(f"{plan.name} {plan.shape}")
            zw.write_record(f"data/{i}", tensor_chunks(plan, i, spec), plan.numel * itemsize)
        zw.write_record("version", b"3\n", 2)
        zw.close()
    tmp.replace(path)
    return path.stat().st_size


def checkpoint_bytes(spec: SyntheticSpec) -> int:
    """Tensor bytes of the checkpoint (what the file is, less a few KiB of zip/pickle)."""
    return sum(p.numel for p in tensor_plans(spec)) * _STORAGE[spec.dtype][1]
