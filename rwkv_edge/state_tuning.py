"""State-tuning files: a trained initial state for a base model.

BlinkDL's state tuning trains only ``blocks.N.att.time_state`` ([H, N, N] per layer) and
saves those tensors alone (a small .pth; RWKV-Runner and Ai00 load them beside the base
model). A file's ``time_state`` is stored [head][value][key], as the reference reads it
(it transposes it into the state, as for a time_state merged into the model), so the
initial wkv matrix is its transpose; the token-shift vectors start at zero.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .checkpoint import read_tensors
from .config import ModelConfig
from .errors import FormatError, VersionError

_NAME = re.compile(r"^blocks\.([0-9]{1,6})\.att\.time_state$")


def read_state_file(path: str | os.PathLike[str], config: ModelConfig) -> npt.NDArray[np.float32]:
    """The initial state (float32 [state_len], our layout) a state-tuning file gives a model
    of ``config``; FormatError naming the file and tensor when it does not fit."""
    p = Path(path)
    if config.is_v7:
        raise VersionError(f"{p.name}: state-tuning files are supported for RWKV-5 models only")
    tensors, keep = read_tensors(p)
    try:
        return _initial_state(p.name, tensors, config)
    finally:
        tensors.clear()
        for k in keep:  # a view still alive (in a traceback) unmaps when it is freed
            with contextlib.suppress(BufferError, OSError):
                k.close()


def _initial_state(name: str, tensors: dict, config: ModelConfig) -> npt.NDArray[np.float32]:
    H, N, C = config.n_head, config.head_size, config.n_embd
    layers: dict[int, npt.NDArray[np.float32]] = {}
    for key, t in tensors.items():
        m = _NAME.match(key)
        if not m:
            raise FormatError(f"{name}: '{key[:80]}' is not a time_state tensor of a state file")
        i = int(m.group(1))
        if i >= config.n_layer:
            raise FormatError(f"{name}: '{key}' is past the model's {config.n_layer} layers")
        if tuple(t.shape) != (H, N, N):
            raise FormatError(
                f"{name}: '{key}' has shape {list(t.shape)}; this model needs [{H}, {N}, {N}]"
            )
        if t.dtype not in ("f32", "f16", "bf16"):
            raise FormatError(f"{name}: '{key}' has dtype {t.dtype}; expected a float type")
        values = t.to_f32()
        if not np.isfinite(values).all():
            raise FormatError(f"{name}: '{key}' holds NaN or infinite values")
        layers[i] = values
    missing = [i for i in range(config.n_layer) if i not in layers]
    if missing:
        raise FormatError(
            f"{name}: no time_state for layers {missing[:5]} of {config.n_layer} "
            "(a state file for another model?)"
        )
    state = np.zeros(config.state_len, dtype=np.float32)
    per = config.layer_state_len
    for i, s in layers.items():
        state[i * per + 2 * C : (i + 1) * per] = s.transpose(0, 2, 1).reshape(-1)
    return state
