"""The state cache: longest-prefix hits, private copies, the byte bound, files on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rwkv_edge import Model
from rwkv_edge.state_cache import StateCache


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    m = Model.load()
    yield m
    m.close()


def _state(model: Any, tokens: list[int]) -> tuple[Any, np.ndarray]:
    st = model.new_state()
    return st, model.forward(tokens, st)


def test_longest_cached_prefix_wins_and_hits_are_copies(model: Any) -> None:
    cache = StateCache(64 << 20)
    a, la = _state(model, [1, 2])
    b, lb = _state(model, [1, 2, 3, 4])
    cache.put([1, 2], a, la)
    cache.put([1, 2, 3, 4], b, lb)
    hit = cache.lookup([1, 2, 3, 4, 5, 6])
    assert hit is not None and hit.length == 4
    assert hit.state == b and np.array_equal(hit.logits, lb)
    hit.state.data[:] = 0  # a private copy: the cache keeps its own
    assert cache.lookup([1, 2, 3, 4]).state == b  # type: ignore[union-attr]
    assert cache.lookup([1, 2, 3]).length == 2  # type: ignore[union-attr]
    assert cache.lookup([2, 1]) is None and cache.lookup([1]) is None
    assert cache.stats()["hits"] == 3 and cache.stats()["misses"] == 2


def test_byte_bound_evicts_the_least_recently_used(model: Any) -> None:
    st, lg = _state(model, [7])
    size = st.data.nbytes + lg.nbytes + 8 * 3  # one entry with a 3-token key
    cache = StateCache(3 * size)
    for k in range(3):
        cache.put([k, k, k], st, lg)
    assert len(cache) == 3 and cache.nbytes == 3 * size
    cache.lookup([0, 0, 0, 9])  # refreshes entry 0: entry 1 is now the oldest
    cache.put([5, 5, 5], st, lg)
    assert len(cache) == 3 and cache.nbytes <= cache.max_bytes
    assert cache.lookup([1, 1, 1]) is None
    assert cache.lookup([0, 0, 0]) is not None and cache.lookup([2, 2, 2]) is not None
    cache.put([0, 0, 0], st, lg)  # replacing a key does not count it twice
    assert cache.nbytes == 3 * size
    StateCache(size - 1).put([1, 2, 3], st, lg)  # larger than the whole cache: not kept


def test_save_and_restore_across_restarts(model: Any, tmp_path: Path) -> None:
    cache = StateCache(64 << 20)
    a, la = _state(model, [3, 4, 5])
    cache.put([3, 4, 5], a, la)
    cache.put([9], *_state(model, [9]))
    model.save_state(a, tmp_path / "mine.rwst")  # a user's file: never touched
    assert cache.save(tmp_path, model) == 2
    (tmp_path / "prefix-0000.rwst").write_bytes(b"garbage")  # corrupt: skipped on restore
    back = StateCache(64 << 20)
    skipped = back.restore(tmp_path, model)
    assert len(back) == 2 and len(skipped) == 1 and "prefix-0000" in skipped[0]
    hit = back.lookup([3, 4, 5, 6])
    assert hit is not None and hit.length == 3 and hit.state == a
    assert np.array_equal(hit.logits, la)
    StateCache(64 << 20).save(tmp_path, model)  # an empty cache removes its own files only
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["mine.rwst"]
