"""Training: class weights, the recipe's schedule, reproducibility, augmentation, run folders."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ramanedge.grid import shift_spectra
from tests.conftest import run_cli
from trainer.augment import AugmentConfig, augment_batch, shift_rows
from trainer.model import ModelConfig
from trainer.train import PAPER_TRAIN, TrainConfig, class_weights, train_model

#: the plain training loop (no teachers, no distillation) that these tests exercise
# the trainer's mechanics on a few steps: no teachers, and the moving average of the weights
# pinned off (an opt-in, rule (E))
PlainTC = partial(TrainConfig, teachers=0, distill=0.0, ema=0.0)


def synthetic(n_classes: int = 4, per_class: int = 12, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Max-normalised spectra with three Gaussian bands per class on the 1392-point grid."""
    rng = np.random.default_rng(seed)
    t = np.arange(1392)
    centres = rng.uniform(100, 1290, size=(n_classes, 3))
    X, y = [], []
    for c in range(n_classes):
        for _ in range(per_class):
            s = 0.2 * rng.uniform() * np.linspace(0, 1, 1392) + rng.normal(0, 0.01, 1392)
            for mu in centres[c]:
                s += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((t - mu - rng.normal(0, 1)) / 5) ** 2)
            X.append(s / s.max())
            y.append(c)
    return np.asarray(X, np.float32), np.asarray(y, np.int64)


# ------------------------------------------------------------------ class weights

def test_class_weights_balance_the_classes() -> None:
    y = np.array([0] * 6 + [1] * 2 + [3] * 4)
    w = class_weights(y, 5)
    # n / (k * n_c) with n = 12, k = 3 present classes
    assert w == pytest.approx([12 / 18, 12 / 6, 0.0, 12 / 12, 0.0])
    weighted = np.bincount(y, weights=w[y], minlength=5)
    assert weighted[[0, 1, 3]] == pytest.approx([4.0, 4.0, 4.0])
    assert class_weights(np.array([0, 1, 2, 0, 1, 2]), 3) == pytest.approx([1, 1, 1])


@pytest.mark.parametrize("bad", [np.array([], np.int64), np.array([0, 5])])
def test_class_weights_reject_bad_labels(bad) -> None:
    with pytest.raises(ValueError):
        class_weights(bad, 3)


# ------------------------------------------------------------------ augmentation

def test_shift_rows_equals_shift_spectra_per_row() -> None:
    X = np.random.default_rng(1).random((4, 1392)).astype(np.float32)
    shifts = np.array([0, 3, -7, 30])
    out = shift_rows(X, shifts)
    for i, s in enumerate(shifts):
        assert np.array_equal(out[i], shift_spectra(X[i], int(s)))


def test_augment_off_is_identity_and_on_keeps_max_one() -> None:
    X, _ = synthetic(2, 5)
    rng = np.random.default_rng(0)
    assert np.array_equal(augment_batch(X, AugmentConfig(), rng), X)
    cfg = AugmentConfig(shift_cm=5, noise_std=0.01, baseline=0.2, scale=0.2)
    A = augment_batch(X, cfg, np.random.default_rng(0))
    B = augment_batch(X, cfg, np.random.default_rng(0))
    assert np.array_equal(A, B)  # seeded
    assert not np.allclose(A, X)
    assert np.allclose(A.max(axis=1), 1.0)
    assert A.dtype == np.float32 and A.shape == X.shape


def test_augment_shift_only_moves_bands_by_at_most_shift() -> None:
    X = np.zeros((50, 1392), np.float32)
    X[:, 700] = 1.0
    A = augment_batch(X, AugmentConfig(shift_cm=4), np.random.default_rng(3))
    moved = A.argmax(axis=1) - 700
    assert np.all(np.abs(moved) <= 4) and len(set(moved.tolist())) > 3


def test_crop_augmentation_is_the_rovers_padding() -> None:
    """crop=1: every row keeps one window of >= 40 % of the grid and holds its edge values
    outside it, exactly as ramanedge.grid.pad_outside (the rover's --coverage pad) does."""
    from ramanedge.grid import pad_outside
    from trainer.augment import CROP_MIN_FRACTION, crop_rows

    rng = np.random.default_rng(5)
    X = rng.random((300, 1392)) + 0.5  # no two neighbours equal: the window is recoverable
    C = crop_rows(X, 1.0, np.random.default_rng(1))
    widths, starts = [], []
    for c, x in zip(C, X, strict=True):
        keep = np.flatnonzero(c == x)
        lo, hi = keep[0], keep[-1] + 1
        assert np.array_equal(keep, np.arange(lo, hi))  # one contiguous window
        assert np.array_equal(c, pad_outside(x, lo, hi))
        widths.append((hi - lo) / 1392)
        starts.append(lo)
    assert min(widths) >= CROP_MIN_FRACTION - 1e-3 and max(widths) > 0.95
    assert min(starts) == 0 and max(starts) > 300  # low cuts, high cuts and both
    A = augment_batch(X, AugmentConfig(crop=1.0), np.random.default_rng(1))
    assert np.allclose(A, C / C.max(axis=1, keepdims=True))  # then max-normalised
    half = augment_batch(X, AugmentConfig(crop=0.5), np.random.default_rng(2))
    untouched = np.all(np.isclose(half, X / X.max(axis=1, keepdims=True)), axis=1).mean()
    assert 0.35 < untouched < 0.65
    assert AugmentConfig.parse("crop=0.3").crop == 0.3
    with pytest.raises(ValueError, match="crop"):
        AugmentConfig(crop=1.5)


def test_split_background_does_not_depend_on_blas_threads() -> None:
    """The backgrounds the augmentation draws are the same bits with 1 or 2 BLAS threads
    (before 2026-12-06 they differed in the last bits with 2 OpenBLAS threads, and so did
    every training with ``background`` augmentation), and the caller's threading is left as
    it was."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from trainer.augment import _split_background, split_background

    rng = np.random.default_rng(0)  # band-rich rows over a curved background, as in RRUFF
    X = np.abs(rng.normal(size=(824, 1392))).cumsum(axis=1)
    X = X / X.max(axis=1, keepdims=True) + 0.3 * rng.random((824, 1392))
    with threadpool_limits(limits=1, user_api="blas"):
        one = _split_background(X, 5, 100, 1e-3)
    with threadpool_limits(limits=2, user_api="blas"):
        blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
        if not blas or min(i["num_threads"] for i in blas) < 2:
            pytest.skip("numpy's BLAS cannot run 2 threads here")
        raw = _split_background(X, 5, 100, 1e-3)  # the fit as it ran before the pin
        if np.array_equal(raw[1], one[1]):
            pytest.skip("this BLAS gives the same bits with 2 threads: nothing to pin")
        two = split_background(X)
        assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] \
            == [i["num_threads"] for i in blas]
    assert np.array_equal(two[0], one[0]) and np.array_equal(two[1], one[1])
    assert np.allclose(two[0] + two[1], X)


def test_augment_config_parse() -> None:
    cfg = AugmentConfig.parse("shift=5, noise=0.01,baseline=0.1")
    assert cfg == AugmentConfig(shift_cm=5, noise_std=0.01, baseline=0.1)
    assert AugmentConfig.parse("none") == AugmentConfig()
    assert not AugmentConfig().enabled
    for bad in ("shift", "wobble=3", "shift=2.5", "noise=abc", "noise=2"):
        with pytest.raises(ValueError):
            AugmentConfig.parse(bad)


def test_paper_recipe_is_the_papers() -> None:
    p = PAPER_TRAIN
    assert (p.learning_rate, p.lr_factor, p.lr_patience, p.early_stop_patience) == \
        (1e-3, 0.7, 3, 5)
    assert p.class_weighting and p.monitor == "val_loss" and not p.augment.enabled


def test_train_config_round_trip() -> None:
    tc = PlainTC(epochs=7, augment=AugmentConfig(shift_cm=3), monitor="val_accuracy")
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    with pytest.raises(ValueError):
        PlainTC(monitor="loss")


# ------------------------------------------------------------------ training

TINY = ModelConfig(arch="paper", pool_size=8, dense_units=32, dropout=0.2, filters=(8, 16, 16),
                   kernel_size=5)


@pytest.mark.slow
def test_training_learns_and_is_reproducible() -> None:
    X, y = synthetic(4, 12)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va = idx[:36], idx[36:]
    tc = PlainTC(epochs=5, batch_size=8, seed=3,
                     augment=AugmentConfig(shift_cm=2, background=0.5, noise_std=0.01))
    lines: list[str] = []
    r1 = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, tc, log=lines.append)
    r2 = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, tc, log=None)
    assert len(lines) == r1.epochs_run and lines[0].startswith("epoch   1/5")
    assert r1.history["loss"][-1] < r1.history["loss"][0]
    for a, b in zip(r1.model.get_weights(), r2.model.get_weights(), strict=True):
        assert np.array_equal(a, b)  # same seed, same data -> bit-identical on this machine
    r3 = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, PlainTC(epochs=1, seed=4), log=None)
    assert not np.array_equal(r1.model.get_weights()[0], r3.model.get_weights()[0])


def test_lr_schedule_and_early_stopping_follow_the_recipe() -> None:
    """A learning rate of ~0 never improves val loss: LR x0.7 every 3 epochs, stop after 5."""
    from dataclasses import replace

    X, y = synthetic(3, 6)
    tc = replace(PAPER_TRAIN, epochs=50, learning_rate=1e-12, min_delta=1e-3, min_lr=1e-20)
    r = train_model(X, y, X, y, 3, TINY, tc, log=None)
    # epoch 1 sets the best; epochs 2..6 do not improve by min_delta -> stop after epoch 6
    assert r.epochs_run == 6
    assert r.best_epoch == 1
    lr = r.history["lr"]
    assert lr[:4] == pytest.approx([1e-12] * 4)
    assert lr[4] == pytest.approx(0.7e-12)


def test_fixed_schedule_runs_exactly_its_epochs_with_its_rates() -> None:
    """``schedule`` (a refit): len(schedule) epochs, those learning rates, final weights kept."""
    X, y = synthetic(3, 6)
    sched = [1e-3, 1e-3, 5e-4]
    # validation = 2 training spectra: only logged, never used for stopping or selection
    r = train_model(X, y, X[:2], y[:2], 3, TINY, PlainTC(epochs=50, seed=1),
                    schedule=sched, log=None)
    assert r.epochs_run == 3 and r.best_epoch == 3
    assert r.history["lr"] == pytest.approx(sched)
    assert float(r.model.optimizer.learning_rate.numpy()) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="schedule"):
        train_model(X, y, X, y, 3, TINY, PlainTC(), schedule=[], log=None)
    with pytest.raises(ValueError, match="schedule"):
        train_model(X, y, X, y, 3, TINY, PlainTC(), schedule=[1e-3, 0.0], log=None)


@pytest.mark.slow
def test_a_schedule_replays_a_validated_run_to_its_kept_weights() -> None:
    """What a refit relies on: training again with a validated run's rates up to its kept
    epoch (same data, same seed) ends at exactly the weights that run kept, and a schedule
    whose rates differ after a plateau step ends elsewhere (the rates reach the optimiser)."""
    X, y = synthetic(4, 12)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va = idx[:36], idx[36:]
    tc = PlainTC(epochs=9, batch_size=8, seed=3, lr_patience=1, lr_factor=0.5,
                 early_stop_patience=3, monitor="val_loss", min_delta=10.0,
                 augment=AugmentConfig(shift_cm=2, noise_std=0.01))
    first = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, tc, log=None)
    lr = first.history["lr"][:first.best_epoch]
    assert len(set(lr)) > 1, "the plateau must have lowered the rate before the kept epoch"
    again = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, tc, schedule=lr, log=None)
    for a, b in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    flat = train_model(X[tr], y[tr], X[va], y[va], 4, TINY, tc, schedule=[lr[0]] * len(lr),
                       log=None)
    assert not all(np.array_equal(a, b) for a, b in zip(
        first.model.get_weights(), flat.model.get_weights(), strict=True))


def test_init_weights_start_training_from_given_weights() -> None:
    from trainer.model import build_model

    X, y = synthetic(3, 6)
    start = build_model(3, TINY)
    start.set_weights([np.full_like(w, 0.01) for w in start.get_weights()])
    w0 = start.get_weights()
    # a learning rate of ~0: the trained weights must still be the given ones
    r = train_model(X, y, X, y, 3, TINY, PlainTC(epochs=1, learning_rate=1e-12),
                    init_weights=w0, log=None)
    for a, b in zip(r.model.get_weights(), w0, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    r2 = train_model(X, y, X, y, 3, TINY, PlainTC(epochs=1, learning_rate=1e-12), log=None)
    assert not np.allclose(r2.model.get_weights()[0], w0[0])


# ------------------------------------------------------------------ run folders on real spectra

REAL_MINERALS = ("Calcite", "Corundum", "Diopside", "Forsterite", "Quartz")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_data_root):
    """A tiny run trained on 5 real RRUFF minerals (2 epochs, dense_units=64)."""
    from tests.conftest import REPO
    from trainer.run import DataConfig, train_run

    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    out = tmp_path_factory.mktemp("runs") / "tiny"
    lines: list[str] = []
    train_run(out, data, ModelConfig(arch="paper", pool_size=16, dense_units=64),
              PlainTC(epochs=2, batch_size=16), log=lines.append)
    return out, lines


@pytest.mark.slow
@pytest.mark.realdata
def test_train_run_writes_a_loadable_run(real_run) -> None:
    import json

    from trainer.run import RUN_FILES, load_run
    from trainer.train import predict_probs

    out, lines = real_run
    for f in (*RUN_FILES, "metrics.json", "history.json", "confusion.png"):
        assert (out / f).is_file(), f
    assert any(line.startswith("epoch   2/2") for line in lines)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["dense_units"] == 64 and cfg["model"]["pool_size"] == 16
    assert cfg["train"]["epochs"] == 2 and cfg["data"]["dataset"] == "rruff-raw"
    assert cfg["data"]["minerals"] == list(REAL_MINERALS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]["shifts"]) == {"0", "15", "30"}
    assert 0.0 <= metrics["test"]["top1"] <= metrics["test"]["top3"] <= 1.0

    run = load_run(out)
    assert run.labels == sorted(REAL_MINERALS)
    assert run.model_config == ModelConfig(arch="paper", pool_size=16, dense_units=64)
    assert run.train_config.epochs == 2
    assert set(np.unique(run.split)) == {"train", "val", "test"}
    Xte, yte = run.subset("test")
    # groups never straddle the split: no test specimen is in training
    ids = np.asarray(run.dataset.sample_ids)
    assert not set(ids[run.split == "test"]) & set(ids[run.split == "train"])
    probs = predict_probs(run.model, Xte)
    acc = float(np.mean(probs.argmax(1) == yte))
    assert acc == pytest.approx(metrics["test"]["top1"])


@pytest.mark.slow
@pytest.mark.realdata
def test_load_run_rejects_tampering_and_non_runs(real_run, tmp_path) -> None:
    import shutil

    from trainer.run import RunError, load_run

    out, _ = real_run
    with pytest.raises(RunError, match="not a training run"):
        load_run(tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    lines = (bad / "split.csv").read_text().splitlines()
    flipped = [lines[0]] + [
        (line.rsplit(",", 1)[0] + ",test") if line.endswith(",train") else line
        for line in lines[1:]
    ]
    (bad / "split.csv").write_text("\n".join(flipped) + "\n")
    with pytest.raises(RunError, match="modified"):
        load_run(bad)
    shutil.copy(out / "split.csv", bad / "split.csv")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        load_run(bad)


@pytest.mark.slow
@pytest.mark.realdata
def test_train_refuses_to_overwrite_a_run(real_run) -> None:
    from trainer.run import DataConfig, RunError, train_run

    out, _ = real_run
    before = (out / "model.keras").read_bytes()
    with pytest.raises(RunError, match="already exists"):
        train_run(out, DataConfig(root="/nonexistent"), log=None)
    assert (out / "model.keras").read_bytes() == before


# ------------------------------------------------------------------ CLI: bad input, one line

def test_cli_train_missing_data_folder(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path / "nowhere"), "--out",
                           str(tmp_path / "run"))
    assert code == 2
    assert err.startswith("error: data folder") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_train_unknown_activation(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), "--activation", "gelu",
                           "--out", str(tmp_path / "run"))
    assert code == 2
    assert "gelu" in err and "leaky_relu" in err and "Traceback" not in err


@pytest.mark.parametrize("opt", [["--pool-size", "0"], ["--augment", "shift=abc"],
                                 ["--augment", "wobble=1"], ["--epochs", "0"],
                                 ["--objectosphere", "1", "--outlier-exposure", "0"],
                                 ["--objectosphere-xi", "-2"]])
def test_cli_train_bad_values(tmp_path, capsys, opt) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), *opt, "--out",
                           str(tmp_path / "r"))
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("opt", "why"), [
    (["--background-class", "--outlier-exposure", "0"], "needs outlier exposure"),
    (["--background-class", "--objectosphere", "1"], "alternative open-set losses"),
    (["--objectosphere", "1", "--outlier-exposure", "0"], "needs outlier exposure"),
    (["--background-class", "--labelled-fraction", "0.1"], "not used by few-label training")])
def test_cli_train_refuses_open_set_losses_it_cannot_apply(tmp_path, capsys, opt, why) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), *opt, "--out",
                           str(tmp_path / "r"))
    assert code == 2 and why in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_train_missing_split_file(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), "--split-file",
                           str(tmp_path / "no.csv"), "--out", str(tmp_path / "r"))
    assert code == 2
    assert "split file" in err and "does not exist" in err


@pytest.mark.realdata
def test_cli_train_bad_split_file_contents(tmp_path, capsys, shared_data_root) -> None:
    from tests.conftest import REPO

    bad = tmp_path / "split.csv"
    bad.write_text("path,split\nnot/a/spectrum.txt,train\n")
    code, _, err = run_cli(capsys, "train", "--data", str(shared_data_root), "--cache-dir",
                           str(REPO / ".cache" / "ramanedge"), "--split-file", str(bad),
                           "--out", str(tmp_path / "r"), "--epochs", "1")
    assert code == 2
    assert err.startswith("error: split file") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    bad.write_text("file,part\nx,train\n")
    code, _, err = run_cli(capsys, "train", "--data", str(shared_data_root), "--cache-dir",
                           str(REPO / ".cache" / "ramanedge"), "--split-file", str(bad),
                           "--out", str(tmp_path / "r"))
    assert code == 2 and "lacks column" in err


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_train_on_a_subset_split_without_val(tmp_path, capsys, shared_data_root) -> None:
    """Issue 13.2: a published split (train/test lists of part of rruff-raw, no val) trains
    on what it names, a seeded grouped val is carved from its train part and said in one line,
    the run's split.csv records exactly that, and the replay's loader reads it the same way."""
    import csv
    import json

    from device_sim.spectra import load_items
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import complete_split, make_split, read_split_csv
    from tests.conftest import REPO

    cache = REPO / ".cache" / "ramanedge"
    ds = build_dataset(shared_data_root, "rruff-raw", cache_dir=cache)
    full = make_split(ds, seed=1)
    keep = [i for i in range(len(ds)) if ds.y[i] < 12 and full[i] != "val"]
    published = tmp_path / "paper_split.csv"
    with open(published, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "split"])
        w.writerows([ds.paths[i], full[i]] for i in keep)
    out = tmp_path / "run"
    from ramanedge.cli import main

    try:
        main(["train", "--data", str(shared_data_root), "--cache-dir", str(cache),
              "--split-file", str(published), "--split-seed", "4", "--out", str(out),
              "--recipe", "paper", "-m", "16", "--dense-units", "32", "--epochs", "1"])
    except SystemExit as e:
        assert not e.code, capsys.readouterr().err
    text = "".join(capsys.readouterr())
    assert f"the split file assigns {len(keep)} of the data set's {len(ds)} spectra" in text
    assert "the split file has no val part: carved" in text and "seed 4" in text
    run_split = read_split_csv(out / "split.csv", ds)
    named = np.zeros(len(ds), bool)
    named[keep] = True
    assert np.all(run_split[~named] == "") and np.all(run_split[named] != "")
    assert np.array_equal(run_split == "test", np.where(named, full, "") == "test")
    val = run_split == "val"
    assert val.any() and not set(np.array(ds.sample_ids)[val]) & set(
        np.array(ds.sample_ids)[run_split == "train"])  # grouped by specimen
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == int(np.sum(run_split == "test"))
    items = load_items(shared_data_root, split_file=published, part="val", payload="grid",
                       cache_dir=cache)
    carved_seed0 = complete_split(ds, read_split_csv(published, ds))[0] == "val"
    assert carved_seed0.any() and len(items) == int(carved_seed0.sum())


def test_cli_train_existing_output_is_kept(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, err = run_cli(capsys, "train", "--data", str(tmp_path), "--out", str(out))
    assert code == 2 and "already exists" in err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_evaluate_a_real_run(real_run, tmp_path, capsys) -> None:
    import json
    import shutil

    from ramanedge.cli import main

    out = tmp_path / "copy"
    shutil.copytree(real_run[0], out)
    before = json.loads((out / "metrics.json").read_text())
    (out / "confusion.png").unlink()
    main(["evaluate", str(out), "--shifts", "0,5"])
    text = capsys.readouterr().out
    assert "top-1" in text and "shift   5 cm-1" in text
    after = json.loads((out / "metrics.json").read_text())
    assert after["test"]["top1"] == pytest.approx(before["test"]["top1"])
    # the shifts evaluated now join the stored ones, which keep their figures
    stored = before["test"]["shifts"]
    assert set(after["test"]["shifts"]) == set(stored) | {"0", "5"} and "30" in stored
    assert after["test"]["shifts"]["30"] == stored["30"]
    assert after["train_seconds"] == before["train_seconds"]  # training keys kept
    assert (out / "confusion.png").is_file()
    # no shift at all is refused in one line, and nothing stored changes
    kept = (out / "metrics.json").read_bytes()
    code, _, err = run_cli(capsys, "evaluate", str(out), "--shifts", ",")
    assert code == 2 and "--shifts must name at least one shift" in err
    assert (out / "metrics.json").read_bytes() == kept
    main(["evaluate", str(out), "--split", "val", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == before["val"]["n"] and res["top1"] == pytest.approx(before["val"]["top1"])


@pytest.mark.slow
@pytest.mark.realdata
def test_accuracy_experiment_driver_on_a_real_run(real_run, shared_data_root, tmp_path) -> None:
    """benchmarks.accuracy_experiments: an ensemble of one run twice equals the run; a refit
    trains the run's best-epoch schedule on train + val and reports both test figures."""
    from benchmarks.accuracy_experiments import main

    run, _ = real_run
    runs = json.loads((run / "metrics.json").read_text())
    out = tmp_path / "acc"
    assert main(["--data", str(shared_data_root), "--out", str(out),
                 "ensemble", str(run), str(run)]) == 0
    ens = json.loads((out / "ensemble.json").read_text())
    assert ens["single"][0] == ens["single"][1]
    assert ens["ensemble"]["test_top1"] == pytest.approx(runs["test"]["top1"])
    assert main(["--data", str(shared_data_root), "--out", str(out), "refit", str(run)]) == 0
    (row,) = json.loads((out / "refit.json").read_text())
    assert row["epochs"] == runs["best_epoch"]
    assert row["test_top1_run"] == runs["test"]["top1"]
    assert 0.0 <= row["test_top1_refit"] <= 1.0


def test_accuracy_experiment_driver_rejects_bad_input(tmp_path, capsys) -> None:
    from benchmarks.accuracy_experiments import main

    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "nowhere"), "ensemble", str(tmp_path)])
    assert e.value.code == 2
    assert "data folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), "refit", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not a finished run folder" in err and "Traceback" not in err


# ------------------------------------------------------------------ outlier exposure (issue 12)

def _oe_data(held_out_spectra: bool = False):
    """Classes 0-3 are the known minerals; 4-15 stand for minerals outside the label set:
    every second spectrum of classes 4-11 are the training negatives, classes 12-15 unseen
    minerals that no training touches (returned last), or, with ``held_out_spectra``, the
    other spectra of classes 4-11 (new spectra of the negatives' own minerals)."""
    X, y = synthetic(16, 16, seed=5)
    known = y < 4
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.flatnonzero(known))
    tr, va = idx[:48], idx[48:]
    neg = np.flatnonzero((y >= 4) & (y < 12))
    last = X[neg[1::2]] if held_out_spectra else X[y >= 12]
    return X[tr], y[tr], X[va], y[va], X[neg[::2]], last


def test_outlier_exposure_feeds_the_negatives_with_uniform_targets(monkeypatch) -> None:
    """Every epoch draws negatives_ratio x the known spectra from the negatives, with the
    uniform distribution as target and outlier_exposure x the mean class weight as weight;
    with outlier_exposure 0 they are ignored."""
    from trainer.model import build_model
    from trainer.train import fit_model

    Xtr, ytr, Xva, yva, Xneg, _ = _oe_data()
    tc = PlainTC(epochs=2, batch_size=16, outlier_exposure=0.7, negatives_ratio=0.5,
                 augment=AugmentConfig(shift_cm=2))
    for oe in (0.7, 0.0):
        model = build_model(4, TINY)
        seen: list[tuple[np.ndarray, np.ndarray]] = []
        real = model.train_on_batch

        def spy(x, y, sample_weight=None, _real=real, _seen=seen, **kw):
            _seen.append((np.asarray(y), np.asarray(sample_weight)))
            return _real(x, y, sample_weight=sample_weight, **kw)

        monkeypatch.setattr(model, "train_on_batch", spy)
        fit_model(model, Xtr, ytr, Xva, yva, 4, replace(tc, outlier_exposure=oe),
                  negatives=Xneg, log=None)
        Y = np.concatenate([s[0] for s in seen])
        W = np.concatenate([s[1] for s in seen])
        if oe == 0.0:
            assert Y.ndim == 1 and len(Y) == 2 * len(ytr)  # plain labels, no negatives
            continue
        uniform = np.all(np.isclose(Y, 0.25), axis=1)
        assert uniform.sum() == 2 * round(0.5 * len(ytr))
        assert np.allclose(W[uniform], 0.7 * np.mean(class_weights(ytr, 4)[ytr]))
        assert np.all(Y[~uniform].max(axis=1) == 1.0)  # known spectra keep one-hot targets


def test_outlier_exposure_flattens_the_answers_for_unseen_classes() -> None:
    """Trained with negatives, the model's top probability on *other* unseen-class spectra
    drops, while the known classes are still learnt."""
    from trainer.train import predict_probs

    Xtr, ytr, Xva, yva, Xneg, Xunseen = _oe_data()
    top = {}
    for oe in (0.0, 1.0):
        tc = PlainTC(epochs=30, batch_size=16, seed=1, outlier_exposure=oe,
                     augment=AugmentConfig(shift_cm=2), monitor="val_loss",
                     early_stop_patience=100)
        r = train_model(Xtr, ytr, Xva, yva, 4, TINY, tc, negatives=Xneg, log=None)
        assert np.mean(predict_probs(r.model, Xva).argmax(1) == yva) >= 0.9
        top[oe] = float(np.mean(predict_probs(r.model, Xunseen).max(1)))
    assert top[1.0] < top[0.0] - 0.15, top  # measured here: 0.78 -> 0.54 (2026-12-05)


def test_objectosphere_loss_pushes_known_lengths_up_and_negative_lengths_to_zero() -> None:
    """A known spectrum costs nothing at length >= xi and (xi - |f|)^2 / xi^2 below it; a
    negative costs |f|^2 / xi^2 at any length."""
    from trainer.train import objectosphere_loss

    loss = objectosphere_loss(4.0)
    f = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 2.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
    flag = np.array([[1.0], [1.0], [1.0], [0.0], [0.0]], np.float32)
    got = np.asarray(loss(flag, f))
    assert np.allclose(got, [1.0, 0.0, 0.25, 0.25, 25 / 16], atol=1e-6)


def test_objectosphere_takes_a_finite_weight_and_length() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="objectosphere must be a finite number >= 0"):
            TrainConfig(objectosphere=bad)
    with pytest.raises(ValueError, match="objectosphere_xi must be a finite number > 0"):
        TrainConfig(objectosphere_xi=0.0)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_objectosphere_flags_pseudo_labelled_spectra_as_known(monkeypatch) -> None:
    """With negatives, pseudo-labels and the objectosphere at once, every step's flag column
    is 1 for known and pseudo-labelled spectra and 0 for the negatives."""
    from trainer.model import build_model
    from trainer.train import PseudoLabelConfig, fit_model

    Xtr, ytr, Xva, yva, Xneg, Xunseen = _oe_data()
    tc = PlainTC(epochs=2, batch_size=16, outlier_exposure=0.5, objectosphere=1.0,
                 negatives_ratio=0.5, augment=AugmentConfig(shift_cm=2))
    model = build_model(4, TINY)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    import keras

    real = keras.Model.train_on_batch

    def spy(self, x, y, sample_weight=None, **kw):
        seen.append((np.asarray(y[0]), np.asarray(y[1])))
        return real(self, x, y, sample_weight=sample_weight, **kw)

    monkeypatch.setattr(keras.Model, "train_on_batch", spy)
    pseudo = PseudoLabelConfig(threshold=1e-6, ratio=0.5)  # every pseudo-label kept
    fit_model(model, Xtr, ytr, Xva, yva, 4, tc, negatives=Xneg, unlabelled=Xunseen,
              pseudo=pseudo, log=None)
    Y = np.concatenate([s[0] for s in seen])
    flag = np.concatenate([s[1] for s in seen])[:, 0]
    negative = np.all(np.isclose(Y, 0.25), axis=1)
    assert Y.shape[1] == 4 and set(np.unique(flag)) == {0.0, 1.0}
    assert np.array_equal(flag == 0.0, negative)
    n_pseudo = 2 * round(0.5 * len(ytr))
    assert len(Y) == 2 * len(ytr) + 2 * round(0.5 * len(ytr)) + n_pseudo


def _feature_lengths(model, X) -> np.ndarray:
    from trainer.model import features_model

    return np.linalg.norm(np.asarray(features_model(model).predict_on_batch(X)), axis=1)


def test_objectosphere_shortens_the_features_of_held_out_negative_spectra() -> None:
    """Same data, seed and outlier exposure: with the objectosphere loss the features of
    held-out spectra of the negatives' minerals get shorter relative to the known ones', and
    the known classes are still learnt. (On minerals no training touched, classes 12-15 of
    :func:`_oe_data`, it shortened them only a little here: 0.93 -> 0.88; the RRUFF
    figures are in docs/results.md section 4.)"""
    Xtr, ytr, Xva, yva, Xneg, Xunseen = _oe_data(held_out_spectra=True)
    ratio = {}
    for w in (0.0, 1.0):
        tc = PlainTC(epochs=30, batch_size=16, seed=1, outlier_exposure=1.0, objectosphere=w,
                     objectosphere_xi=4.0, augment=AugmentConfig(shift_cm=2),
                     monitor="val_loss", early_stop_patience=100)
        r = train_model(Xtr, ytr, Xva, yva, 4, TINY, tc, negatives=Xneg, log=None)
        from trainer.train import predict_probs

        assert np.mean(predict_probs(r.model, Xva).argmax(1) == yva) >= 0.9
        ratio[w] = float(np.mean(_feature_lengths(r.model, Xunseen))
                         / np.mean(_feature_lengths(r.model, Xva)))
    assert ratio[1.0] < 0.9 * ratio[0.0], ratio  # measured here: 0.88 -> 0.73 (2026-12-05)


def test_background_class_targets_the_extra_output(monkeypatch) -> None:
    """With a background class every step trains K + 1 outputs: the negatives' target is the
    background class alone, known and pseudo-labelled spectra have 0 on it."""
    import keras

    from trainer.model import build_model
    from trainer.train import PseudoLabelConfig, fit_model

    Xtr, ytr, Xva, yva, Xneg, Xunseen = _oe_data()
    tc = PlainTC(epochs=2, batch_size=16, outlier_exposure=0.5, background_class=True,
                 negatives_ratio=0.5, augment=AugmentConfig(shift_cm=2))
    seen: list[np.ndarray] = []
    real = keras.Model.train_on_batch

    def spy(self, x, y, sample_weight=None, **kw):
        seen.append(np.asarray(y))
        return real(self, x, y, sample_weight=sample_weight, **kw)

    monkeypatch.setattr(keras.Model, "train_on_batch", spy)
    pseudo = PseudoLabelConfig(threshold=1e-6, ratio=0.5)  # every pseudo-label kept
    res = fit_model(build_model(4, TINY), Xtr, ytr, Xva, yva, 4, tc, negatives=Xneg,
                    unlabelled=Xunseen, pseudo=pseudo, log=None)
    Y = np.concatenate(seen)
    assert Y.shape == (2 * len(ytr) + 4 * round(0.5 * len(ytr)), 5)
    background = Y[:, 4] == 1.0
    assert background.sum() == 2 * round(0.5 * len(ytr))  # the negatives, nothing else
    assert np.all(Y[background, :4] == 0.0)
    assert np.all(Y[~background, 4] == 0.0) and np.allclose(Y[~background].sum(axis=1), 1.0)
    w, b = res.background
    assert w.shape == (32,) and np.isfinite(b)  # TINY's head input: 32 features


def test_background_class_flags_unseen_classes_and_keeps_the_known_ones() -> None:
    """Trained with a background class, the unit's probability is higher on spectra of
    unseen classes (no training touched them) than on known validation spectra; the K-class
    model still learns the known classes, and without the option there is no unit."""
    from trainer.model import features_model
    from trainer.train import predict_probs

    Xtr, ytr, Xva, yva, Xneg, Xunseen = _oe_data()
    for bg in (False, True):
        tc = PlainTC(epochs=30, batch_size=16, seed=1, outlier_exposure=1.0,
                     background_class=bg, augment=AugmentConfig(shift_cm=2),
                     monitor="val_loss", early_stop_patience=100)
        r = train_model(Xtr, ytr, Xva, yva, 4, TINY, tc, negatives=Xneg, log=None)
        assert predict_probs(r.model, Xva).shape[1] == 4
        assert np.mean(predict_probs(r.model, Xva).argmax(1) == yva) >= 0.9
        if not bg:
            assert r.background is None
            continue
        w, b = r.background
        W, B = r.model.get_layer("probs").get_weights()

        def p_background(X, w=w, b=b, W=W, B=B, m=r.model):
            F = np.asarray(features_model(m).predict_on_batch(X), dtype=np.float64)
            L = np.concatenate([F @ W + B, (F @ w + b)[:, None]], axis=1)
            P = np.exp(L - L.max(axis=1, keepdims=True))
            return (P[:, -1] / P.sum(axis=1))

        known, unseen = p_background(Xva), p_background(Xunseen)
        # measured here: 0.38 on the unseen classes, 0.11 on known spectra (2026-12-05)
        assert unseen.mean() > known.mean() + 0.15, (unseen.mean(), known.mean())
        assert known.mean() < 0.2, (unseen.mean(), known.mean())


def test_background_view_starts_from_a_given_unit_and_shares_the_head() -> None:
    from trainer.model import build_model
    from trainer.train import background_unit, background_view, predict_probs

    model = build_model(4, TINY)
    w = np.linspace(-1, 1, 32).astype(np.float32)
    view = background_view(model, (w, 0.25))
    got_w, got_b = background_unit(view)
    assert np.array_equal(got_w, w) and got_b == 0.25
    X = synthetic(4, 2)[0]
    P = predict_probs(view, X)
    K = predict_probs(model, X)
    assert P.shape == (8, 5) and np.allclose(P.sum(axis=1), 1.0, atol=1e-5)
    # the view's known part is the model's softmax scaled by 1 - p(background)
    assert np.allclose(P[:, :4] / P[:, :4].sum(axis=1, keepdims=True), K, atol=1e-5)
    head = model.get_layer("probs")
    trained = {id(v) for v in view.trainable_variables}
    assert id(head.kernel) in trained and id(head.bias) in trained  # shared, and trained
    with pytest.raises(ValueError, match="vector of 32 weights, got shape \\(3,\\)"):
        background_view(model, (np.zeros(3), 0.0))
    with pytest.raises(ValueError, match="got shape \\(4, 8\\)"):
        background_view(model, (np.zeros((4, 8)), 0.0))


def test_background_class_keeps_the_unit_of_the_kept_epoch(monkeypatch) -> None:
    """The unit returned is the one of the epoch whose weights are kept, not the last
    epoch's: early stopping after worse epochs restores both."""
    import trainer.train as ttrain
    from trainer.model import build_model

    Xtr, ytr, Xva, yva, Xneg, _ = _oe_data()
    views: list = []
    real_view = ttrain.background_view
    monkeypatch.setattr(ttrain, "background_view",
                        lambda model, init=None: views.append(real_view(model, init)) or views[-1])
    per_epoch: list[tuple[np.ndarray, float]] = []
    tc = PlainTC(epochs=12, batch_size=16, seed=2, outlier_exposure=1.0,
                 background_class=True, learning_rate=0.05, monitor="val_loss",
                 early_stop_patience=2, augment=AugmentConfig(shift_cm=2))
    res = ttrain.fit_model(build_model(4, TINY), Xtr, ytr, Xva, yva, 4, tc, negatives=Xneg,
                           epoch_end=lambda m: per_epoch.append(ttrain.background_unit(views[0])),
                           log=None)
    assert res.best_epoch < res.epochs_run == len(per_epoch)  # it went on after its best
    kept = per_epoch[res.best_epoch - 1]
    assert np.array_equal(res.background[0], kept[0]) and res.background[1] == kept[1]
    assert not np.array_equal(res.background[0], per_epoch[-1][0])


def test_background_class_options() -> None:
    with pytest.raises(ValueError, match="background_class must be true or false"):
        TrainConfig(background_class="yes")
    with pytest.raises(ValueError, match="alternative open-set losses"):
        TrainConfig(background_class=True, objectosphere=0.5)
    legacy = TrainConfig().to_dict()
    del legacy["background_class"]
    assert TrainConfig.from_dict(legacy).background_class is False
    assert TrainConfig().background_class is False  # the default recipe has none


def test_a_background_class_run_writes_its_unit_and_fine_tunes_it(tmp_path, monkeypatch
                                                                     ) -> None:
    """train_run with a background class writes background_unit.json (read back by
    read_background_unit); the int8-aware fine-tune continues the float run's unit instead
    of starting a new one."""
    from types import SimpleNamespace

    import trainer.qat as tqat
    import trainer.run as trun
    import trainer.train as ttrain
    from tests.test_qat import SMALL
    from trainer.qat import quantization_aware_finetune
    from trainer.run import RunError, read_background_unit

    Xtr, ytr, Xva, yva, Xneg, _ = _oe_data()
    X = np.concatenate([Xtr, Xva, Xva])
    y = np.concatenate([ytr, yva, yva])
    split = np.array(["train"] * len(ytr) + ["val"] * len(yva) + ["test"] * len(yva))
    ds = SimpleNamespace(X=X, y=y, labels=["a", "b", "c", "d"], spectrum_ids=None)
    monkeypatch.setattr(trun, "start_run", lambda out, data, **kw: (Path(out), ds, split))
    monkeypatch.setattr(trun, "load_negatives",
                        lambda data, ds, log=None: (Xneg, {"negatives": ["n"]}))
    written: dict = {}
    monkeypatch.setattr(trun, "write_run", lambda out, *a, extra_files, **kw:
                        written.update(extra_files) or {"top1": 1.0, "top3": 1.0,
                                                        "shifts": {"15": {"top1": 1},
                                                                   "30": {"top1": 1}},
                                                        "n": 12})
    starts: list = []
    views: list = []

    def spy(*a, background_init=None, **kw):
        starts.append(background_init)
        return quantization_aware_finetune(*a, background_init=background_init, **kw)

    real_view = ttrain.background_view

    def view_spy(model, init=None):
        views.append(init)
        return real_view(model, init)

    monkeypatch.setattr(tqat, "quantization_aware_finetune", spy)
    monkeypatch.setattr(ttrain, "background_view", view_spy)
    trun.train_run(tmp_path / "r", trun.DataConfig(root=str(tmp_path)), SMALL,
                   PlainTC(epochs=2, batch_size=16, outlier_exposure=0.5,
                           background_class=True, qat_epochs=1), log=None,
                   report=lambda _: None)
    assert len(starts) == 1 and starts[0] is not None and starts[0][0].shape == (32,)
    # the float training starts a new unit, the fine-tune's view starts from the float one
    assert len(views) == 2 and views[0] is None
    assert np.array_equal(views[1][0], starts[0][0]) and views[1][1] == starts[0][1]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / trun.BACKGROUND_UNIT_FILE).write_text(written[trun.BACKGROUND_UNIT_FILE])
    w, b = read_background_unit(tmp_path / "r")
    assert w.shape == (32,) and np.isfinite(b)
    assert not np.allclose(w, starts[0][0])  # the fine-tune trained the unit further
    assert read_background_unit(tmp_path) is None  # a run without one
    for bad in ('{"kernel": [], "bias": 0}', '{"kernel": [1, 2], "bias": NaN}', '[1, 2]'):
        (tmp_path / "r" / trun.BACKGROUND_UNIT_FILE).write_text(bad)
        with pytest.raises(RunError, match="not a background unit") as e:
            read_background_unit(tmp_path / "r")
        assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.realdata
def test_a_run_records_its_negatives_and_the_evaluation_half(real_run) -> None:
    """The default recipe trains with outlier exposure: the run says which rare minerals were
    negatives and which were kept for the evaluation, and the two never share a mineral."""
    out, lines = real_run
    halves = json.loads((out / "unknown_minerals.json").read_text())
    neg, ev = set(halves["negatives"]), set(halves["evaluation"])
    assert neg and ev and not neg & ev
    assert not (neg | ev) & set(REAL_MINERALS)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["outlier_exposure"] == 0.5
    assert cfg["outlier_exposure"]["n_negative_spectra"] > 100
    assert any(line.startswith("outlier exposure: ") for line in lines)


def test_without_negatives_the_run_trains_and_says_so(tmp_path, monkeypatch) -> None:
    """A data set with no rare minerals (load_negatives raises DataError) is not an error:
    the run trains without outlier exposure and records why."""
    from types import SimpleNamespace

    import trainer.run as trun
    from ramanedge.errors import DataError

    X, y = synthetic(4, 12)
    split = np.array(["train"] * 6 + ["val"] * 3 + ["test"] * 3)[np.arange(48) % 12]
    ds = SimpleNamespace(X=X, y=y, labels=["a", "b", "c", "d"])
    monkeypatch.setattr(trun, "start_run", lambda out, data, **kw: (Path(out), ds, split))

    def no_negatives(data, ds, log=None):
        raise DataError("every mineral of synthetic has >= 8 spectra; nothing is held out")

    monkeypatch.setattr(trun, "load_negatives", no_negatives)
    monkeypatch.setattr(trun, "write_run", lambda out, *a, extra_config, **kw:
                        seen.update(extra_config) or {"top1": 1.0, "top3": 1.0,
                                                      "shifts": {"15": {"top1": 1},
                                                                 "30": {"top1": 1}},
                                                      "n": 12})
    seen: dict = {}
    said: list[str] = []
    trun.train_run(tmp_path / "r", trun.DataConfig(root=str(tmp_path)), TINY,
                   PlainTC(epochs=1, batch_size=16), log=None, report=said.append)
    assert seen["outlier_exposure"]["skipped"].startswith("every mineral")
    assert said[0].startswith("outlier exposure off: every mineral")


def test_crop_inside_spans_never_keeps_only_padding() -> None:
    """With each row's covered span given, the kept window lies inside that span and is at
    least CROP_MIN_FRACTION of it; a span of the whole grid is the plain crop, draw for draw."""
    from trainer.augment import CROP_MIN_FRACTION, crop_rows

    rng = np.random.default_rng(5)
    X = rng.random((300, 1392)) + 0.5
    lo = rng.integers(0, 600, size=300)
    hi = lo + rng.integers(560, 792, size=300)
    C = crop_rows(X, 1.0, np.random.default_rng(1), spans=(lo, hi))
    for c, x, a, b in zip(C, X, lo, hi, strict=True):
        keep = np.flatnonzero(c == x)
        assert a <= keep[0] and keep[-1] < b
        assert len(keep) >= CROP_MIN_FRACTION * (b - a) - 1
    # narrow spans and spans at the grid's ends stay inside too
    for a, b in ((0, 1), (50, 51), (1390, 1392), (1391, 1392), (0, 1392)):
        c = crop_rows(X[:5], 1.0, np.random.default_rng(3), spans=(np.full(5, a), np.full(5, b)))
        for ci, xi in zip(c, X[:5], strict=True):
            keep = np.flatnonzero(ci == xi)
            assert a <= keep[0] and keep[-1] < b
    full = (np.zeros(300, np.int64), np.full(300, 1392))
    assert np.array_equal(crop_rows(X, 0.6, np.random.default_rng(2), spans=full),
                          crop_rows(X, 0.6, np.random.default_rng(2)))


def test_the_moving_average_of_the_weights_is_opt_in_and_round_trips() -> None:
    """Rule (E) passed on the full data set but the average is not the default (a short run
    on a small data set collapsed with it); an opted-in config round-trips, few-label
    training drops it (measured without it) and a config without the key reads as off."""
    from trainer.ssl import few_label_train_config
    from trainer.train import PAPER_FAMILY_TRAIN, PAPER_TRAIN, RECIPES

    assert RECIPES["default"].ema == TrainConfig().ema == 0.0
    assert PAPER_TRAIN.ema == PAPER_FAMILY_TRAIN.ema == 0.0
    opted = replace(TrainConfig(), ema=0.99)
    assert few_label_train_config(opted).ema == 0.0
    assert TrainConfig.from_dict(opted.to_dict()).ema == 0.99
    legacy = opted.to_dict()
    del legacy["ema_warmup"]  # a run written before the warm-up: it averaged the old way,
    old = TrainConfig.from_dict(legacy)  # which is recorded and no longer trained
    assert old.ema == 0.99 and old.ema_warmup is False
    X, y = synthetic(3, 6)
    with pytest.raises(ValueError, match="no longer trained"):
        train_model(X, y, X, y, 3, TINY, replace(old, teachers=0, distill=0.0), log=None)
    del legacy["ema"]
    assert TrainConfig.from_dict(legacy).ema == 0.0
    assert TrainConfig.from_dict(legacy).ema_warmup is True  # no average: the default


def test_the_moving_average_weighs_the_trained_steps_alone() -> None:
    """The average warms up and is bias-corrected: after one step it is that step's weights,
    after two the decays' mix of w1 and w2, nothing of the initial weights (uncorrected, a
    short run kept mostly them and collapsed: rule (E)). One step an epoch, a fixed schedule
    (final weights kept); the plain runs give w1 and w2 (the same seed: the same steps)."""
    from trainer.train import ema_decay, ema_read

    X, y = synthetic(3, 6)
    d = 0.9

    def run(epochs: int, ema: float) -> list[np.ndarray]:
        tc = PlainTC(epochs=epochs, batch_size=len(y), seed=2, ema=ema)
        return train_model(X, y, X[:3], y[:3], 3, TINY, tc, schedule=[1e-2] * epochs,
                           log=None).model.get_weights()

    w1, w2 = run(1, 0.0), run(2, 0.0)
    assert not np.allclose(w1[0], w2[0])  # the second step moved the weights
    for got, a in zip(run(1, d), w1, strict=True):
        np.testing.assert_allclose(got, a, rtol=1e-5, atol=1e-6)
    d0, d1 = ema_decay(d, 0), ema_decay(d, 1)
    assert (d0, d1) == pytest.approx((0.1, 2 / 11))  # the warm-up: the recent steps count
    for got, a, b in zip(run(2, d), w1, w2, strict=True):
        want = ((1 - d0) * d1 * a + (1 - d1) * b) / (1 - d0 * d1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ema_decay(0.99, 5000) == 0.99 and ema_decay(0.99, 100) < 0.99
    # the read itself: a constant sequence averages to itself at any step count
    w = np.linspace(-1, 1, 7, dtype=np.float32)
    acc, keep = np.zeros_like(w), 1.0
    for t in range(6):
        dt = ema_decay(d, t)
        acc, keep = dt * acc + (1 - dt) * w, keep * dt
        np.testing.assert_allclose(ema_read([acc], 1 - keep)[0], w, rtol=1e-6)
    with pytest.raises(ValueError, match="at least one step"):
        ema_read([acc], 0.0)
