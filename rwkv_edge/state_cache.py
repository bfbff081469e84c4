"""A byte-bounded LRU of recurrent states, keyed by the token prefix each one summarises.

An RWKV state is fixed in size whatever the context length, so a server can keep
one per conversation: a request whose prompt extends a cached prefix starts from
that state and ingests only the new tokens. States cannot be rolled back, so a
hit is an entry whose whole key is a prefix of the prompt; the longest one wins.

Entries are immutable: ``lookup`` hands out copies, ``put`` stores copies.
``save``/``restore`` keep the cache across restarts as state files
(``rwkv_edge.state_io``), one per entry, the key and the logits in the file's meta.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import RwkvEdgeError
from .state import State
from .state_io import load_state_and_meta, save_state

CACHE_FORMAT = "rwkv-edge-state-cache/1"
FILE_PREFIX = "prefix-"  # files this cache owns in a --state-dir (others are left alone)
FILE_SUFFIX = ".rwst"


@dataclass(frozen=True)
class Hit:
    """A cached prefix: its length, a private copy of its state, the logits after it."""

    length: int
    state: State
    logits: npt.NDArray[np.float32]


@dataclass
class _Entry:
    state: State
    logits: npt.NDArray[np.float32]
    nbytes: int


def _key_name(key: tuple[int, ...]) -> str:
    digest = hashlib.sha256(np.asarray(key, "<i4").tobytes()).hexdigest()[:32]
    return f"{FILE_PREFIX}{digest}{FILE_SUFFIX}"


class StateCache:
    """Thread-safe LRU of (token prefix -> state, next-token logits), at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._lengths: dict[int, int] = {}  # key length -> how many keys have it
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: Sequence[int]) -> Hit | None:
        """The longest cached prefix of ``tokens`` (a copy), or None."""
        with self._lock:
            for n in sorted(self._lengths, reverse=True):
                if n > len(tokens):
                    continue
                key = tuple(tokens[:n])
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return Hit(n, entry.state.copy(), entry.logits.copy())
            self.misses += 1
            return None

    def put(self, tokens: Sequence[int], state: State, logits: npt.ArrayLike) -> None:
        """Remember ``state`` (a copy) as the summary of ``tokens``; evicts the least recent."""
        key = tuple(int(t) for t in tokens)
        if not key:
            return
        lg = np.array(logits, np.float32)
        entry = _Entry(state.copy(), lg, state.data.nbytes + lg.nbytes + 8 * len(key))
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            self._drop(key)
            self._entries[key] = entry
            self._lengths[len(key)] = self._lengths.get(len(key), 0) + 1
            self.nbytes += entry.nbytes
            while self.nbytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.nbytes -= entry.nbytes
        self._lengths[len(key)] -= 1
        if not self._lengths[len(key)]:
            del self._lengths[len(key)]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.nbytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }

    # -- persistence -------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], model: Any) -> int:
        """Write every entry as a state file in ``directory``; remove this cache's stale files.

        Returns the number of entries written. Files not named like this cache's
        own are never touched.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with self._lock:
            items = list(self._entries.items())
        keep = set()
        for key, entry in items:  # least recent first, so restore keeps the same order
            name = _key_name(key)
            keep.add(name)
            meta = {
                "format": CACHE_FORMAT,
                "tokens": list(key),
                "logits": base64.b64encode(entry.logits.astype("<f4").tobytes()).decode(),
            }
            save_state(entry.state, d / name, model, overwrite=True, meta=meta)
        for f in d.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"):
            if f.name not in keep:
                f.unlink(missing_ok=True)
        return len(items)

    def restore(self, directory: str | os.PathLike[str], model: Any) -> list[str]:
        """Load this cache's state files from ``directory``; returns one line per file skipped.

        Files of another model, corrupt ones and ones of another format are
        skipped (and kept on disk), never fatal.
        """
        d = Path(directory)
        if not d.is_dir():
            return []
        skipped = []
        files = sorted(d.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"), key=lambda f: f.stat().st_mtime)
        for f in files:
            try:
                state, meta = load_state_and_meta(f, model)
                if meta.get("format") != CACHE_FORMAT:
                    raise ValueError("not a state-cache file")
                tokens = [int(t) for t in meta["tokens"]]
                logits = np.frombuffer(base64.b64decode(meta["logits"]), "<f4")
                if logits.shape != (model.config.n_vocab,):
                    raise ValueError("logits of the wrong size")
            except (RwkvEdgeError, ValueError, KeyError, TypeError) as e:
                skipped.append(f"{f.name}: {e}")
                continue
            self.put(tokens, state, logits)
        return skipped
