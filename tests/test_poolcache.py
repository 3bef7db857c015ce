"""The parsed-spectra cache (:mod:`ramanedge.poolcache`) shared by data sets and the corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ramanedge.grid import GRID
from ramanedge.poolcache import cached


def _parser(calls: list[int]):
    def parse():
        calls.append(1)
        X = np.arange(2 * GRID.size, dtype=np.float32).reshape(2, GRID.size)
        return {"paths": ["a.txt", "b.txt"], "root_resolved": "/data"}, {"X": X}
    return parse


def test_cached_parses_once_then_loads(tmp_path: Path) -> None:
    calls: list[int] = []
    lines: list[str] = []
    meta, arrays = cached(tmp_path, "pool-k1", "k1", _parser(calls), need="X", what="pool",
                          progress=lines.append)
    again, arrays2 = cached(tmp_path, "pool-k1", "k1", _parser(calls), need="X", what="pool",
                            progress=lines.append)
    assert calls == [1] and np.array_equal(arrays["X"], arrays2["X"])
    assert again["paths"] == meta["paths"] and lines[-1].startswith("loaded pool from cache")
    # another key (changed sources or rules) or a missing array parses again
    cached(tmp_path, "pool-k2", "k2", _parser(calls), need="X", what="pool")
    cached(tmp_path, "pool-k2", "k2", _parser(calls), need="X_clean", what="pool")
    assert calls == [1, 1, 1]
    # the newer entry of the same pool and data root replaced the older one
    assert not (tmp_path / "pool-k1.json").exists() and (tmp_path / "pool-k2.json").exists()


def test_cached_without_a_writable_cache_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    calls: list[int] = []
    lines: list[str] = []
    _, arrays = cached(blocker / "cache", "pool-k", "k", _parser(calls), need="X", what="pool",
                       progress=lines.append)
    assert arrays["X"].shape == (2, GRID.size)
    assert any(m.startswith("warning: could not write the cache") for m in lines)
    cached(tmp_path / "c", "pool-k", "k", _parser(calls), need="X", what="pool",
           use_cache=False)
    cached(None, "pool-k", "k", _parser(calls), need="X", what="pool")
    assert calls == [1, 1, 1] and not (tmp_path / "c").exists()
