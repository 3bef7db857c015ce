"""The library-distance unknown-rule probe (``benchmarks.unknown_library``, issue 12): the
distance over the head's candidates against every library spectrum, and the rule's verdict."""

from __future__ import annotations

import numpy as np

from benchmarks.unknown_library import SHIPPED, library_distance, report
from ramanedge.library import LibraryConfig, SpectralLibrary


def test_candidate_distance_ignores_minerals_the_head_did_not_rank() -> None:
    """A spectrum identical to a class-2 library spectrum is at distance ~0 over every
    library spectrum, but far when the head's single candidate is class 0."""
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(3, 64))).astype(np.float32) + 0.1
    cfg = LibraryConfig(half_width=3, reach=0, step=1, bin_width=1, candidates=1)
    lib = SpectralLibrary.build(X, np.array([0, 1, 2]), 3, cfg)
    q = X[2:3]
    head_says_0 = np.array([[0.8, 0.15, 0.05]])
    head_says_2 = np.array([[0.05, 0.15, 0.8]])
    assert library_distance(lib, head_says_0, q, candidates=False)[0] < 1e-3
    assert library_distance(lib, head_says_2, q, candidates=True)[0] < 1e-3
    far = library_distance(lib, head_says_0, q, candidates=True)[0]
    assert far > 0.1
    assert np.isclose(far, 1.0 - lib.similarity_batch(q)[0, 0])


def _run(gains: dict[str, float]) -> dict:
    base = 0.9
    rows = {SHIPPED: base, **{k: base + g for k, g in gains.items()}}
    return {"unknown": {k: {"negatives": v, "evaluation": v, "unseen_flagged": 0.5,
                            "known_flagged": 0.05} for k, v in rows.items()}}


def test_verdict_needs_the_gain_on_eight_of_ten_and_prefers_the_free_part() -> None:
    small = [_run({"cand, u=0.1": 0.004, "all, u=0.1": 0.006}) for _ in range(10)]
    assert report(small)[1]["pick"] == "cand, u=0.1"  # 'all' not > 0.005 better
    assert not report(small)[1]["adopt"]  # +0.004 is not > +0.005
    big = [_run({"cand, u=0.1": 0.01, "all, u=0.1": 0.02}) for _ in range(10)]
    v = report(big)[1]
    assert v["pick"] == "all, u=0.1" and v["adopt"] and v["higher"] == 10
    mixed = [_run({"cand, u=0.1": 0.03 if i < 7 else -0.01, "all, u=0.1": 0.0})
             for i in range(10)]
    v = report(mixed)[1]
    assert v["pick"] == "cand, u=0.1" and v["gain"] > 0.005 and not v["adopt"]  # 7 of 10
