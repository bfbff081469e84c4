"""The recurrent state as a first-class object.

Layout (identical to the C ABI, csrc/rwkv_edge.h), float32, per layer l:
    att_x[C]          ln1 output of the previous token (attention token shift)
    ffn_x[C]          ln2 output of the previous token (FFN token shift)
    wkv[H, N, N]      [head][key channel i][value channel j]; RWKV-7: [head][value i][key j]
                      (each version's reference order, so to/from_reference only reorder parts)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .config import ModelConfig
from .errors import ArgumentError, ShapeError


class LayerState(NamedTuple):
    att_x: npt.NDArray[np.float32]
    ffn_x: npt.NDArray[np.float32]
    wkv: npt.NDArray[np.float32]


class State:
    """One sequence's recurrent state; ``data`` is a flat float32 array owned by the state."""

    def __init__(
        self, config: ModelConfig, data: npt.NDArray[np.float32] | None = None, model_id: str = ""
    ) -> None:
        self.config = config
        self.model_id = model_id  # hash of the model this state belongs to ("" = unbound)
        if data is None:
            data = np.zeros(config.state_len, dtype=np.float32)
        if data.dtype != np.float32 or data.shape != (config.state_len,):
            raise ShapeError(
                f"state data must be float32 [{config.state_len}], got {data.dtype} {data.shape}"
            )
        self.data = np.ascontiguousarray(data)

    def copy(self) -> State:
        """An independent snapshot (advancing one never changes the other)."""
        return State(self.config, self.data.copy(), self.model_id)

    def reset(self) -> None:
        self.data[:] = 0.0

    def layer(self, i: int) -> LayerState:
        """Views (not copies) of layer i's three parts."""
        cfg = self.config
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise ArgumentError(f"layer index must be an int, got a {type(i).__name__}")
        if not 0 <= i < cfg.n_layer:
            raise ArgumentError(f"layer {i} out of range [0, {cfg.n_layer})")
        c, h, n = cfg.n_embd, cfg.n_head, cfg.head_size
        base = i * cfg.layer_state_len
        return LayerState(
            self.data[base : base + c],
            self.data[base + c : base + 2 * c],
            self.data[base + 2 * c : base + cfg.layer_state_len].reshape(h, n, n),
        )

    def max_abs_diff(self, other: State) -> float:
        if other.data.shape != self.data.shape:
            raise ShapeError("states of different models cannot be compared")
        return float(np.max(np.abs(self.data - other.data), initial=0.0))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, State)
            and other.config == self.config
            and bool(np.array_equal(self.data, other.data))
        )

    # No __hash__: a class that defines __eq__ alone has unhashable instances, right for
    # a mutable state.

    def to_reference(self) -> list[npt.NDArray[np.float32]]:
        """The rwkv pip package's layout: [att_x, wkv, ffn_x] per layer (copies)."""
        out: list[npt.NDArray[np.float32]] = []
        for i in range(self.config.n_layer):
            ls = self.layer(i)
            out += [ls.att_x.copy(), ls.wkv.copy(), ls.ffn_x.copy()]
        return out

    @staticmethod
    def from_reference(config: ModelConfig, parts: Sequence[npt.ArrayLike]) -> State:
        if len(parts) != 3 * config.n_layer:
            raise ShapeError(f"expected {3 * config.n_layer} state tensors, got {len(parts)}")
        st = State(config)
        for i in range(config.n_layer):
            ls = st.layer(i)
            ls.att_x[:] = np.asarray(parts[3 * i], dtype=np.float32).reshape(-1)
            ls.wkv[:] = np.asarray(parts[3 * i + 1], dtype=np.float32).reshape(ls.wkv.shape)
            ls.ffn_x[:] = np.asarray(parts[3 * i + 2], dtype=np.float32).reshape(-1)
        return st
