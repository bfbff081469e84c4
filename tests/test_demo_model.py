"""The built-in demo model (tools/train): its checkpoint, tokenizer and packaged GGUF.

* The rwkv pip reference loads the trained checkpoint, and its loss on held-out
  text equals the loss the trainer logged: the trainer's math is the
  inference math (same 2048 tokens: within 0.1 %; a spread sample of the
  held-out text against the whole validation split: within 3 %).
* Our engines (numba, C) agree with the reference on it over 256 tokens.
* The packaged GGUF opens as the default model with the SentencePiece tokenizer.
The source checkpoint is fp16 (tests/data/demo_rwkv5_fp16.pth); it is upcast to
fp32 first so that the reference does not round LN(emb) to fp16 (spec §5.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.reference import reference_model, reference_seq, torch

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
CHECKPOINT = DATA / "demo_rwkv5_fp16.pth"
META = DATA / "demo_rwkv5_meta.json"
HELDOUT = DATA / "demo_heldout.txt"
SPM = REPO / "tools" / "train" / "out" / "demo_spm.model"

LOG_LOSS_RTOL = 1e-3  # fp16-rounded weights vs the fp32 ones the trainer measured (2e-5 seen)
VAL_LOSS_RTOL = 0.03  # 8 windows of held-out text vs the whole validation split
WINDOWS, WINDOW = 8, 512  # the trainer's validation windows: 512 tokens from the zero state
ENGINE_TOKENS = 256
ENGINE_TOL = 1e-4  # max |logit diff| relative to the logit range (fp32 engines)
Q8_TOP1 = 0.97  # packaged Q8_0 GGUF vs fp32 reference, top-1 agreement (99.6 % seen)
Q8_LOSS_RTOL = 0.01  # and its loss on the same tokens (0.03 % seen)


@pytest.fixture(scope="module")
def meta() -> dict:
    if not CHECKPOINT.exists() or not META.exists():
        pytest.skip(f"demo checkpoint missing: {CHECKPOINT}")
    return json.loads(META.read_text())


@pytest.fixture(scope="module")
def fp32_checkpoint(meta: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sd = torch.load(CHECKPOINT, map_location="cpu")
    path = tmp_path_factory.mktemp("demo") / "demo_fp32.pth"
    torch.save({k: v.float() for k, v in sd.items()}, path)
    return path


@pytest.fixture(scope="module")
def heldout_ids() -> list[int]:
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(SPM))
    return [int(i) for i in sp.encode(HELDOUT.read_text(encoding="utf-8"))]


def mean_loss(logits: np.ndarray, targets: list[int]) -> float:
    """Mean next-token cross-entropy (nats) of logits [T, V] against T target ids."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(targets)), targets].mean())


def test_checkpoint_shapes_and_version(fp32_checkpoint: Path, meta: dict) -> None:
    cfg = meta["config"]
    m = reference_model(str(fp32_checkpoint))
    assert m.version == 5.2
    sd = torch.load(fp32_checkpoint)
    n_head = cfg["n_embd"] // cfg["head_size"]
    assert tuple(sd["blocks.0.att.time_decay"].shape) == (n_head, cfg["head_size"])
    assert tuple(sd["blocks.0.att.time_faaaa"].shape) == (n_head, cfg["head_size"])
    assert tuple(sd["blocks.0.att.time_mix_g"].shape) == (1, 1, cfg["n_embd"])
    assert tuple(sd["emb.weight"].shape) == (cfg["vocab"], cfg["n_embd"])


def test_tokenizer_round_trips_heldout_text(heldout_ids: list[int]) -> None:
    from rwkv_edge.tokenizer import SentencePieceTokenizer

    text = HELDOUT.read_text(encoding="utf-8")
    tok = SentencePieceTokenizer(SPM)
    assert tok.vocab_size == 4096
    assert tok.encode(text) == heldout_ids
    assert tok.decode_bytes(heldout_ids) == text.encode("utf-8")


@pytest.mark.slow  # the reference's sequence mode loops over tokens in Python
def test_reference_loss_equals_trainer_log(
    fp32_checkpoint: Path, meta: dict, heldout_ids: list[int]
) -> None:
    n = meta["heldout_tokens"]
    logits, _ = reference_seq(fp32_checkpoint, heldout_ids[:n])
    loss = mean_loss(logits, heldout_ids[1 : n + 1])
    assert loss == pytest.approx(meta["heldout_loss_fp32"], rel=LOG_LOSS_RTOL)


@pytest.mark.slow  # the reference's sequence mode loops over tokens in Python
def test_reference_perplexity_matches_validation_loss(
    fp32_checkpoint: Path, meta: dict, heldout_ids: list[int]
) -> None:
    starts = np.linspace(0, len(heldout_ids) - WINDOW - 1, WINDOWS).astype(int)
    losses = []
    for s in starts:
        logits, _ = reference_seq(fp32_checkpoint, heldout_ids[s : s + WINDOW])
        losses.append(mean_loss(logits, heldout_ids[s + 1 : s + WINDOW + 1]))
    ppl, val_ppl = np.exp(np.mean(losses)), np.exp(meta["val_loss_fp32"])
    assert np.mean(losses) == pytest.approx(meta["val_loss_fp32"], rel=VAL_LOSS_RTOL), (
        ppl,
        val_ppl,
    )


def _backends() -> list[str]:
    from rwkv_edge.model import c_backend_available

    return ["numba", "c"] if c_backend_available() else ["numba"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", _backends())
def test_engine_matches_reference(
    backend: str, fp32_checkpoint: Path, heldout_ids: list[int]
) -> None:
    from rwkv_edge import Model

    tokens = heldout_ids[:ENGINE_TOKENS]
    ref, _ = reference_seq(fp32_checkpoint, tokens)
    with Model.load(fp32_checkpoint, backend=backend) as model:
        got = model.forward(tokens, full_output=True)
    span = float(ref.max() - ref.min())
    assert np.abs(got - ref).max() <= ENGINE_TOL * span
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_default_model_path_missing_names_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from rwkv_edge import default_model
    from rwkv_edge.errors import IoError

    monkeypatch.setattr(default_model, "DEMO_MODEL_FILE", "no-such-demo.gguf")
    with pytest.raises(IoError, match="--model"):
        default_model.default_model_path()


@pytest.mark.slow
def test_packaged_demo_is_the_default_model(fp32_checkpoint: Path, heldout_ids: list[int]) -> None:
    from rwkv_edge import Model
    from rwkv_edge.default_model import default_model_path
    from rwkv_edge.errors import IoError

    try:
        path = default_model_path()
    except IoError:
        pytest.skip("this installation has no packaged demo model")
    tokens = heldout_ids[: ENGINE_TOKENS + 1]
    ref, _ = reference_seq(fp32_checkpoint, tokens[:-1])
    with Model.load() as model:
        assert model.path == path
        assert model.tokenizer is not None and model.tokenizer.vocab_size == 4096
        # The embedded tokenizer is the one the model was trained with.
        assert model.tokenizer.encode(HELDOUT.read_text(encoding="utf-8")) == heldout_ids
        got = model.forward(tokens[:-1], full_output=True)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= Q8_TOP1
    assert mean_loss(got, tokens[1:]) == pytest.approx(mean_loss(ref, tokens[1:]), rel=Q8_LOSS_RTOL)
