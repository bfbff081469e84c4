"""The RWKV-7 oracle: ``rwkv`` 0.8.32's RWKV_x070 (RWKV_V7_ON=1), CPU fp32, in its own process.

RWKV_V7_ON=1 rebinds ``rwkv.model.RWKV`` for the whole process (and the v5
tests need the v5 class), so every reference run here is a subprocess that
writes its logits and final state to an .npz file.

Also builds random x070 checkpoints of real shapes with BlinkDL's key names,
saved by torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rwkv.model")

# G1 0.1B (12 x 768): decay and in-context-rate LoRA 64, value residual 32, gate 128.
G1_RANKS = {"w": 64, "a": 64, "v": 32, "g": 128}

_RUNNER = r"""
import sys, numpy as np, torch
torch.set_num_threads(2)
from rwkv.model import RWKV
path, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
tokens = [int(t) for t in sys.argv[4].split(",")]
m = RWKV(model=path[:-4], strategy="cpu fp32")  # RWKV_x070 appends ".pth" itself
if mode == "rnn":
    state, rows = None, []
    for t in tokens:
        logits, state = m.forward([t], state)
        rows.append(logits.float().numpy().copy())
    logits = np.stack(rows)
else:
    logits, state = m.forward(tokens, None, full_output=True)
    logits = logits.float().numpy()
np.savez(out, logits=logits, **{f"s{i}": s.float().numpy() for i, s in enumerate(state)})
"""


def reference7(path: Path, tokens: list[int], mode: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits [T, V] and the final state (the reference's list of 3 per layer).

    mode "rnn": one token per call (forward_one); "seq": one call (forward_seq).
    """
    if path.suffix != ".pth":
        raise ValueError("the x070 reference loads '<name>.pth' only")
    env = dict(os.environ, RWKV_V7_ON="1", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
    with tempfile.TemporaryDirectory() as tmp:  # never beside the checkpoint (tests/data)
        out = Path(tmp) / "ref.npz"
        toks = ",".join(map(str, tokens))
        args = [sys.executable, "-c", _RUNNER, str(path), mode, str(out), toks]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(out) as z:
            n = len([k for k in z.files if k.startswith("s")])
            return z["logits"], [z[f"s{i}"] for i in range(n)]


def random_v7_checkpoint(
    path: Path,
    *,
    n_layer: int,
    n_embd: int,
    n_vocab: int,
    head_size: int = 64,
    ranks: dict[str, int] | None = None,
    n_ffn: int | None = None,
    layer0_v: bool = False,
    dtype: str = "fp32",
    seed: int = 0,
) -> Path:
    """A BlinkDL x070 checkpoint with plausible random weights (torch.save)."""
    g = np.random.default_rng(seed)
    C, H = n_embd, n_embd // head_size
    F = n_ffn or 4 * C
    rk = ranks or G1_RANKS
    sd: dict[str, np.ndarray] = {}

    def mat(o: int, i: int, scale: float = 1.0) -> np.ndarray:
        return (g.standard_normal((o, i)) * scale / np.sqrt(i)).astype(np.float32)

    def vec(lo: float, hi: float, shape: tuple[int, ...] = (1, 1, C)) -> np.ndarray:
        return g.uniform(lo, hi, shape).astype(np.float32)

    sd["emb.weight"] = (g.standard_normal((n_vocab, C)) * 0.1).astype(np.float32)
    sd["blocks.0.ln0.weight"], sd["blocks.0.ln0.bias"] = vec(0.8, 1.2, (C,)), vec(-0.1, 0.1, (C,))
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2", "att.ln_x"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = vec(0.8, 1.2, (C,)), vec(-0.1, 0.1, (C,))
        for m in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):
            sd[p + "att." + m] = vec(0.0, 1.0)
        sd[p + "att.w0"] = vec(-3.0, 2.0)
        sd[p + "att.a0"] = vec(-1.0, 1.0)
        sd[p + "att.k_k"] = vec(0.5, 1.5)
        sd[p + "att.k_a"] = vec(0.0, 1.0)
        sd[p + "att.r_k"] = vec(-0.5, 0.5, (H, head_size))
        for key in ("w", "a", "v", "g"):
            if key == "v" and i == 0 and not layer0_v:
                continue
            d = rk[key]
            sd[p + f"att.{key}1"] = (g.standard_normal((C, d)) / np.sqrt(C)).astype(np.float32)
            sd[p + f"att.{key}2"] = (g.standard_normal((d, C)) * 0.5 / np.sqrt(d)).astype(
                np.float32
            )
            if key == "v":
                sd[p + "att.v0"] = vec(-1.0, 1.0)
        for name in ("receptance", "key", "value", "output"):
            sd[p + f"att.{name}.weight"] = mat(C, C)
        sd[p + "ffn.x_k"] = vec(0.0, 1.0)
        sd[p + "ffn.key.weight"] = mat(F, C)
        sd[p + "ffn.value.weight"] = mat(C, F, 0.5)
    sd["ln_out.weight"], sd["ln_out.bias"] = vec(0.8, 1.2, (C,)), vec(-0.1, 0.1, (C,))
    sd["head.weight"] = mat(n_vocab, C, 2.0)
    tdtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    torch.save({k: torch.from_numpy(v).to(tdtype) for k, v in sd.items()}, path)
    return path
