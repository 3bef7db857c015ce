"""The library refit probe (``benchmarks.library_refit``, issue 11): specimen folds, the
held-aside specimens and the rules' verdicts."""

from __future__ import annotations

import numpy as np

from benchmarks.library_refit import (
    held_aside,
    new_report,
    new_specimen_rows,
    report,
    specimen_folds,
)
from ramanedge.corpus import Corpus
from ramanedge.grid import GRID


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


def _corpus(rows: list[tuple[str, str, int]]) -> Corpus:
    """A corpus of ``(RRUFF id, mineral, covered points)`` rows; row i's spectrum is all i."""
    n = len(rows)
    return Corpus(X=np.stack([np.full(GRID.size, i, np.float32) for i in range(n)]),
                  lo=np.zeros(n, np.int64), hi=np.array([c for _, _, c in rows]),
                  paths=tuple(f"p{i}" for i in range(n)),
                  minerals=tuple(m for _, m, _ in rows),
                  sample_ids=tuple(s for s, _, _ in rows), kinds=("processed",) * n,
                  sources=("LR-Raman",) * n)


def test_new_specimen_rows_keep_only_other_specimens_of_known_minerals() -> None:
    full, half = GRID.size, GRID.size // 2
    c = _corpus([("R1", "Quartz", full),      # a specimen of the data set: never
                 ("R9", "Quartz", full),      # another quartz specimen: kept
                 ("", "Quartz", full),        # no id: nothing proves it is another one
                 ("R8", "Abellaite", full),   # not a label
                 ("R7", "Calcite", half),     # half the grid
                 ("R7", "Calcite", full)])
    X, y, ids = new_specimen_rows(c, {"R1", "R2"}, ["Calcite", "Quartz"], 0.0)
    assert ids == ["R9", "R7", "R7"] and y.tolist() == [1, 0, 0]
    assert X[:, 0].tolist() == [1, 4, 5]
    X, y, ids = new_specimen_rows(c, {"R1", "R2"}, ["Calcite", "Quartz"], 0.95)
    assert ids == ["R9", "R7"] and X[:, 0].tolist() == [1, 5]


def test_new_report_picks_on_validation_and_needs_more_runs_higher() -> None:
    def run(g_all, g95, test):
        r = {"rows": {"+new": 80, "+new95": 52}}
        for s in (0, 15, 30):
            r[f"val_{s}"] = {"train": 0.8, "+new": 0.8 + g_all, "+new95": 0.8 + g95}
            r[f"test_{s}"] = {"train": 0.8, "+new": 0.8 + test, "+new95": 0.8 + test}
        return r
    res = {f"r{i}": run(0.004, 0.002, -0.05) for i in range(5)}
    table, v = new_report(res)
    assert v["pick"] == "+new" and v["adopt"]  # test losses never count
    assert "adopt" in table.splitlines()[-1]
    res = {f"r{i}": run(0.004 if i < 2 else -0.001, 0.0, 0.05) for i in range(5)}
    v = new_report(res)[1]
    assert v["pick"] == "+new" and not v["adopt"]  # 2 higher, 3 lower
