"""The C/SIMD engine behind ``Model(backend="c")``: a thin owner of one ``rwe_model``.

Every C call goes through ``_check``, which turns an ``rwe_status`` into the
matching ``rwkv_edge.errors`` exception carrying ``rwe_last_error()``. cffi
releases the GIL around each call, and evaluations on one model from several
Python threads run in parallel, each C call on a context of its own
(csrc/model.c: activations and a thread pool). ``close()`` may
come from any thread: it refuses new calls at once and frees the C model only
after the calls already running on it have returned.

Float checkpoints (.pth, safetensors, HF directories) are converted to a
temporary float GGUF (``gguf_file.write_checkpoint_gguf``) and loaded from there.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._rwkv_edge_c import ffi, lib
from .checkpoint import open_checkpoint
from .config import ModelConfig
from .errors import (
    STATUS_ERRORS,
    ArgumentError,
    InternalError,
    ShapeError,
    UnsupportedIsaError,
)
from .gguf_file import write_checkpoint_gguf

ISAS: dict[str, int] = {
    "auto": lib.RWE_ISA_AUTO,
    "ref": lib.RWE_ISA_REF,
    "avx2": lib.RWE_ISA_AVX2,
    "avx512": lib.RWE_ISA_AVX512,
    "neon": lib.RWE_ISA_NEON,
    "dotprod": lib.RWE_ISA_DOTPROD,
}
ISA_NAMES = {v: k for k, v in ISAS.items()}


def _check(status: int) -> None:
    """Raise the rwkv_edge exception of a failed C call."""
    if status == lib.RWE_OK:
        return
    cls = STATUS_ERRORS.get(status, InternalError)
    detail = ffi.string(lib.rwe_last_error()).decode("utf-8", errors="replace")
    name = ffi.string(lib.rwe_status_name(status)).decode()
    raise cls(detail or name)


def supported_isas() -> list[str]:
    """The kernel sets this CPU (and build) can run, lowest first ("ref" always)."""
    return [n for n, v in ISAS.items() if n != "auto" and lib.rwe_cpu_supports(v)]


def isa_code(isa: str) -> int:
    if isa not in ISAS:
        raise UnsupportedIsaError(f"unknown isa {isa!r}; expected one of {sorted(ISAS)}")
    code = ISAS[isa]
    if code != lib.RWE_ISA_AUTO and not lib.rwe_cpu_supports(code):
        raise UnsupportedIsaError(f"this CPU does not support the {isa!r} kernels")
    return code


class CEngine:
    """One loaded C model (implements rwkv_edge.model.Engine)."""

    name = "c"

    def __init__(self, handle: Any, config: ModelConfig, info: Any) -> None:
        self._handle: Any = handle
        # C calls in flight on _handle; close() waits for them before freeing it
        self._busy = 0
        self._idle = threading.Condition(threading.Lock())
        self.config = config
        self.isa: str = ISA_NAMES.get(int(info.isa), "?")
        self.n_threads: int = int(info.n_threads)
        self.weight_bytes: int = int(info.weight_bytes)
        # bytes kept in the kernels' own layout, copied on first use (0: all zero-copy)
        self.repacked_bytes: int = int(info.repacked_bytes)
        self.state_len: int = int(info.state_len)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], threads: int | None = None, isa: str = "auto"
    ) -> CEngine:
        """Load a GGUF model, or convert a float checkpoint to a temporary GGUF first."""
        code = isa_code(isa)
        n_threads = (os.cpu_count() or 1) if threads is None else int(threads)
        p = Path(path)
        if _is_gguf(p):
            return cls._load(p, n_threads, code)
        with open_checkpoint(p) as ckpt, tempfile.TemporaryDirectory(prefix="rwe-") as tmp:
            ckpt.check_complete()
            gguf_path = Path(tmp) / "model.gguf"
            write_checkpoint_gguf(ckpt, gguf_path)
            return cls._load(gguf_path, n_threads, code)  # the map outlives the file

    @classmethod
    def _load(cls, path: Path, n_threads: int, isa: int) -> CEngine:
        if n_threads < 0:
            raise ArgumentError(f"threads must be >= 0, got {n_threads}")
        out = ffi.new("rwe_model **")
        _check(lib.rwe_model_load(os.fsencode(path), n_threads, isa, out))
        handle = ffi.gc(out[0], lib.rwe_model_free)
        info = ffi.new("rwe_model_info *")
        _check(lib.rwe_model_get_info(handle, info))
        config = ModelConfig.from_version_code(
            int(info.version),
            n_layer=info.n_layer,
            n_embd=info.n_embd,
            n_head=info.n_head,
            head_size=info.head_size,
            n_ffn=info.n_ffn,
            n_vocab=info.n_vocab,
        )
        return cls(handle, config, info)

    @property
    def handle(self) -> Any:
        """The rwe_model pointer; only valid while not closed (C calls use ``_use``)."""
        if self._handle is None:
            raise ArgumentError("this engine has been closed")
        return self._handle

    @contextmanager
    def _use(self) -> Iterator[Any]:
        """The handle, counted as in flight so that close() cannot free it meanwhile."""
        with self._idle:
            handle = self.handle  # ArgumentError once closed
            self._busy += 1
        try:
            yield handle
        finally:
            with self._idle:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.notify_all()

    def set_threads(self, n_threads: int) -> None:
        with self._use() as h:
            _check(lib.rwe_model_set_threads(h, n_threads))
        self.n_threads = n_threads

    def initial_state(self) -> npt.NDArray[np.float32]:
        state = np.empty(self.state_len, dtype=np.float32)
        with self._use() as h:
            _check(lib.rwe_state_init(h, ffi.from_buffer("float[]", state), state.size))
        return state

    def forward(
        self, tokens: npt.NDArray[np.int32], state: npt.NDArray[np.float32], full_output: bool
    ) -> npt.NDArray[np.float32]:
        """Advance ``state`` in place over ``tokens``; last (or every) position's logits."""
        logits = np.empty(
            (len(tokens), self.config.n_vocab) if full_output else self.config.n_vocab,
            dtype=np.float32,
        )
        self.eval(tokens, state, logits, full_output)
        return logits

    def eval(
        self,
        tokens: npt.NDArray[np.int32],
        state: npt.NDArray[np.float32],
        logits: npt.NDArray[np.float32] | None,
        all_logits: bool = False,
    ) -> None:
        """rwe_eval_sequence on caller buffers; ``logits=None`` skips the head."""
        toks = np.ascontiguousarray(tokens, dtype=np.int32)
        _check_buffer("state", state)
        if logits is not None:
            _check_buffer("logits", logits)
        lg = (
            ffi.NULL
            if logits is None
            else ffi.from_buffer("float[]", logits, require_writable=True)
        )
        with self._use() as h:
            _check(
                lib.rwe_eval_sequence(
                    h,
                    ffi.from_buffer("int32_t[]", toks),
                    toks.size,
                    ffi.from_buffer("float[]", state, require_writable=True),
                    state.size,
                    lg,
                    0 if logits is None else logits.size,
                    int(all_logits),
                )
            )

    def forward_batch(
        self, tokens: npt.NDArray[np.int32], states: list[npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float32]:
        """One token per state through rwe_eval_batch; logits [len(states), n_vocab]."""
        toks = np.ascontiguousarray(tokens, dtype=np.int32)
        if toks.size != len(states):
            raise ShapeError(f"{toks.size} tokens for {len(states)} states")
        for st in states:
            _check_buffer("state", st)
        logits = np.empty((len(states), self.config.n_vocab), dtype=np.float32)
        ptrs = ffi.new(
            "float *[]", [ffi.from_buffer("float[]", st, require_writable=True) for st in states]
        )
        with self._use() as h:
            _check(
                lib.rwe_eval_batch(
                    h,
                    ffi.from_buffer("int32_t[]", toks),
                    toks.size,
                    ptrs,
                    self.state_len,
                    ffi.from_buffer("float[]", logits, require_writable=True),
                    logits.size,
                )
            )
        return logits

    def close(self) -> None:
        """Refuse new calls (ArgumentError), wait for running ones, then free the model.

        Idempotent and callable from any thread, but not from inside a call on
        this engine (there is no such callback)."""
        with self._idle:
            handle, self._handle = self._handle, None
            while self._busy:
                self._idle.wait()
        if handle is not None:
            ffi.release(handle)  # runs rwe_model_free now

    def __enter__(self) -> CEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_buffer(what: str, arr: np.ndarray) -> None:
    """C writes through these: they must be writable, C-contiguous float32."""
    flags = arr.flags
    if arr.dtype != np.float32 or not flags.c_contiguous or not flags.writeable:
        raise ShapeError(
            f"{what} must be a writable C-contiguous float32 array (got {arr.dtype}, "
            f"contiguous={flags.c_contiguous}, writeable={flags.writeable})"
        )


def _is_gguf(p: Path) -> bool:
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


def read_bandwidth(words: npt.NDArray[np.int64], threads: int) -> float:
    """GB/s of one read pass over ``words`` by ``threads`` threads (rwe_read_bandwidth:
    the C half of the bench's roofline, shipped in the core rather than compiled at run time)."""
    out = ffi.new("double *")
    _check(lib.rwe_read_bandwidth(ffi.from_buffer("uint64_t[]", words), words.size, threads, out))
    return float(out[0])
