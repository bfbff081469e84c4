"""The oracle: BlinkDL's ``rwkv`` pip package on PyTorch CPU (test-only dependency).

Also builds random checkpoints of real shapes with torch.save, so the readers
are tested on files torch itself wrote.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

# Module-level switches of the reference: must be set before rwkv.model is imported.
os.environ.setdefault("RWKV_JIT_ON", "1")
os.environ["RWKV_CUDA_ON"] = "0"

torch = pytest.importorskip("torch")
rwkv_model = pytest.importorskip("rwkv.model")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@lru_cache(maxsize=4)
def reference_model(path: str):  # type: ignore[no-untyped-def]
    return rwkv_model.RWKV(model=path, strategy="cpu fp32", verbose=False)


def reference_rnn(path: Path, tokens: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits [T, V] at every position, one token per call, and the final state."""
    m = reference_model(str(path))
    state = None
    rows = []
    for t in tokens:
        logits, state = m.forward([t], state)
        rows.append(logits.float().numpy().copy())
    return np.stack(rows), [s.float().numpy() for s in state]


def reference_seq(path: Path, tokens: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits [T, V] from one sequence-mode call, and the final state."""
    m = reference_model(str(path))
    logits, state = m.forward(list(tokens), None, full_output=True)
    return logits.float().numpy(), [s.float().numpy() for s in state]


def random_checkpoint(
    path: Path,
    *,
    version: str,
    n_layer: int,
    n_embd: int,
    head_size: int,
    n_vocab: int,
    dtype: str = "fp32",
    seed: int = 0,
    n_ffn: int | None = None,
) -> Path:
    """A BlinkDL-layout checkpoint with plausible random weights, saved by torch."""
    g = np.random.default_rng(seed)
    C, H = n_embd, n_embd // head_size
    F = n_ffn or (int(C * 3.5) // 32 * 32)
    sd: dict[str, np.ndarray] = {}

    def mat(o: int, i: int, scale: float = 1.0) -> np.ndarray:
        return (g.standard_normal((o, i)) * scale / np.sqrt(i)).astype(np.float32)

    def vec(lo: float, hi: float, shape: tuple[int, ...] = (C,)) -> np.ndarray:
        return g.uniform(lo, hi, shape).astype(np.float32)

    sd["emb.weight"] = (g.standard_normal((n_vocab, C)) * 0.1).astype(np.float32)
    sd["blocks.0.ln0.weight"], sd["blocks.0.ln0.bias"] = vec(0.8, 1.2), vec(-0.1, 0.1)
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = vec(0.8, 1.2), vec(-0.1, 0.1)
        for m in ("k", "v", "r") + (("g",) if version != "5.0" else ()):
            sd[p + f"att.time_mix_{m}"] = vec(0.1, 0.9).reshape(1, 1, C)
        if version == "5.2":
            sd[p + "att.time_decay"] = vec(-6.0, 1.0, (H, head_size))
            sd[p + "att.time_faaaa"] = vec(-0.5, 0.5, (H, head_size))
        elif version == "5.1":
            sd[p + "att.time_decay"] = vec(-6.0, 1.0, (H,))
            sd[p + "att.time_faaaa"] = vec(-0.5, 0.5, (H,))
        else:
            sd[p + "att.time_decay"] = vec(-6.0, 1.0, (H,))
            sd[p + "att.time_first"] = vec(-1.0, 0.5, (H,))
        for name in ("receptance", "key", "value", "output") + (
            ("gate",) if version != "5.0" else ()
        ):
            sd[p + f"att.{name}.weight"] = mat(C, C)
        sd[p + "att.ln_x.weight"], sd[p + "att.ln_x.bias"] = vec(0.8, 1.2), vec(-0.1, 0.1)
        sd[p + "ffn.time_mix_k"] = vec(0.1, 0.9).reshape(1, 1, C)
        sd[p + "ffn.time_mix_r"] = vec(0.1, 0.9).reshape(1, 1, C)
        sd[p + "ffn.key.weight"] = mat(F, C)
        sd[p + "ffn.receptance.weight"] = mat(C, C)
        sd[p + "ffn.value.weight"] = mat(C, F, 0.5)
    sd["ln_out.weight"], sd["ln_out.bias"] = vec(0.8, 1.2), vec(-0.1, 0.1)
    sd["head.weight"] = mat(n_vocab, C, 2.0)
    tdtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    torch.save({k: torch.from_numpy(v).to(tdtype) for k, v in sd.items()}, path)
    return path
