"""Function matching (``TrainConfig.distill_views``, issue 11): the teachers answer every
epoch's augmented views, with the shift undone, instead of the clean spectra once."""

from __future__ import annotations

import numpy as np
import pytest

import trainer.train as tt
from tests.conftest import record_steps
from trainer.augment import AugmentConfig, augment_batch, shift_rows
from trainer.model import ModelConfig
from trainer.train import TrainConfig

TINY = ModelConfig(arch="paper", pool_size=8, dense_units=16, dropout=0.0, filters=(4, 8, 8),
                   kernel_size=5)


SMALL_FLIGHT = ModelConfig(filters=(8, 8, 8, 8, 8), reduce_channels=4)


class _Stop(Exception):
    """Raised by the stand-in of ``train_model`` once it has seen its arguments."""


def _teacher_fn_of_train_model(monkeypatch) -> list:
    """Replace ``trainer.train.train_model`` by a stand-in that records the ``teacher_fn`` it
    was given and raises :class:`_Stop`; returns the list it records into."""
    seen: list = []

    def fake(*args, teacher_fn=None, **kw):
        seen.append(teacher_fn)
        raise _Stop

    monkeypatch.setattr(tt, "train_model", fake)
    return seen


def _plain(**kw) -> TrainConfig:
    base = {"epochs": 1, "teachers": 0, "distill": 0.5, "qat_epochs": 0,
            "outlier_exposure": 0.0, "batch_size": 64}
    return TrainConfig(**{**base, **kw})


def test_config_checks_and_old_runs() -> None:
    assert TrainConfig().distill_views is False  # measured, not adopted
    with pytest.raises(ValueError, match="distill_views needs distill > 0"):
        TrainConfig(distill_views=True, distill=0.0)
    with pytest.raises(ValueError, match="distill_views and teacher_folds"):
        TrainConfig(distill_views=True, teacher_folds=True)
    with pytest.raises(ValueError, match="true or false"):
        TrainConfig(distill_views=1)
    old = TrainConfig().to_dict()
    del old["distill_views"]  # a run written before function matching
    assert TrainConfig.from_dict(old).distill_views is False


def test_augment_reports_its_shifts_without_changing_the_draws() -> None:
    X = np.random.default_rng(0).random((20, 200)).astype(np.float32)
    cfg = AugmentConfig(shift_cm=9, noise_std=0.01, baseline=0.1)
    plain = augment_batch(X, cfg, np.random.default_rng(5))
    out, shifts = augment_batch(X, cfg, np.random.default_rng(5), with_shifts=True)
    np.testing.assert_array_equal(plain, out)
    assert shifts.shape == (20,) and np.abs(shifts).max() <= 9 and np.any(shifts != 0)
    only = AugmentConfig(shift_cm=9)
    moved, s = augment_batch(X, only, np.random.default_rng(5), with_shifts=True)
    np.testing.assert_allclose(moved, shift_rows(X, s) / shift_rows(X, s).max(1, keepdims=True),
                               rtol=1e-6)
    _, none = augment_batch(X, AugmentConfig(), np.random.default_rng(5), with_shifts=True)
    assert np.all(none == 0)


def test_targets_are_the_teachers_answers_on_the_unshifted_views(monkeypatch,
                                                                 synthetic_data) -> None:
    """The trainer asks the teacher function once per epoch about the spectra it is about
    to step on, with their shifts undone (each view equals a training spectrum away from
    the edges), and steps on (1 - d) onehot + d teacher(view). Without ``distill_views`` the
    function is never called."""

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    k = len(synthetic_data.labels)
    W = np.random.default_rng(3).normal(size=(Xtr.shape[1], k))
    asked: list[np.ndarray] = []

    def teacher(V: np.ndarray) -> np.ndarray:
        asked.append(np.array(V))
        return _softmax(V @ W)

    batches = record_steps(monkeypatch)
    clean = np.full((len(ytr), k), 1.0 / k, dtype=np.float32)  # what it would use otherwise
    tc = _plain(epochs=2, distill=0.4, distill_views=True,
                augment=AugmentConfig(shift_cm=6, noise_std=0.02))
    tt.train_model(Xtr, ytr, Xva, yva, k, TINY, tc, teacher_probs=clean, teacher_fn=teacher,
                   log=None)
    assert len(asked) == 2  # once per epoch
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    n = len(ytr)
    inner = slice(6, -6)
    for e in range(2):
        view, x_e, y_e = asked[e], xs[e * n:(e + 1) * n], ys[e * n:(e + 1) * n]
        # the view is the very (noisy) row stepped on, moved back by its shift: some shift in
        # [-6, 6] maps it onto that row inside the edges, and it is not a clean spectrum
        back = [np.abs(np.roll(view, s, axis=1)[:, inner] - x_e[:, inner]).max(axis=1) < 1e-5
                for s in range(-6, 7)]
        assert np.all(np.any(back, axis=0))
        assert np.mean(np.all(view == x_e, axis=1)) < 0.2  # moved back (shift 0: 1 in 13)
        dist = np.abs(view[:, None, inner] - Xtr[None, :, inner]).max(axis=2)
        assert dist.min(axis=1).min() > 1e-3  # noise: never the clean training spectrum
        hard = (y_e - 0.4 * _softmax(view @ W)) / 0.6
        np.testing.assert_allclose(hard.sum(axis=1), 1.0, atol=1e-4)
        np.testing.assert_allclose(hard.max(axis=1), 1.0, atol=1e-4)  # one-hot labels
        nearest = ytr[np.square(view[:, None, inner] - Xtr[None, :, inner]).sum(2).argmin(1)]
        np.testing.assert_array_equal(hard.argmax(axis=1), nearest)
    asked.clear()
    tt.train_model(Xtr, ytr, Xva, yva, k, TINY, _plain(augment=AugmentConfig(shift_cm=6)),
                   teacher_probs=clean, teacher_fn=teacher, log=None)
    assert asked == []


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return (E / E.sum(axis=1, keepdims=True)).astype(np.float32)


def test_own_teachers_are_asked_every_epoch(monkeypatch, synthetic_data) -> None:
    """With the run's own teachers the trainer builds their ensemble function and asks it
    every epoch; without teachers or a function it refuses with a one-line reason."""
    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    k = len(synthetic_data.labels)
    counted = []
    real = tt.ensemble_fn

    def spy(models):
        fn = real(models)
        counted.append(len(models))

        def wrapped(V):
            counted.append(V.shape)
            return fn(V)
        return wrapped

    monkeypatch.setattr(tt, "ensemble_fn", spy)
    tc = _plain(epochs=2, teachers=2, distill_views=True, augment=AugmentConfig(shift_cm=4))
    tt.train_model(Xtr, ytr, Xva, yva, k, TINY, tc, log=None)
    assert counted[0] == 2 and counted[1:] == [Xtr.shape, Xtr.shape]
    with pytest.raises(ValueError, match="needs the teachers themselves"):
        tt.train_model(Xtr, ytr, Xva, yva, k, TINY, _plain(distill_views=True),
                       teacher_probs=np.full((len(ytr), k), 1 / k, np.float32), log=None)


def test_int8_finetune_matches_its_float_model_on_views(monkeypatch, synthetic_data) -> None:
    """The int8-aware fine-tune passes its float model as the teacher function when the run
    uses function matching, and none otherwise."""
    import trainer.qat as tq
    from trainer.model import build_model

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    k = len(synthetic_data.labels)
    mc = SMALL_FLIGHT
    float_model = build_model(k, mc)
    seen = _teacher_fn_of_train_model(monkeypatch)
    for views in (True, False):
        with pytest.raises(_Stop):
            tq.quantization_aware_finetune(float_model, Xtr, ytr, Xva, yva, k, mc,
                                           _plain(distill_views=views, qat_epochs=1))
    fn, none = seen
    assert none is None
    np.testing.assert_allclose(fn(Xva[:5]), tt.predict_probs(float_model, Xva[:5]), rtol=1e-5)


def test_a_run_matches_the_functions_of_given_teacher_runs(monkeypatch, tmp_path) -> None:
    """Teacher runs given with --teacher: their models become the teacher function handed
    to the trainer (which asks it every epoch under function matching)."""
    import trainer.run as tr
    from ramanedge.dataset import Dataset
    from trainer.run import DataConfig, train_run

    n = 12
    ds = Dataset(X=np.random.default_rng(0).random((n, 1392)).astype(np.float32),
                 y=np.repeat(np.arange(3), 4), labels=["a", "b", "c"],
                 paths=[f"f{i}.txt" for i in range(n)], sample_ids=[""] * n,
                 lasers=np.full(n, np.nan), name="plain", root="x")
    split = np.array(["train"] * 9 + ["val", "test", "test"], dtype=object)
    monkeypatch.setattr(tr, "start_run", lambda out, data, **kw: (tmp_path / "r", ds, split))

    class Teacher:  # what predict_probs asks of a Keras model
        def predict_on_batch(self, X):
            return np.tile([0.2, 0.3, 0.5], (len(X), 1)).astype(np.float32)

    def given(teachers, ds, split, *, models=None, log=None):
        models.append(Teacher())
        return np.full((9, 3), 1 / 3, np.float32)

    monkeypatch.setattr(tr, "teacher_probabilities", given)
    seen = _teacher_fn_of_train_model(monkeypatch)
    with pytest.raises(_Stop):
        train_run(tmp_path / "r", DataConfig(root="x"), train_config=TrainConfig(
            outlier_exposure=0.0, distill_views=True), teachers=(tmp_path / "t",), log=None)
    np.testing.assert_allclose(seen[0](ds.X[:4]), np.tile([0.2, 0.3, 0.5], (4, 1)))


def test_teacher_views_put_the_bands_back_where_they_were() -> None:
    """benchmarks.teacher_targets' views: one sharp band per spectrum, augmented with the
    flight augmentation (shifts up to 30 points) and the shift undone: the band is back at its
    own position in most copies (a crop can cut it away), which a shifted copy would almost
    never be."""
    from benchmarks.teacher_targets import teacher_views

    rng = np.random.default_rng(0)
    where = rng.integers(200, 1200, size=60)
    X = np.full((60, 1392), 0.02, dtype=np.float32)
    X[np.arange(60), where] = 1.0
    V = teacher_views(X, 2)
    assert len(V) == 2 and V[0].shape == X.shape and not np.allclose(V[0], V[1])
    back = np.mean([np.mean(v.argmax(axis=1) == where) for v in V])
    assert back > 0.6


def test_uncropped_views_show_the_teachers_the_whole_spectrum(monkeypatch,
                                                              synthetic_data) -> None:
    """With ``distill_uncropped`` the teachers see every view before its crop (each view is
    a whole training spectrum again, shift undone) while the student steps on the cropped
    one; without it they see the crop too. Needs function matching."""

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    k = len(synthetic_data.labels)
    asked: list[np.ndarray] = []

    def teacher(V: np.ndarray) -> np.ndarray:
        asked.append(np.array(V))
        return np.full((len(V), k), 1.0 / k, np.float32)

    stepped = record_steps(monkeypatch)
    clean = np.full((len(ytr), k), 1.0 / k, dtype=np.float32)
    inner = slice(6, -6)

    def whole(V: np.ndarray) -> np.ndarray:  # rows equal to some training spectrum inside
        return (np.abs(V[:, None, inner] - Xtr[None, :, inner]).max(axis=2) < 1e-5).any(axis=1)

    for full in (True, False):
        asked.clear()
        stepped.clear()
        tc = _plain(distill_views=True, distill_uncropped=full,
                    augment=AugmentConfig(shift_cm=6, crop=1.0))
        tt.train_model(Xtr, ytr, Xva, yva, k, TINY, tc, teacher_probs=clean,
                       teacher_fn=teacher, log=None)
        (view,) = asked
        x = np.concatenate([b[0] for b in stepped])
        # (a crop may keep nearly the whole grid: a few rows stay whole by chance)
        assert whole(view).all() if full else whole(view).mean() < 0.1
        assert whole(x).mean() < 0.1  # the student always steps on the crops
    with pytest.raises(ValueError, match="needs distill_views"):
        TrainConfig(distill_uncropped=True)


def test_cli_says_why_function_matching_needs_teachers(capsys, tmp_path,
                                                        shared_data_root) -> None:
    """``ramanedge train --teachers 0 --distill-views``: one line naming the reason, exit 2,
    before any training; nothing written."""
    from tests.conftest import run_cli

    code, out, err = run_cli(capsys, "train", "--data", shared_data_root, "--teachers", "0",
                             "--distill-views", "--out", tmp_path / "r")
    assert code == 2 and "distill_views needs distill > 0" in err, err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
