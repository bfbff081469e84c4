"""The streaming conversion pipeline: any checkpoint -> one rwkv-edge GGUF file.

    open_source(src) -> for each tensor, in file order:
        decide its type (recipe) -> read a slab of rows -> quantize -> measure error
        -> append to the output's data file -> drop the slab and its mapped pages
    -> header (with the report) + data, written atomically (gguf_file.write_gguf)

Only one slab of rows (about ``CHUNK_ELEMENTS`` values) and its quantized
bytes are alive at a time, so peak memory is bounded by a constant, not by
the model or even the largest tensor.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rwkv_edge.checkpoint import Checkpoint, open_checkpoint
from rwkv_edge.errors import ArgumentError, IoError
from rwkv_edge.gguf_file import ChunkedTensor, nbytes_of, write_gguf
from rwkv_edge.gguf_schema import emb_ln_dtype, stored_squeezed
from rwkv_edge.quant import QUANT_TYPES, dequantize, quantize
from rwkv_edge.tensors import Tensor, f32_to_bf16, open_regular, round_bf16

from .recipe import Recipe, tensor_type
from .rwkvcpp import is_rwkvcpp, read_rwkvcpp
from .search import SEARCHERS

F32 = npt.NDArray[np.float32]
CHUNK_ELEMENTS = 1 << 21  # values per slab: 8 MB as float32
Progress = Callable[[str, int], None]  # (tensor name, source bytes just finished)


@dataclass
class TensorReport:
    name: str
    shape: tuple[int, ...]
    src_dtype: str
    dtype: str
    nbytes: int
    rel_rms: float  # sqrt(sum err^2 / sum x^2)
    max_abs: float

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "src_dtype": self.src_dtype,
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "rel_rms": self.rel_rms,
            "max_abs": self.max_abs,
        }


@dataclass
class ConvertResult:
    dst: Path
    recipe: Recipe
    tensors: list[TensorReport] = field(default_factory=list)
    file_size: int = 0
    seconds: float = 0.0
    source_sha256: str = ""

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        """Tensor data bits over parameter count (header and padding excluded)."""
        return 8 * sum(t.nbytes for t in self.tensors) / max(self.n_params, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "dst": str(self.dst),
            "recipe": self.recipe.to_json(),
            "file_size": self.file_size,
            "seconds": round(self.seconds, 3),
            "bits_per_weight": self.bits_per_weight,
            "n_params": self.n_params,
            "source_sha256": self.source_sha256,
            "tensors": {t.name: t.to_json() for t in self.tensors},
        }


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a directory's files in name order; read 16 MB at a time."""
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        with open_regular(f) as fh:  # a FIFO would be read forever
            while block := fh.read(16 << 20):
                h.update(block)
    return h.hexdigest()


def open_source(path: Path) -> Checkpoint:
    """Any checkpoint open_checkpoint reads, plus rwkv.cpp ``.bin`` files."""
    if path.is_file() and is_rwkvcpp(path):
        return read_rwkvcpp(path)
    return open_checkpoint(path)


def default_tokenizer(ckpt: Checkpoint) -> tuple[str, bytes]:
    """The tokenizer to embed when none is given: the source's own, bytes, or World."""
    meta = ckpt.metadata
    if "tokenizer_kind" in meta:
        return str(meta["tokenizer_kind"]), bytes(meta.get("tokenizer_data", b""))
    n_vocab = ckpt.config.n_vocab
    if n_vocab == 256:
        return "bytes", b""
    if n_vocab == 65536:
        vocab = resources.files("rwkv_edge") / "data" / "rwkv_vocab_v20230424.txt"
        return "world", vocab.read_bytes()
    raise ArgumentError(f"vocab size {n_vocab} implies no known tokenizer; pass --tokenizer FILE")


def _emb_ln_dtype(ckpt: Checkpoint) -> str:
    """The dtype the reference computes LN(emb) in: the source embedding's (spec 5.3)."""
    if ckpt.config.is_v7:
        return "f32"  # the v7 reference upcasts before LN(emb) (RWKV7_SPEC.md section 2)
    return emb_ln_dtype(ckpt.metadata, ckpt["emb.weight"].dtype)


def _release_pages(arr: Any) -> None:
    """Drop the mapped source pages just read, so they stop counting as our memory."""
    while arr is not None and not isinstance(arr, mmap.mmap):
        nxt = getattr(arr, "base", None)
        arr = nxt if nxt is not None else getattr(arr, "obj", None)
    if isinstance(arr, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        arr.madvise(mmap.MADV_DONTNEED)


class _ErrorMeter:
    """Running sums for relative RMS and max absolute error of one tensor."""

    def __init__(self) -> None:
        self.err2 = 0.0
        self.ref2 = 0.0
        self.max_abs = 0.0

    def add(self, ref: F32, got: F32) -> None:
        d = (got - ref).astype(np.float64)
        self.err2 += float(np.dot(d.ravel(), d.ravel()))
        self.ref2 += float(np.dot(ref.ravel().astype(np.float64), ref.ravel()))
        self.max_abs = max(self.max_abs, float(np.abs(d).max(initial=0.0)))

    @property
    def rel_rms(self) -> float:
        return (self.err2 / self.ref2) ** 0.5 if self.ref2 > 0 else float(self.err2 > 0)


def encode_rows(
    x: F32, dtype: str, recipe: Recipe, importance: F32 | None, name: str
) -> tuple[np.ndarray, F32]:
    """(stored array, the values it decodes to) for rows ``x`` in ``dtype``."""
    if dtype in QUANT_TYPES:
        if dtype in SEARCHERS and recipe.method == "search" and x.ndim == 2:
            quantize(x[:0], dtype, name)  # shape check only; searchers skip the NaN check
            if not np.isfinite(x).all():
                quantize(x, dtype, name)  # raises the FormatError naming the tensor
            blocks = SEARCHERS[dtype](x, importance)
        else:
            blocks = quantize(x, dtype, name)
        return blocks, dequantize(blocks, dtype, x.shape)
    if dtype == "bf16":
        return f32_to_bf16(x), round_bf16(x)
    stored = x.astype(np.float16 if dtype == "f16" else np.float32)
    return stored, stored.astype(np.float32)


def _slabs(t: Tensor) -> Iterator[Tensor]:
    """Row slabs of a tensor as Tensors of their own (raw stays a view of the map)."""
    rows = t.shape[0] if len(t.shape) >= 2 else 1
    per_row = max(1, int(np.prod(t.shape)) // max(rows, 1))
    step = max(1, CHUNK_ELEMENTS // per_row)
    if len(t.shape) < 2:
        yield t
        return
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        yield Tensor(t.name, (r1 - r0, *t.shape[1:]), t.dtype, t.raw[r0:r1])


def _stored_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """gguf_schema: time_mix_* (v7: x_*, w0, ...) squeezed from [1, 1, C] to [C]."""
    return (int(np.prod(shape)),) if stored_squeezed(name) else shape


class _Pipeline:
    """Yields (name, dtype, data) for write_gguf and records what each tensor cost."""

    def __init__(
        self,
        ckpt: Checkpoint,
        recipe: Recipe,
        importance: Mapping[str, F32],
        progress: Progress | None,
    ) -> None:
        self.ckpt, self.recipe, self.importance = ckpt, recipe, importance
        self.progress = progress
        self.reports: list[TensorReport] = []

    def tensors(self) -> Iterator[tuple[str, str, ChunkedTensor]]:
        for name, t in self.ckpt.items():
            shape = _stored_shape(name, t.shape)
            dtype = tensor_type(self.recipe, name, shape)
            meter = _ErrorMeter()
            yield name, dtype, ChunkedTensor(shape, self._chunks(t, shape, dtype, meter))
            self.reports.append(
                TensorReport(
                    name,
                    shape,
                    t.dtype,
                    dtype,
                    nbytes_of(dtype, shape),
                    meter.rel_rms,
                    meter.max_abs,
                )
            )
            _release_pages(t.raw)
            if self.progress:
                self.progress(name, t.nbytes)

    def _chunks(
        self, t: Tensor, shape: tuple[int, ...], dtype: str, meter: _ErrorMeter
    ) -> Iterator[np.ndarray]:
        imp = self.importance.get(t.name)
        for slab in _slabs(t):
            x = slab.to_f32()
            if len(shape) == 1:
                x = x.reshape(shape)
            stored, decoded = encode_rows(x, dtype, self.recipe, imp, t.name)
            meter.add(x, decoded)
            yield stored

    def report_json(self) -> dict[str, Any]:
        return {r.name: r.to_json() for r in self.reports}


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    recipe: Recipe,
    *,
    importance: Mapping[str, F32] | None = None,
    tokenizer: tuple[str, bytes] | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> ConvertResult:
    """Quantize ``src`` into the GGUF file ``dst`` following ``recipe``."""
    t0 = time.monotonic()
    src_p, dst_p = Path(src), Path(dst)
    if dst_p.exists() and not force:
        raise IoError(f"{dst_p} exists; pass --force to overwrite it")
    if dst_p.resolve() == src_p.resolve():
        raise ArgumentError("the output would overwrite the source checkpoint")
    with open_source(src_p) as ckpt:  # validates (and refuses special files) before hashing
        ckpt.check_complete()
        digest = sha256_of(src_p)
        pipe = _Pipeline(ckpt, recipe, importance or {}, progress)
        written = write_gguf(
            dst_p,
            ckpt.config,
            pipe.tensors(),
            tokenizer=tokenizer or default_tokenizer(ckpt),
            emb_ln_dtype=_emb_ln_dtype(ckpt),
            recipe=recipe.to_json(),
            report=pipe.report_json,
            source_sha256=digest,
            source_name=src_p.name,
            name=src_p.stem,
            force=force,
        )
    return ConvertResult(
        dst_p, recipe, pipe.reports, written.file_size, time.monotonic() - t0, digest
    )
