"""Cross-fitted teachers (``TrainConfig.teacher_folds``, issue 11): each training spectrum is
distilled from the teacher that never saw its specimen."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import trainer.train as tt
from trainer.train import TrainConfig, out_of_fold_targets, teacher_fold_ids


def _specimens(per_mineral: list[int], spectra: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Labels and specimen ids: mineral c has ``per_mineral[c]`` specimens of ``spectra``
    spectra each."""
    y, g = [], []
    for c, n in enumerate(per_mineral):
        for s in range(n):
            y += [c] * spectra
            g += [f"R{c:02d}{s:02d}"] * spectra
    return np.array(y), np.array(g)


def test_folds_keep_specimens_whole_and_spread_every_mineral() -> None:
    y, g = _specimens([5, 3, 4, 1, 2, 7])
    fold = teacher_fold_ids(y, g, 3, seed=0)
    assert set(fold.tolist()) == {0, 1, 2}
    for s in np.unique(g):  # all spectra of a specimen in one fold
        assert len(set(fold[g == s].tolist())) == 1
    for c in np.unique(y):  # a mineral with >= 3 specimens reaches every fold
        n_spec = len(np.unique(g[y == c]))
        assert len(set(fold[y == c].tolist())) == min(n_spec, 3)
    per_fold = [len(np.unique(g[fold == i])) for i in range(3)]
    assert max(per_fold) - min(per_fold) <= 1  # 22 specimens dealt: 8 / 7 / 7
    assert np.array_equal(fold, teacher_fold_ids(y, g, 3, seed=0))
    assert not np.array_equal(fold, teacher_fold_ids(y, g, 3, seed=1))
    with pytest.raises(ValueError, match="one specimen id per spectrum"):
        teacher_fold_ids(y, g[:-1], 3, seed=0)
    with pytest.raises(ValueError, match="k must be >= 2"):
        teacher_fold_ids(y, g, 1, seed=0)


def test_out_of_fold_targets_pick_the_teacher_that_held_the_spectrum_out() -> None:
    T, N, K = 3, 4, 2
    probs = np.zeros((T, N, K))
    probs[..., 0] = np.arange(T)[:, None] / 10 + np.arange(N)[None, :] / 100
    probs[..., 1] = 1 - probs[..., 0]
    fold = np.array([0, 1, 2, 2])
    seen = np.ones((T, N), dtype=bool)
    seen[2, 3] = False  # spectrum 3's fold teacher never saw its mineral
    got = out_of_fold_targets(probs, fold, seen)
    assert np.allclose(got[:3], probs[[0, 1, 2], [0, 1, 2]])
    assert np.allclose(got[3], probs[:2, 3].mean(axis=0))  # the two teachers that saw it
    assert got.dtype == np.float32


def _fake_training(monkeypatch) -> list[np.ndarray]:
    """Replace training and prediction by a lookup: a 'teacher' remembers its training rows
    and answers class 0 for a spectrum it trained on, class 1 for one it did not. Returns the
    list the fake appends each teacher's training rows to."""
    trained: list[np.ndarray] = []

    def fake_train(X, y, Xv, yv, k, mc, tc, **_kw):
        trained.append(np.asarray(X).copy())
        return SimpleNamespace(model={r.tobytes() for r in np.asarray(X)}, epochs_run=1,
                               best_epoch=1, history={"lr": [1e-3]}, seconds=0.0)

    def fake_predict(model, X, batch_size=256):
        if isinstance(model, set):
            seen = np.array([r.tobytes() in model for r in np.asarray(X)])
            return np.stack([seen, ~seen, np.zeros_like(seen)], axis=1).astype(np.float32)
        return np.zeros((len(X), 3), np.float32)

    monkeypatch.setattr(tt, "train_model", fake_train)
    monkeypatch.setattr(tt, "predict_probs", fake_predict)
    return trained


def test_cross_fitted_targets_come_from_teachers_that_never_saw_the_specimen(monkeypatch) -> None:
    """Fails if the folds are ignored: in-sample teachers answer class 0 (seen), out-of-fold
    ones class 1. A mineral with one training specimen falls back to the teachers that saw
    it (class 0)."""
    y, g = _specimens([4, 3, 3, 1])
    X = np.arange(len(y) * 5, dtype=np.float32).reshape(len(y), 5)
    Xv, yv = X[:2], y[:2]
    trained = _fake_training(monkeypatch)
    tc = TrainConfig(teachers=3, teacher_folds=True)
    P, info = tt.train_teachers(X, y, Xv, yv, 3, None, tc, groups=g, log=None)
    fold = teacher_fold_ids(y, g, 3, seed=0)
    for i, rows in enumerate(trained):  # teacher i trained on every fold but i
        assert len(rows) == int((fold != i).sum())
        assert {r.tobytes() for r in rows} == {r.tobytes() for r in X[fold != i]}
    single = y == 3
    assert np.all(P[~single].argmax(1) == 1)  # every other spectrum: an unseen-specimen answer
    assert np.all(P[single].argmax(1) == 0)   # its fold teacher never saw mineral 3
    assert [d["fold"] for d in info] == [0, 1, 2]

    trained.clear()  # without folds: the ensemble's in-sample answer, every teacher on all
    P0, _ = tt.train_teachers(X, y, Xv, yv, 3, None, TrainConfig(teachers=3), log=None)
    assert all(len(r) == len(y) for r in trained) and np.all(P0.argmax(1) == 0)


def test_teacher_folds_refusals(tmp_path) -> None:
    with pytest.raises(ValueError, match="teachers >= 2"):
        TrainConfig(teachers=1, teacher_folds=True)
    with pytest.raises(ValueError, match="needs distill > 0"):
        TrainConfig(teacher_folds=True, distill=0.0)
    with pytest.raises(ValueError, match="teacher_folds must be true or false"):
        TrainConfig(teacher_folds="yes")
    y, g = _specimens([2, 2])
    X = np.zeros((len(y), 5), np.float32)
    with pytest.raises(ValueError, match="specimen id"):
        tt.train_teachers(X, y, X, y, 2, None, TrainConfig(teacher_folds=True), log=None)
    # a run written before the option reads as without it
    d = TrainConfig().to_dict()
    del d["teacher_folds"]
    assert TrainConfig.from_dict(d).teacher_folds is False


def test_given_teacher_runs_cannot_be_cross_fitted(tmp_path) -> None:
    """Refused before the output folder is touched."""
    from trainer.run import DataConfig, RunError, train_run

    out = tmp_path / "run"
    with pytest.raises(RunError, match="cannot be cross-fitted"):
        train_run(out, DataConfig(root=str(tmp_path / "nodata")),
                  train_config=TrainConfig(teacher_folds=True), teachers=(tmp_path / "t",))
    assert not out.exists()


def test_teacher_target_stats_on_a_constructed_case() -> None:
    from benchmarks.teacher_targets import target_stats

    P = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    s = target_stats(P, np.array([0, 1, 0]))
    assert s["top1"] == pytest.approx(1 / 3)  # row 1 ties: argmax takes class 0
    assert s["p_label"] == pytest.approx((0.9 + 0.5 + 0.2) / 3)
    assert s["p_max"] == pytest.approx((0.9 + 0.5 + 0.8) / 3)
    h = -np.sum(P * np.log(P), axis=1).mean()
    assert s["entropy"] == pytest.approx(h)
    assert target_stats(np.eye(2), np.array([0, 1]))["entropy"] == pytest.approx(0.0, abs=1e-9)


def test_a_run_folds_by_specimen_even_without_rruff_ids(monkeypatch, tmp_path) -> None:
    """Files without a RRUFF id each count as their own specimen (as in the grouped split),
    not as one shared specimen "" across minerals (which put them all in one fold)."""
    import trainer.run as tr
    from ramanedge.dataset import Dataset
    from trainer.run import DataConfig, train_run

    n = 12
    ds = Dataset(X=np.zeros((n, 1392), np.float32), y=np.repeat(np.arange(3), 4),
                 labels=["a", "b", "c"], paths=[f"f{i}.txt" for i in range(n)],
                 sample_ids=[""] * n, lasers=np.full(n, np.nan), name="plain", root="x")
    split = np.array(["train"] * 9 + ["val", "test", "test"], dtype=object)
    monkeypatch.setattr(tr, "start_run", lambda out, data, **kw: (tmp_path / "r", ds, split))
    seen = {}

    class Stop(Exception):
        pass

    def fake_train_model(*args, groups=None, **kw):
        seen["groups"] = groups
        raise Stop

    monkeypatch.setattr(tt, "train_model", fake_train_model)
    with pytest.raises(Stop):
        train_run(tmp_path / "r", DataConfig(root="x"),
                  train_config=TrainConfig(teacher_folds=True, outlier_exposure=0.0), log=None)
    g = seen["groups"]
    assert len(g) == 9 and len(set(g.tolist())) == 9  # nine files, nine specimens
    fold = teacher_fold_ids(ds.y[:9], g, 3, seed=0)
    assert sorted(np.bincount(fold).tolist()) == [3, 3, 3]
