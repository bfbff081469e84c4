"""State files: a recurrent state saved to disk, bound to the model it belongs to.

Layout (little-endian), version 1:

    offset  size  field
    0       8     magic b"RWKVSTAT"
    8       4     u32 format version (1)
    12      4     u32 header length H
    16      H     header, UTF-8 JSON: model_id, model_name, config (ModelConfig
                  fields), state_len, dtype "float32", meta (caller's JSON)
    16+H    4*N   float32 state data, N = state_len (rwkv_edge.state layout)
    ...     32    sha256 of every byte before it

Writes are atomic (``rwkv_edge.atomic_file``: an unnamed file linked into place
once complete), so a crash never leaves half a file under the real name, nor a
temp file beside it; an existing file is kept unless overwrite=True.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_file import atomic_output
from .config import ModelConfig
from .errors import ArgumentError, FormatError, IoError, VersionError
from .state import State
from .tensors import open_regular

MAGIC = b"RWKVSTAT"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII")  # magic, version, header length
_DIGEST_LEN = 32
_MAX_HEADER = 16 << 20  # the header is small JSON; anything larger is corruption


def _encode(state: State, model: Any, meta: dict[str, Any] | None) -> bytes:
    header = {
        "model_id": model.model_id,
        "model_name": Path(str(getattr(model, "path", ""))).name,
        "config": dataclasses.asdict(model.config),
        "state_len": int(state.data.size),
        "dtype": "float32",
        "meta": meta or {},
    }
    hbytes = json.dumps(header, ensure_ascii=False).encode("utf-8")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes)) + hbytes
    body += np.ascontiguousarray(state.data, "<f4").tobytes()
    return body + hashlib.sha256(body).digest()


def save_state(
    state: State,
    path: str | os.PathLike[str],
    model: Any,
    *,
    overwrite: bool = False,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` (of ``model``) to ``path`` atomically; ``meta`` is any JSON-able dict."""
    if state.config != model.config:
        raise ArgumentError("this state belongs to a model of another shape")
    if state.model_id and state.model_id != model.model_id:
        raise ArgumentError(
            f"this state belongs to model {state.model_id}, not to {model.model_id}"
        )
    _check_meta(meta)
    p = Path(path)
    if p.exists() and not overwrite:
        raise IoError(f"{p} already exists; pass overwrite=True to replace it")
    _atomic_write(p, _encode(state, model, meta), overwrite)
    return p


def _check_meta(meta: object) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise ArgumentError(f"meta must be a dict, got a {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError, RecursionError) as e:
        msg = f"meta must hold only JSON values (str, number, bool, None, list, dict): {e}"
        raise ArgumentError(msg) from None


def _atomic_write(p: Path, data: bytes, overwrite: bool) -> None:
    try:
        with atomic_output(p, overwrite=overwrite) as out:
            out.file.write(data)
    except IoError:
        raise
    except OSError as e:
        raise IoError(f"cannot write {p}: {e.strerror or e}") from None


def read_state_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray]:
    """Parse and verify a state file: (header dict, float32 data). No model needed.

    Reads only a regular file (a FIFO or /dev/zero is refused, not read forever),
    and no more bytes than its header says it holds, checked against its size first.
    """
    p = Path(path)
    with open_regular(p) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise FormatError(f"{p.name}: not an rwkv-edge state file (bad magic)")
        _, version, hlen = _PREFIX.unpack(prefix)
        if version != FORMAT_VERSION:
            raise VersionError(
                f"{p.name}: state file version {version}; "
                f"this rwkv-edge reads version {FORMAT_VERSION}"
            )
        if hlen > _MAX_HEADER or size < _PREFIX.size + hlen + _DIGEST_LEN:
            raise FormatError(f"{p.name}: truncated state file ({size} bytes)")
        hbytes = f.read(hlen)
        header = _parse_header(hbytes, p.name)
        want = header["state_len"] * 4
        if size != _PREFIX.size + hlen + want + _DIGEST_LEN:
            raise FormatError(
                f"{p.name}: truncated or padded state file: {size} bytes, the header "
                f"says {_PREFIX.size + hlen + want + _DIGEST_LEN}"
            )
        try:
            data = f.read(want)
            digest = f.read(_DIGEST_LEN + 1)
        except OSError as e:
            raise IoError(f"cannot read {p}: {e.strerror or e}") from None
    if len(data) != want or len(digest) != _DIGEST_LEN:
        raise FormatError(f"{p.name}: the state file changed size while being read")
    if hashlib.sha256(prefix + hbytes + data).digest() != digest:
        raise FormatError(f"{p.name}: checksum mismatch: the state file is corrupt")
    return header, np.frombuffer(data, "<f4").astype(np.float32)


def _parse_header(hbytes: bytes, name: str) -> dict[str, Any]:
    try:
        header = json.loads(hbytes.decode("utf-8"))
        ok = (
            isinstance(header, dict)
            and isinstance(header.get("model_id"), str)
            and isinstance(header.get("state_len"), int)
            and header["state_len"] >= 0
            and header.get("dtype") == "float32"
            and isinstance(header.get("config"), dict)
        )
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise FormatError(f"{name}: corrupt state file header")
    return header


def load_state_and_meta(path: str | os.PathLike[str], model: Any) -> tuple[State, dict[str, Any]]:
    """The saved state, checked to belong to ``model``, and the ``meta`` saved with it."""
    header, data = read_state_file(path)
    name = Path(path).name
    if header["model_id"] != model.model_id:
        raise FormatError(
            f"{name}: this state was saved from model {header['model_id']} "
            f"({header.get('model_name', '?')}), but the loaded model is {model.model_id} "
            f"({Path(str(getattr(model, 'path', ''))).name}); states only work with their model"
        )
    try:
        config = ModelConfig(**header["config"])
    except TypeError:
        raise FormatError(f"{name}: corrupt model config in the state file header") from None
    if config != model.config or data.size != model.config.state_len:
        raise FormatError(f"{name}: the state's shape does not match the model's")
    meta = header.get("meta")
    return State(model.config, data, model.model_id), meta if isinstance(meta, dict) else {}


def load_state(path: str | os.PathLike[str], model: Any) -> State:
    """Load a state saved by ``save_state`` for this same model."""
    return load_state_and_meta(path, model)[0]
