"""The nearest-exemplar blend probe (``benchmarks.knn_blend``, issue 11): its class
similarity, the two ends of the blend and the leave-one-split-out choice."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.knn_blend import blend, class_similarity, leave_one_out, variants


def test_class_similarity_is_the_best_cosine_per_class() -> None:
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank_y = np.array([0, 1, 1])
    F = np.array([[2.0, 0.0], [0.0, 3.0], [3.0, 4.0]])
    S = class_similarity(F, bank, bank_y, 3)
    np.testing.assert_allclose(S[:, :2], [[1.0, 0.6], [0.0, 1.0], [0.6, 1.0]], atol=1e-12)
    assert np.all(S[:, 2] == -1.0)  # a class without exemplars is never the nearest


def test_blend_ends_are_the_head_and_the_nearest_exemplar() -> None:
    P = np.array([[0.7, 0.3], [0.2, 0.8]])
    S = np.array([[0.1, 0.9], [0.9, 0.1]])
    assert blend(P, S, 0.0, 0.0) is P
    np.testing.assert_array_equal(blend(P, S, 1.0, 0.0).argmax(1), [1, 0])
    q = blend(P, S, 0.3, 0.05)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert (0.0, 0.0) in variants() and (1.0, 0.0) in variants()
    assert all(t > 0 for w, t in variants() if 0 < w < 1)


def test_leave_one_split_out_never_chooses_on_the_judged_split() -> None:
    """Split "0" (two training seeds) strongly favours variant a on its own validation,
    splits 1 and 2 mildly favour b: split 0's choice is b, made on the others, and its delta
    is b's on split 0; counting split 0's other seed among the "others" would pick a. The
    1-NN variant (reported only) is never picked, however good."""
    def run(split, a, b):
        s = {"w=0,T=0": 0.5, "a": a, "b": b, "w=1,T=0": 0.99}
        return {"run": f"r/{split}", "split": split,
                "scores": {"val_0": s, "test_0": dict(s)}}
    runs = [run("0", 1.0, 0.0), run("0", 1.0, 0.0), run("1", 0.5, 0.6), run("2", 0.5, 0.6)]
    out = leave_one_out(runs)
    assert [x["pick"] for x in out[:2]] == ["b", "b"]
    assert out[0]["d_val_0"] == pytest.approx(-50.0)
    assert out[2]["pick"] == "a"  # split 0 (twice) outweighs split 2 for split 1
