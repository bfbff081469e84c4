"""The user-facing model: load a file, make states, run tokens.

    model = Model.load("model.gguf", threads=2)        # backend="c" when built
    state = model.new_state()
    logits = model.forward([34, 105, 110], state)      # advances state in place

Two engines compute the same thing: the C/SIMD core (``backend="c"``) and the
numba reference (``backend="numba"``), the executable spec.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from .config import ModelConfig
from .errors import ArgumentError, ShapeError, TokenError
from .state import State

if TYPE_CHECKING:  # for the annotations only: both are imported where they are used
    from .generate import Generation
    from .tokenizer import Tokenizer

BACKENDS = ("auto", "c", "numba")


class Engine(Protocol):
    """What a backend provides; Model does all argument checking before calling it."""

    config: ModelConfig
    name: str

    def initial_state(self) -> npt.NDArray[np.float32]: ...

    def forward(
        self, tokens: npt.NDArray[np.int32], state: npt.NDArray[np.float32], full_output: bool
    ) -> npt.NDArray[np.float32]: ...

    def close(self) -> None: ...


def c_backend_available() -> bool:
    """True when the compiled extension is importable."""
    try:
        from . import _c_engine  # noqa: F401
    except ImportError:
        return False
    return True


def _open_engine(path: Path, backend: str, threads: int | None, isa: str) -> Engine:
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "c" if c_backend_available() and not _holds_v7(path) else "numba"
    elif backend == "c" and _holds_v7(path):
        raise ArgumentError(
            f"{path.name} is an RWKV-7 model, which the C engine does not run yet; "
            "use backend='numba' (or 'auto', which picks it)"
        )
    if backend == "c":
        try:
            from ._c_engine import CEngine
        except ImportError as e:
            raise ArgumentError(
                f"backend='c' needs the compiled extension, which is not importable ({e}); "
                "reinstall rwkv-edge with a C compiler, or use backend='numba'"
            ) from None
        return CEngine.open(path, threads=threads, isa=isa)
    from .reference.engine7 import open_numba_engine

    return open_numba_engine(path)


def _holds_v7(path: Path) -> bool:
    """True when the file opens as an RWKV-7 model; any failure is left to the engine to report."""
    from .checkpoint import open_checkpoint
    from .errors import RwkvEdgeError

    try:
        with open_checkpoint(path) as ckpt:
            return ckpt.config.is_v7
    except (RwkvEdgeError, OSError):
        return False


_FROM_FILE: Any = object()  # Model.tokenizer not built yet: read it from the file


class Model:
    """A loaded RWKV model (v5; v7 on numba). Use as a context manager or call ``close()``."""

    def __init__(
        self, engine: Engine, path: Path, tokenizer: Tokenizer | None = _FROM_FILE
    ) -> None:
        self._engine: Engine | None = engine
        self.path = path
        self.config: ModelConfig = engine.config
        self.backend: str = engine.name
        self._tokenizer = tokenizer
        self._model_id: str | None = None
        self._initial: npt.NDArray[np.float32] | None = None  # load_initial_state's

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The tokenizer the model file names (None if it names none), built on first use.

        Lazy because building the World trie costs ~0.15 s, more than mapping a model.
        """
        if self._tokenizer is _FROM_FILE:
            self._tokenizer = _load_tokenizer(self.path)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: Tokenizer | None) -> None:
        self._tokenizer = value

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: str = "auto",
        threads: int | None = None,
        isa: str = "auto",
    ) -> Model:
        """Open a model file (GGUF, BlinkDL .pth, safetensors or an HF directory)."""
        if path is None:
            from .default_model import default_model_path

            path = default_model_path()
        p = Path(path)
        engine = _open_engine(p, backend, threads, isa)
        return cls(engine, p)

    @property
    def model_id(self) -> str:
        """A short hash that identifies this model file (binds saved states to it).

        Hashes the config, the file size and its first and last MiB: cheap on a
        15 GB file, and different for any two real models.
        """
        if self._model_id is None:
            h = hashlib.sha256(repr(self.config).encode())
            files = sorted(self.path.rglob("*")) if self.path.is_dir() else [self.path]
            for f in (f for f in files if f.is_file()):
                size = f.stat().st_size
                h.update(str(size).encode())
                with open(f, "rb") as fh:
                    h.update(fh.read(1 << 20))
                    fh.seek(max(0, size - (1 << 20)))
                    h.update(fh.read(1 << 20))
            self._model_id = h.hexdigest()[:32]
        return self._model_id

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ArgumentError("this model has been closed")
        return self._engine

    def new_state(self) -> State:
        """The initial state: zeros, the model's trained time_state, or the one a
        state-tuning file gave (``load_initial_state``)."""
        data = self._initial.copy() if self._initial is not None else self.engine.initial_state()
        return State(self.config, data, self.model_id)

    def load_initial_state(self, path: str | os.PathLike[str] | None) -> State:
        """Start every new state from a state-tuning file (``blocks.N.att.time_state``
        for this model's shape, as BlinkDL's state tuning writes it, .pth or
        safetensors); None goes back to the model's own. Returns one such state."""
        if path is None:
            self._initial = None
        else:
            from .state_tuning import read_state_file

            self._initial = read_state_file(path, self.config)
        return self.new_state()

    def forward(
        self,
        tokens: int | Sequence[int] | npt.ArrayLike,
        state: State | None = None,
        *,
        full_output: bool = False,
    ) -> npt.NDArray[np.float32]:
        """Run tokens through the model, advancing ``state`` in place.

        Returns the last position's logits, float32 [n_vocab], or with
        ``full_output=True`` every position's, [len(tokens), n_vocab].
        A state of None starts from the initial state (and is discarded).
        """
        toks = self._check_tokens(tokens)
        if state is None:
            state = self.new_state()
        self._check_state(state)
        return self.engine.forward(toks, state.data, full_output)

    def forward_batch(
        self, tokens: Sequence[int] | npt.ArrayLike, states: Sequence[State]
    ) -> npt.NDArray[np.float32]:
        """One token for each of several independent states, advancing each in place.

        Returns float32 [len(states), n_vocab], row b for ``states[b]``: the same
        numbers as ``forward([tokens[b]], states[b])`` for each b, but the C engine
        reads the weights once for the whole batch (decode is bandwidth-bound, so
        B sequences cost little more than one). The states must be distinct.
        """
        toks = self._check_tokens(tokens)
        states = list(states)
        if toks.size != len(states):
            raise ShapeError(f"forward_batch got {toks.size} tokens for {len(states)} states")
        for st in states:
            self._check_state(st)
        _check_disjoint([st.data for st in states])
        batch = getattr(self.engine, "forward_batch", None)
        if batch is not None:
            logits: npt.NDArray[np.float32] = batch(toks, [st.data for st in states])
            return logits
        return np.stack(
            [self.engine.forward(toks[i : i + 1], st.data, False) for i, st in enumerate(states)]
        )

    def adopt_state(self, state: State) -> State:
        """A copy of ``state`` bound to this model: the explicit way to carry a state over
        to another model of the same shape (``forward`` refuses a foreign one, since
        its numbers mean something else there)."""
        if not isinstance(state, State):
            raise ArgumentError(f"state must be a rwkv_edge.State, got {type(state).__name__}")
        if state.config != self.config:
            raise ShapeError("this state belongs to a model of another shape")
        return State(self.config, state.data.copy(), self.model_id)

    def generate(
        self, prompt: str | Sequence[int], state: State | None = None, **options: Any
    ) -> Generation:
        """Stream a continuation as text pieces; see ``rwkv_edge.generate.generate``.

        ``state`` (if given) is advanced past the prompt and every generated
        token, ready for the next turn. Options: max_tokens, temperature (0 =
        greedy), top_p, top_k, presence_penalty, frequency_penalty,
        penalty_decay, stop, min_chars, seed, logit_bias, banned_tokens, chunk_len,
        on_progress.
        """
        from .generate import generate

        return generate(self, prompt, state, **options)

    def save_state(
        self,
        state: State,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``state`` to ``path`` atomically, bound to this model (``rwkv_edge.state_io``)."""
        from .state_io import save_state

        return save_state(state, path, self, overwrite=overwrite, meta=meta)

    def load_state(self, path: str | os.PathLike[str]) -> State:
        """A state saved by ``save_state`` for this same model file (others are refused)."""
        from .state_io import load_state

        return load_state(path, self)

    def _check_tokens(self, tokens: int | Sequence[int] | npt.ArrayLike) -> npt.NDArray[np.int32]:
        try:
            arr = np.atleast_1d(np.asarray(tokens))
        except (ValueError, TypeError):
            raise ShapeError(
                "tokens must be a flat sequence of ints (this one is ragged)"
            ) from None
        if arr.ndim != 1:
            raise ShapeError(f"tokens must be a 1-D sequence of ints, got shape {arr.shape}")
        if arr.size == 0:
            raise ArgumentError("tokens is empty: pass at least one token")
        if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            raise ShapeError(f"tokens must be integers, got dtype {arr.dtype}")
        bad = (arr < 0) | (arr >= self.config.n_vocab)
        if bad.any():
            t = int(arr[np.argmax(bad)])
            raise TokenError(f"token id {t} is out of range [0, {self.config.n_vocab})")
        return arr.astype(np.int32)

    def _check_state(self, state: State) -> None:
        if not isinstance(state, State):
            raise ArgumentError(f"state must be a rwkv_edge.State, got {type(state).__name__}")
        if state.config != self.config:
            raise ShapeError("this state belongs to a model of another shape")
        if state.model_id and state.model_id != self.model_id:
            raise ArgumentError(
                f"this state belongs to model {state.model_id}, not to {self.model_id} "
                f"({self.path.name}); use model.adopt_state(state) to carry it over on purpose"
            )
        d = state.data  # a user may have replaced it; the engines write through it
        if not (
            isinstance(d, np.ndarray)
            and d.dtype == np.float32
            and d.shape == (self.config.state_len,)
            and d.flags.c_contiguous
            and d.flags.writeable
        ):
            raise ShapeError(
                f"state.data must be a writeable contiguous float32 array of "
                f"{self.config.state_len} elements"
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model({self.path.name!r}, v{c.version}, {c.n_layer}x{c.n_embd}, "
            f"vocab {c.n_vocab}, backend={self.backend!r})"
        )


def _check_disjoint(arrays: list[npt.NDArray[np.float32]]) -> None:
    """No two of these contiguous arrays (checked by _check_state) share memory: their
    byte ranges, sorted by start, must not overlap. O(B log B), where pairwise
    np.shares_memory was O(B^2) on every batched decode step."""
    spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes, i) for i, a in enumerate(arrays))
    for (_, end, i), (start, _, j) in itertools.pairwise(spans):
        if start < end:
            raise ArgumentError(f"states {min(i, j)} and {max(i, j)} of the batch share memory")


def _load_tokenizer(path: Path) -> Tokenizer | None:
    """The tokenizer a model file names, or None where it names none."""
    try:
        from .tokenizer import tokenizer_for_model
    except ImportError:
        return None
    return tokenizer_for_model(path)
