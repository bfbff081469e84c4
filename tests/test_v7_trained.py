"""The project's own trained RWKV-7 model (tools/train/train_v7.py) against the oracle.

tests/data/demo_rwkv7_small_fp16.pth: 4 x 128, head size 64, vocab 4096 (the demo
SentencePiece model), trained on the demo corpus (tools/train/RECIPE.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rwkv_edge import Model, State

from .reference7 import reference7

DATA = Path(__file__).resolve().parent / "data"
CKPT = DATA / "demo_rwkv7_small_fp16.pth"
SPM = DATA.parent.parent / "tools" / "train" / "out" / "demo_spm.model"


def _heldout_ids(n: int) -> list[int]:
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(SPM))
    text = (DATA / "demo_heldout.txt").read_text(encoding="utf-8")[:6000]
    ids = [int(i) for i in sp.encode(text)]
    assert len(ids) > n
    return ids[: n + 1]


def _loss(logits: np.ndarray, targets: list[int]) -> float:
    lg = logits.astype(np.float64)
    top = lg.max(1)
    lse = np.log(np.exp(lg - top[:, None]).sum(1)) + top
    return float(np.mean(lse - lg[np.arange(len(targets)), targets]))


def test_trained_v7_matches_reference() -> None:
    ids = _heldout_ids(256)
    ref, ref_state = reference7(CKPT, ids[:-1], "seq")
    with Model.load(CKPT, backend="numba") as model:
        c = model.config
        assert (c.version, c.n_layer, c.n_embd, c.n_vocab) == ("7.0", 4, 128, 4096)
        assert (c.lora_w, c.lora_a, c.lora_v, c.lora_g) == (32, 32, 32, 64)
        state = model.new_state()
        ours = model.forward(ids[:-1], state, full_output=True)
        assert state.max_abs_diff(State.from_reference(c, ref_state)) <= 1e-4
    assert float(ref.max() - ref.min()) > 10.0  # a trained model: confident, varied logits
    assert np.max(np.abs(ours - ref)) <= 1e-4
    assert np.array_equal(ours.argmax(1), ref.argmax(1))
    # It learned English: the trainer logged 2.97 nats/token on the first 2048 tokens.
    meta = json.loads((DATA / "demo_rwkv7_small_meta.json").read_text())
    loss = _loss(ours, ids[1:])
    assert loss < 0.5 * np.log(4096)
    assert abs(loss - meta["heldout_loss_fp32"]) < 0.5
