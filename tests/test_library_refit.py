"""The library refit probe (``benchmarks.library_refit``, issue 11): specimen folds, the
held-aside specimens and the rules' verdicts."""

from __future__ import annotations

import numpy as np

from benchmarks.library_refit import held_aside, report, specimen_folds


def test_specimen_folds_keep_a_specimen_together_and_use_both_folds() -> None:
    ids = ["a", "a", "b", "c", "c", "d", "e", "f"]
    f = specimen_folds(ids)
    for s in set(ids):
        assert len({int(k) for k, i in zip(f, ids, strict=True) if i == s}) == 1
    assert set(f.tolist()) == {0, 1}
    assert np.array_equal(f, specimen_folds(list(ids)))  # seeded


def test_held_aside_takes_one_specimen_of_each_class_that_has_two() -> None:
    ids = ["a", "a", "b", "c", "d", "d", "e"]
    y = np.array([0, 0, 0, 1, 2, 2, 2])
    m = held_aside(ids, y)
    assert not m[3]  # class 1 has one specimen: kept
    for k in (0, 2):
        taken = {i for i, t, c in zip(ids, m, y, strict=True) if t and c == k}
        assert len(taken) == 1
        (sid,) = taken
        assert all(t for i, t, c in zip(ids, m, y, strict=True) if i == sid and c == k)


def test_report_judges_each_rule_on_validation_only() -> None:
    def run(val_gain, test_gain):
        r = {}
        for s in (0, 15, 30):
            r[f"val_{s}"] = {"train-1": 0.8, "train": 0.8 + val_gain,
                             "train+val": 0.8 + val_gain - 0.003}
            r[f"test_{s}"] = {"train": 0.8, "train+val": 0.8 + test_gain}
        return r
    res = {f"r{i}": run(0.02, -0.05) for i in range(10)}
    _, v = report(res)
    assert v["L+''"]["adopt"] and v["L+''"]["higher"] == 10
    assert not v["L+"]["adopt"] and v["L+"]["lower"] == 10  # test gains never count
    res = {f"r{i}": run(0.02 if i < 6 else -0.01, 0.05) for i in range(10)}
    assert not report(res)[1]["L+''"]["adopt"]  # 6 of 10
