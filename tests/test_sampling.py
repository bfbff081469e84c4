"""The sampler: exact distributions, penalties, bans, seeds; checked against ChatRWKV's."""

from __future__ import annotations

import numpy as np
import pytest

from rwkv_edge.errors import ArgumentError
from rwkv_edge.sampling import Sampler, SamplingParams

P4 = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS4 = np.log(P4).astype(np.float32)
NO_PENALTY = SamplingParams(presence_penalty=0.0, frequency_penalty=0.0)


def _probs(logits: np.ndarray, **kw: float) -> np.ndarray:
    s = Sampler(len(logits), NO_PENALTY.with_(**kw))
    return s.probabilities(s.adjust(logits))


def test_top_p_keeps_smallest_set_reaching_the_mass() -> None:
    np.testing.assert_allclose(_probs(LOGITS4, top_p=0.7), [0.625, 0.375, 0, 0], atol=1e-6)
    np.testing.assert_allclose(_probs(LOGITS4, top_p=0.8), [0.625, 0.375, 0, 0], atol=1e-6)
    np.testing.assert_allclose(
        _probs(LOGITS4, top_p=0.81), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], atol=1e-6
    )
    np.testing.assert_allclose(_probs(LOGITS4, top_p=1.0), P4, atol=1e-6)
    np.testing.assert_allclose(_probs(LOGITS4, top_p=0.0), [1, 0, 0, 0], atol=1e-6)


def test_top_k_and_temperature() -> None:
    np.testing.assert_allclose(
        _probs(LOGITS4, top_p=1.0, top_k=3), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], atol=1e-6
    )
    sq = P4[:2] ** 2 / np.sum(P4[:2] ** 2)  # temperature 0.5 squares the kept probabilities
    np.testing.assert_allclose(_probs(LOGITS4, top_p=0.7, temperature=0.5), [*sq, 0, 0], atol=1e-6)
    hot = _probs(LOGITS4, top_p=1.0, temperature=2.0)
    np.testing.assert_allclose(hot, np.sqrt(P4) / np.sqrt(P4).sum(), atol=1e-6)
    cold = _probs(LOGITS4, top_p=1.0, temperature=1e-4)  # must not underflow to NaN
    np.testing.assert_allclose(cold, [1, 0, 0, 0], atol=1e-6)


def test_greedy_and_top_k_1_ignore_the_seed() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=1000).astype(np.float32)
    best = int(np.argmax(logits))
    for seed in range(5):
        assert Sampler(1000, NO_PENALTY.with_(temperature=0), seed).sample(logits) == best
        assert Sampler(1000, NO_PENALTY.with_(top_k=1, top_p=1.0), seed).sample(logits) == best


def test_seeded_draws_are_reproducible_and_follow_the_distribution() -> None:
    params = NO_PENALTY.with_(top_p=1.0)
    draws = [Sampler(4, params, seed=42).sample(LOGITS4) for _ in range(3)]
    assert len(set(draws)) == 1
    s1, s2, s3 = Sampler(4, params, 42), Sampler(4, params, 42), Sampler(4, params, 43)
    a = [s1.sample(LOGITS4) for _ in range(20000)]
    assert a == [s2.sample(LOGITS4) for _ in range(20000)]
    assert a[:50] != [s3.sample(LOGITS4) for _ in range(50)]
    freq = np.bincount(a, minlength=4) / len(a)
    np.testing.assert_allclose(freq, P4, atol=0.015)  # ~4.5 sigma at n=20000


def test_penalties_decay_like_chatrwkv() -> None:
    s = Sampler(8, SamplingParams(presence_penalty=0.2, frequency_penalty=0.1, penalty_decay=0.5))
    for t in (3, 3, 5):
        s.accept(t)
    # counts: 3 -> (1*0.5 + 1)*0.5 = 0.75, 5 -> 1; both seen.
    adj = s.adjust(np.zeros(8, np.float32))
    np.testing.assert_allclose(adj[[3, 5, 0]], [-(0.2 + 0.075), -(0.2 + 0.1), 0.0], atol=1e-6)
    s.reset()
    assert not s.adjust(np.zeros(8, np.float32)).any()


def test_bias_and_bans() -> None:
    logits = np.zeros(6, np.float32)
    logits[2] = 10.0
    params = NO_PENALTY.with_(top_p=1.0, logit_bias={4: 3.0}, banned_tokens=(2,))
    s = Sampler(6, params, seed=1, banned=[5])
    adj = s.adjust(logits)
    assert np.isneginf(adj[2]) and np.isneginf(adj[5]) and adj[4] == 3.0
    draws = {s.sample(logits) for _ in range(500)}
    assert 2 not in draws and 5 not in draws and 4 in draws
    assert Sampler(6, params.with_(temperature=0)).sample(logits) == 4


@pytest.mark.parametrize(
    "bad", [dict(temperature=-1.0), dict(top_p=1.5), dict(top_k=-2), dict(penalty_decay=2.0)]
)
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ArgumentError):
        SamplingParams(**bad)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="outside the vocabulary"):
        Sampler(4, SamplingParams(banned_tokens=(9,)))


@pytest.mark.parametrize(
    "temperature, top_p, top_k", [(1.0, 0.85, 0), (0.7, 0.3, 0), (1.3, 0.95, 40), (1.0, 0.999, 5)]
)
def test_distribution_matches_chatrwkv_pipeline(
    monkeypatch: pytest.MonkeyPatch, temperature: float, top_p: float, top_k: int
) -> None:
    """The exact p that ChatRWKV's PIPELINE.sample_logits hands to np.random.choice.

    (Not top_p=1.0: there ChatRWKV's float32 cumsum can stay below 1.0 and its
    cutoff falls back to the top token; ours keeps the whole distribution.)
    """
    utils = pytest.importorskip("rwkv.utils")
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(5).normal(scale=3.0, size=300).astype(np.float32)
    seen: list[np.ndarray] = []

    def capture(a: int, p: np.ndarray) -> int:
        seen.append(np.asarray(p, np.float64))
        return 0

    monkeypatch.setattr(utils.np.random, "choice", capture)
    pipe = utils.PIPELINE.__new__(utils.PIPELINE)
    pipe.sample_logits(torch.tensor(logits), temperature=temperature, top_p=top_p, top_k=top_k)
    ours = _probs(logits, temperature=temperature, top_p=top_p, top_k=top_k)
    assert (ours > 0).sum() == (seen[0] > 0).sum()
    np.testing.assert_allclose(ours, seen[0], atol=2e-6)
