"""The network refit on training + validation (``ramanedge refit``, issue 11)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from trainer.run import RunError, refit_schedules

REAL_MINERALS = ("Calcite", "Corundum", "Diopside", "Forsterite", "Quartz", "Albite")


def _teacher(lr: list[float], best: int) -> dict:
    return {"seed": 1, "epochs": len(lr), "best_epoch": best, "lr": lr, "val_top1": 0.5}


def test_schedules_follow_each_network_up_to_the_epoch_it_kept() -> None:
    config = {"teachers": [_teacher([1e-3, 1e-3, 7e-4, 7e-4], 3), _teacher([1e-3, 5e-4], 1)],
              "qat": {"epochs": 4, "best_epoch": 2, "float_best_epoch": 3}}
    history = {"lr": [1e-3, 1e-3, 7e-4, 4.9e-4, 4.9e-4], "qat_lr": [1e-4, 1e-4, 7e-5, 7e-5]}
    # after a fine-tune the student's kept epoch is the qat summary's float_best_epoch
    s = refit_schedules(config, history, {"best_epoch": 5})
    assert s == {"teachers": [[1e-3, 1e-3, 7e-4], [1e-3]], "student": [1e-3, 1e-3, 7e-4],
                 "qat": [1e-4, 1e-4]}
    # no int8-aware fine-tune (or one skipped): the student's kept epoch is metrics'
    plain = refit_schedules({"qat": {"skipped": "why"}}, {"lr": [1e-3, 5e-4, 5e-4]},
                            {"best_epoch": 2})
    assert plain == {"teachers": [], "student": [1e-3, 5e-4], "qat": None}


@pytest.mark.parametrize("config, history, match", [
    ({"teachers": [{"seed": 1, "epochs": 5, "val_top1": 0.5}]}, {"lr": [1e-3]},
     "teacher 1 has no recorded learning rates"),
    ({"teachers": ["runs/t0"]}, {"lr": [1e-3]}, "teacher runs"),
    ({"teachers": [_teacher([1e-3], 2)]}, {"lr": [1e-3]}, "teacher 1 kept epoch 2 of 1"),
    ({}, {"lr": []}, "holds 0 learning rates"),
    ({"qat": {"best_epoch": 3, "float_best_epoch": 1}}, {"lr": [1e-3], "qat_lr": [1e-4]},
     "fine-tune kept epoch 3 of 1"),
])
def test_schedules_that_cannot_be_followed_are_refused(config, history, match) -> None:
    with pytest.raises(RunError, match=match):
        refit_schedules(config, history, {"best_epoch": 1}, where="base")


def test_malformed_base_files_are_one_run_error() -> None:
    with pytest.raises(RunError, match="do not record a schedule"):
        refit_schedules({"qat": {"best_epoch": 1}}, {"lr": [1e-3]}, {}, where="base")
    with pytest.raises(RunError, match="do not record a schedule"):
        refit_schedules({}, {"lr": ["fast"]}, {"best_epoch": "one"}, where="base")


@pytest.mark.parametrize("refit_validation", [True, False])
def test_the_refit_fine_tune_trains_on_what_the_refit_fits_and_calibrates_as_quantize_does(
        monkeypatch, refit_validation) -> None:
    """``int8_finetune(schedule=...)``: the fine-tune steps on training + validation spectra
    with the schedule (a refit with a calibration holdout, ``refit_validation=False``, whose
    split already marks what it trains on as training: on the training part alone, the
    held-out validation part only logged), and its int8 grids come from the draw
    ``ramanedge quantize`` makes from the training part alone."""
    from types import SimpleNamespace

    import trainer.qat as tq
    from ramanedge.splits import DEFAULT_CALIB_SIZE, calibration_indices
    from trainer.model import FLIGHT_LATE_POOL
    from trainer.run import int8_finetune
    from trainer.train import TrainConfig

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 60)
    split = rng.choice(np.array(["train", "val", "test"]), size=y.size, p=[0.6, 0.2, 0.2])
    ds = SimpleNamespace(X=rng.random((y.size, 5)).astype(np.float32), y=y,
                         labels=["a", "b", "c", "d"])
    seen = {}

    def fake(float_model, X, yy, Xv, yv, k, mc, tc, **kw):
        seen.update(X=X, y=yy, Xv=Xv, **kw)
        res = SimpleNamespace(history={"lr": [1e-4]}, seconds=0.0, epochs_run=1, best_epoch=1)
        return res, mc, {"epochs": 1, "best_epoch": 1, "val_top1_start": 0.0,
                         "val_top1_best": 0.0, "seconds": 0.0}

    monkeypatch.setattr(tq, "quantization_aware_finetune", fake)
    result = SimpleNamespace(model=None, background=None, history={"lr": [1e-3]}, seconds=0.0,
                             teachers=[], labels=None, best_epoch=1, epochs_run=1)
    int8_finetune(result, ds, split, FLIGHT_LATE_POOL, TrainConfig(), schedule=[1e-4, 5e-5],
                  refit_validation=refit_validation, log=None)
    tr, va = split == "train", split == "val"
    fit = tr | va if refit_validation else tr
    assert np.array_equal(seen["X"], ds.X[fit]) and np.array_equal(seen["y"], y[fit])
    assert np.array_equal(seen["Xv"], ds.X[va])
    assert seen["schedule"] == [1e-4, 5e-5]
    want = ds.X[tr][calibration_indices(y[tr], None, DEFAULT_CALIB_SIZE)]
    assert np.array_equal(seen["calibration"], want)


def test_the_calibration_holdout_keeps_whole_specimens_of_the_validation_part() -> None:
    from trainer.run import refit_holdout

    split = np.array(["train"] * 4 + ["val"] * 12 + ["test"] * 4)
    groups = np.array([f"t{i}" for i in range(4)] + [f"v{i // 2}" for i in range(12)]
                      + [f"x{i}" for i in range(4)])  # 6 validation specimens, 2 spectra each
    held = refit_holdout(split, groups, 1 / 3, seed=0)
    assert held.sum() == 4 and np.all(split[held] == "val")  # 2 of 6 specimens, whole
    assert set(groups[held]).isdisjoint(groups[(split == "val") & ~held])
    assert np.array_equal(held, refit_holdout(split, groups, 1 / 3, seed=0))  # seeded
    assert any(not np.array_equal(held, refit_holdout(split, groups, 1 / 3, seed=s))
               for s in range(1, 6))
    # at least one specimen held out, at least one left to train on
    assert len(set(groups[refit_holdout(split, groups, 0.01)])) == 1
    assert len(set(groups[refit_holdout(split, groups, 0.99)])) == 5
    with pytest.raises(RunError, match="at least 2 validation specimens"):
        refit_holdout(np.array(["train", "val", "val"]), np.array(["a", "b", "b"]), 0.5)
    with pytest.raises(RunError, match="one specimen per spectrum"):
        refit_holdout(split, groups[:-1], 0.5)
    # rounded half up: 3 of 6 specimens at 0.5, 2 (not 1) at 0.25
    assert len(set(groups[refit_holdout(split, groups, 0.5)])) == 3
    assert len(set(groups[refit_holdout(split, groups, 0.25)])) == 2
    # a split with a validation specimen's spectra in training (per spectrum) holds out
    # spectra, as it draws its test ones: 4 of its 11 validation spectra at 1/3, whichever
    # specimen they belong to
    from trainer.run import holdout_unit

    mixed = split.copy()
    mixed[4] = "train"  # one spectrum of specimen v0 moves to training
    assert holdout_unit(split, groups) == "specimen" and holdout_unit(mixed, groups) == "spectrum"
    held = refit_holdout(mixed, groups, 1 / 3, seed=0)
    assert held.sum() == 4 and np.all(mixed[held] == "val")
    assert any(set(groups[refit_holdout(mixed, groups, 1 / 3, seed=s)])
               & set(groups[(mixed == "val") & ~refit_holdout(mixed, groups, 1 / 3, seed=s)])
               for s in range(6))  # a specimen split between held-out and absorbed
    with pytest.raises(RunError, match="at least 2 validation spectra"):
        refit_holdout(np.array(["train", "val", "test"]), np.array(["a", "a", "b"]), 0.5)


def test_the_automatic_calibration_holdout_needs_specimens_kept_apart() -> None:
    from trainer.run import DEFAULT_CALIBRATION_HOLDOUT, auto_calibration_holdout

    split = np.array(["train"] * 4 + ["val"] * 4 + ["test"] * 2)
    groups = np.array(["t0", "t1", "t2", "t3", "v0", "v0", "v1", "v2", "x0", "x1"])
    assert auto_calibration_holdout(split, groups) == (DEFAULT_CALIBRATION_HOLDOUT, None)
    # a validation specimen with a spectrum in training (a per-spectrum split): none
    mixed = groups.copy()
    mixed[0] = "v1"
    share, why = auto_calibration_holdout(split, mixed)
    assert share == 0.0 and "per-spectrum split" in why
    # one validation specimen: nothing could be held out and still absorbed
    one = np.where(split == "val", "v0", groups)
    share, why = auto_calibration_holdout(split, one)
    assert share == 0.0 and "2 validation specimens, the split has 1" in why


def test_cli_train_holds_out_half_for_the_default_recipe_only(tmp_path, monkeypatch) -> None:
    """``ramanedge train``: unset, the default recipe's holdout is automatic (``None``,
    resolved on the split) and the paper's recipes keep none; a given share is passed on."""
    from click.testing import CliRunner

    import trainer.run
    from trainer.cli import train

    seen = []
    monkeypatch.setattr(trainer.run, "train_run",
                        lambda out, data, mc, tc, **kw: seen.append(kw["calibration_holdout"]))
    for args in ([], ["--recipe", "paper"], ["--recipe", "paper-family"],
                 ["--calibration-holdout", "0.25"], ["--recipe", "paper",
                                                     "--calibration-holdout", "0.5"]):
        res = CliRunner().invoke(train, ["--data", str(tmp_path), "-q", *args, "--out",
                                         str(tmp_path / f"r{len(seen)}")])
        assert res.exit_code == 0, res.output
    assert seen == [None, 0.0, 0.0, 0.25, 0.5]


def test_a_run_given_teacher_runs_or_a_backbone_holds_nothing_out_by_default(
        tmp_path, monkeypatch) -> None:
    """``train_run(calibration_holdout=None)`` with ``teachers`` or a ``backbone``: none
    (``refit_run`` refuses such runs), decided before the split is drawn."""
    from types import SimpleNamespace

    import trainer.run as tr

    seen = []
    monkeypatch.setattr(tr, "auto_calibration_holdout",
                        lambda split, groups: seen.append("auto") or (0.5, None))
    split = np.array(["train", "val", "val", "test"])
    ds = SimpleNamespace(labels=["a"], y=np.zeros(4, int), X=np.zeros((4, 3)), paths=[""] * 4)
    monkeypatch.setattr(tr, "start_run", lambda *a, **k: (tmp_path, ds, split))
    monkeypatch.setattr(tr, "teacher_probabilities",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("teachers read")))
    with pytest.raises(RuntimeError, match="teachers read"):
        tr.train_run(tmp_path / "r", tr.DataConfig(root="x"), teachers=("t",), log=None,
                     calibration_holdout=None)
    assert seen == []  # never drawn: no holdout with teacher runs


@pytest.mark.parametrize("share", [1.0, -0.1, "a third"])
def test_a_holdout_outside_zero_to_one_is_refused_before_anything(tmp_path, share) -> None:
    from trainer.run import refit_run

    with pytest.raises(RunError, match=r"holdout must be a share .* in \[0, 1\)"):
        refit_run(tmp_path / "nope", tmp_path / "out", holdout=share, log=None)
    assert not (tmp_path / "out").exists()


def test_cli_refit_holdout_out_of_range_is_a_usage_error(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "refit", tmp_path / "nope", "--out", tmp_path / "r",
                           "--calibration-holdout", "1")
    assert code == 2 and "--calibration-holdout" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_cli_refit_of_a_missing_run_is_one_line(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "refit", tmp_path / "nope", "--out", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_flight_eval_refit_needs_its_base_run(tmp_path) -> None:
    import click

    from benchmarks.flight_eval import evaluate_split

    with pytest.raises(click.ClickException, match="run --recipe flight-early-pool into"):
        evaluate_split(tmp_path / "data", "grouped", 0, "flight-early-pool-refit", tmp_path,
                       log=lambda _m: None)


# ------------------------------------------------------------------ real spectra


@pytest.fixture(scope="module")
def refit_pair(tmp_path_factory, shared_data_root):
    """A tiny default-recipe run (2 teachers, outlier exposure, int8-aware fine-tune, a
    plateau that lowers the rate) on 6 real minerals, and its refit, with every
    ``train_model`` call of the refit recorded: ``(base, refit, calls)``."""
    from dataclasses import replace

    import trainer.train as tt
    from trainer.model import FLIGHT_LATE_POOL
    from trainer.run import DataConfig, refit_run, train_run
    from trainer.train import TrainConfig

    root = tmp_path_factory.mktemp("refit")
    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    tc = TrainConfig(epochs=5, teachers=2, qat_epochs=2, early_stop_patience=3, lr_patience=1,
                     lr_factor=0.5)
    train_run(root / "base", data, replace(FLIGHT_LATE_POOL, early_pool=True), tc, log=None)
    calls: list[dict] = []
    real = tt.train_model
    mp = pytest.MonkeyPatch()

    def spy(X, y, Xv, yv, k, mc=None, tc=None, **kw):
        calls.append({"n": len(X), "seed": tc.seed, "act_quant": mc.act_quant,
                      "schedule": kw.get("schedule")})
        return real(X, y, Xv, yv, k, mc, tc, **kw)

    mp.setattr(tt, "train_model", spy)
    try:
        refit_run(root / "base", root / "refit", log=None)
    finally:
        mp.undo()
    return root / "base", root / "refit", calls


@pytest.mark.slow
@pytest.mark.realdata
def test_refit_trains_every_network_on_train_and_val_with_the_base_schedules(refit_pair
                                                                             ) -> None:
    import keras

    from trainer.run import load_run

    base, refit, calls = refit_pair
    bcfg = json.loads((base / "config.json").read_text())
    rcfg = json.loads((refit / "config.json").read_text())
    bhist = json.loads((base / "history.json").read_text())
    rhist = json.loads((refit / "history.json").read_text())
    n_train, n_val = bcfg["data"]["n_train"], bcfg["data"]["n_val"]
    # the same split (test untouched), recorded as trained on both parts
    assert rcfg["split_sha256"] == bcfg["split_sha256"]
    assert (refit / "split.csv").read_text() == (base / "split.csv").read_text()
    assert rcfg["refit"]["trained_on"] == ["train", "val"]
    assert rcfg["refit"]["n_fit"] == n_train + n_val
    # every network saw training + validation, with its base counterpart's rates
    teachers = [c for c in calls if c["seed"] != 0]
    (student,) = [c for c in calls if c["seed"] == 0 and not c["act_quant"]]
    (qat,) = [c for c in calls if c["act_quant"]]
    assert [c["n"] for c in calls] == [n_train + n_val] * 4
    want = [t["lr"][:t["best_epoch"]] for t in bcfg["teachers"]]
    assert [c["schedule"] for c in teachers] == want
    assert [t["epochs"] for t in rcfg["teachers"]] == [len(w) for w in want]
    best = bcfg["qat"]["float_best_epoch"]
    assert student["schedule"] == bhist["lr"][:best] and rhist["lr"] == bhist["lr"][:best]
    assert qat["schedule"] == bhist["qat_lr"][:bcfg["qat"]["best_epoch"]]
    assert len(set(bhist["lr"])) > 1  # the plateau moved the rate: a real schedule followed
    # the base network is kept, unchanged, for the calibrations; the refit's own differs
    kept = keras.saving.load_model(refit / "model_base.keras", compile=False)
    r_base = load_run(base)
    assert all(np.array_equal(a, b) for a, b in zip(kept.get_weights(),
                                                    r_base.model.get_weights(), strict=True))
    r_refit = load_run(refit)
    assert not all(np.array_equal(a, b) for a, b in zip(r_refit.model.get_weights(),
                                                        r_base.model.get_weights(), strict=True))
    assert json.loads((refit / "metrics.json").read_text())["val_in_training"] is True


@pytest.mark.slow
@pytest.mark.realdata
def test_refit_artifact_is_calibrated_on_the_base_networks_validation_answers(refit_pair,
                                                                              tmp_path) -> None:
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run

    base, refit, _ = refit_pair
    cfg = QuantizeConfig(allow_accuracy_drop=True, exemplars_per_class=DEFAULT_PER_CLASS)
    quantize_run(base, tmp_path / "b", config=cfg)
    quantize_run(refit, tmp_path / "r", config=cfg)
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    mr = json.loads((tmp_path / "r" / "manifest.json").read_text())
    for section in ("unknown", "conformal"):
        by = mr[section].pop("calibrated_by")
        assert "model_base.keras" in by and "calibrated_by" not in mb[section]
        assert mr[section] == mb[section]  # the same export of the same network
    assert mr["training"]["refit"]["trained_on"] == ["train", "val"]
    # a different network in the artifact: the refit's own
    assert mr["files"]["model.tflite"]["sha256"] != mb["files"]["model.tflite"]["sha256"]
    # its figures on validation are marked in-sample, and the rover loads it as any artifact
    assert mr["metrics"]["val_in_training"] is True and "val_in_training" not in mb["metrics"]
    assert "in-sample" in mr["training"]["refit"]["calibration_file"]
    from edge_runtime.classify import Classifier
    from trainer.run import load_run

    clf = Classifier.from_dir(tmp_path / "r")
    assert clf.conformal_rule["threshold"] == mb["conformal"]["threshold"]
    X, _ = load_run(refit, load_model=False).subset("test")
    p = clf.classify_grid(X[0])
    assert p.set and p.set[0] == p.label


@pytest.fixture(scope="module")
def holdout_refit(tmp_path_factory, shared_data_root):
    """A tiny default-recipe run (as :func:`refit_pair`'s, one teacher) trained with half of its
    validation specimens kept out of its choices (``calibration_holdout=0.5``), and its refit
    holding out the same half, with every ``train_model`` call of each recorded:
    ``(base, refit, base_calls, refit_calls)``."""
    from dataclasses import replace

    import trainer.train as tt
    from trainer.model import FLIGHT_LATE_POOL
    from trainer.run import DataConfig, refit_run, train_run
    from trainer.train import TrainConfig

    root = tmp_path_factory.mktemp("holdout")
    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    tc = TrainConfig(epochs=5, teachers=1, qat_epochs=2, early_stop_patience=3, lr_patience=1,
                     lr_factor=0.5)
    base_calls: list[dict] = []
    calls: list[dict] = []
    real = tt.train_model
    mp = pytest.MonkeyPatch()

    def spy(into):
        def train_model(X, y, Xv, yv, k, mc=None, tc=None, **kw):
            into.append({"n": len(X), "n_val": len(Xv)})
            return real(X, y, Xv, yv, k, mc, tc, **kw)
        return train_model

    try:
        mp.setattr(tt, "train_model", spy(base_calls))
        train_run(root / "base", data, replace(FLIGHT_LATE_POOL, early_pool=True), tc,
                  log=None, calibration_holdout=0.5)
        mp.setattr(tt, "train_model", spy(calls))
        # holdout=None (the CLI's default): the share and seed the base kept out
        refit_run(root / "base", root / "refit", log=None, holdout=None)
    finally:
        mp.undo()
    return root / "base", root / "refit", base_calls, calls


@pytest.mark.slow
@pytest.mark.realdata
def test_a_calibration_holdout_base_chooses_nothing_on_the_specimens_its_refit_holds_out(
        holdout_refit, tmp_path, capsys) -> None:
    from dataclasses import replace

    from benchmarks.flight_eval import trained_with
    from ramanedge.splits import specimen_groups
    from trainer.run import load_run, refit_holdout, refit_run

    base, refit, base_calls, _ = holdout_refit
    rb = load_run(base, load_model=False)
    groups = specimen_groups(rb.dataset)
    held = refit_holdout(rb.split, groups, 0.5, seed=0)
    va = rb.split == "val"
    assert 0 < held.sum() < va.sum()
    # every network (teacher, student, fine-tune) trained on the training part and chose
    # its epochs on the validation specimens the refit will absorb, never the held-out ones
    assert [c["n"] for c in base_calls] == [int((rb.split == "train").sum())] * 3
    assert [c["n_val"] for c in base_calls] == [int((va & ~held).sum())] * 3
    # the held-out specimens stay in the run's validation part (split.csv, its figures)
    cfg = json.loads((base / "config.json").read_text())
    assert cfg["data"]["n_val"] == int(va.sum())
    assert cfg["calibration_holdout"] == {"share": 0.5, "seed": 0, "unit": "specimen",
                                          "spectra": int(held.sum()),
                                          "specimens": len(set(groups[held]))}
    # the evaluation driver tells such a run from one without a holdout
    mc = replace(rb.model_config, act_quant=False)
    assert trained_with(base, mc, rb.train_config, holdout=0.5)
    assert not trained_with(base, mc, rb.train_config)
    # its refit must hold out what it kept out: another share or seed is refused, unwritten
    for kw in ({"holdout": 1 / 3}, {"holdout": 0.5, "holdout_seed": 1}):
        with pytest.raises(RunError, match="kept 0.5 of its validation specimens"):
            refit_run(base, tmp_path / "other", log=None, **kw)
        assert not (tmp_path / "other").exists()
    # the CLI: a share out of range, or with few-label training, is one line
    code, _, err = run_cli(capsys, "train", "--data", tmp_path, "--calibration-holdout", "1",
                           "--out", tmp_path / "t")
    assert code == 2 and "--calibration-holdout" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--data", tmp_path, "--calibration-holdout", "0.5",
                           "--labelled-fraction", "0.5", "--out", tmp_path / "t")
    assert code == 2 and "--calibration-holdout is not used by few-label" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "t").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_a_holdout_refit_trains_without_its_held_out_specimens_and_calibrates_on_them(
        holdout_refit, tmp_path) -> None:
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.splits import specimen_groups
    from trainer.run import load_run, refit_holdout

    base, refit, _, calls = holdout_refit
    rb, rr = load_run(base, load_model=False), load_run(refit, load_model=False)
    groups = specimen_groups(rb.dataset)
    held = refit_holdout(rb.split, groups, 0.5, seed=0)
    # the refit's split: test untouched, the absorbed validation specimens as training,
    # the held-out ones as its validation part (no specimen on both sides)
    assert np.array_equal(rr.split == "test", rb.split == "test")
    assert np.array_equal(rr.split == "val", held)
    assert np.array_equal(rr.split == "train", (rb.split == "train")
                          | ((rb.split == "val") & ~held))
    assert set(groups[held]).isdisjoint(groups[rr.split == "train"])
    # every network (teacher, student, fine-tune) trained without the held-out spectra
    n_fit = int((rr.split == "train").sum())
    assert [c["n"] for c in calls] == [n_fit] * 3
    assert [c["n_val"] for c in calls] == [int(held.sum())] * 3
    cfg = json.loads((refit / "config.json").read_text())
    info = cfg["refit"]["holdout"]
    assert info["share"] == 0.5 and info["seed"] == 0 and info["spectra"] == int(held.sum())
    assert info["base_chose_without"] is True  # its base chose nothing on them either
    assert info["specimens"] == len(set(groups[held])) and cfg["refit"]["n_fit"] == n_fit
    # no base network kept or needed: its validation figures are held-out ones
    assert not (refit / "model_base.keras").exists()
    assert "val_in_training" not in json.loads((refit / "metrics.json").read_text())
    cfg_q = QuantizeConfig(allow_accuracy_drop=True, exemplars_per_class=DEFAULT_PER_CLASS)
    quantize_run(refit, tmp_path / "r", config=cfg_q)
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert "calibrated_by" not in m["unknown"] and "calibrated_by" not in m["conformal"]
    assert "val_in_training" not in m["metrics"]
    assert m["training"]["refit"]["holdout"] == info
    assert m["training"]["refit"]["calibration_file"].startswith("held out: validation specimens")
    assert cfg["refit"]["trained_on"] == ["train", "val without the held-out specimens"]
    assert m["training"]["n_val"] == int(held.sum())
    # a holdout refit is a refit: it is not refitted again
    from trainer.run import refit_run

    with pytest.raises(RunError, match="is itself a refit"):
        refit_run(refit, tmp_path / "again", log=None)


@pytest.mark.slow
@pytest.mark.realdata
def test_refit_refusals(refit_pair, tmp_path, capsys) -> None:
    from trainer.run import refit_run

    base, refit, _ = refit_pair
    # a refit is not refitted again
    code, _, err = run_cli(capsys, "refit", refit, "--out", tmp_path / "again")
    assert code == 2 and "is itself a refit" in err and len(err.strip().splitlines()) == 1
    # a run that predates recorded teacher rates: train it again, says the error
    old = tmp_path / "old"
    shutil.copytree(base, old)
    cfg = json.loads((old / "config.json").read_text())
    for t in cfg["teachers"]:
        del t["lr"]
    (old / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(capsys, "refit", old, "--out", tmp_path / "r2")
    assert code == 2 and "no recorded learning rates" in err and "train the base run again" in err
    assert not (tmp_path / "r2").exists()
    # an existing output folder is kept
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    code, _, err = run_cli(capsys, "refit", base, "--out", tmp_path / "busy")
    assert code == 2 and (tmp_path / "busy" / "keep.txt").read_text() == "x"
    # the base itself as --out: refused before anything is touched
    with pytest.raises(RunError, match="is the base run itself"):
        refit_run(base, base, overwrite=True, log=None)
    assert (base / "model.keras").is_file()
    # runs a refit cannot follow
    for name, edit, match in (
            ("few", lambda p, c: (p / "labelled.csv").write_text("path,labelled\n"),
             "few-label"),
            ("bb", lambda p, c: c.update(backbone={"folder": "x"}), "pretrained backbone"),
            ("nt", lambda p, c: c["train"].update(teachers=3), "2 teachers recorded"),
            # a run written before the moving average warmed up (no ema_warmup key)
            ("ema", lambda p, c: (c["train"].update(ema=0.99), c["train"].pop("ema_warmup")),
             "averaged its weights as before")):
        other = tmp_path / name
        shutil.copytree(base, other)
        cfg = json.loads((other / "config.json").read_text())
        edit(other, cfg)
        (other / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(RunError, match=match):
            refit_run(other, tmp_path / f"{name}-out", log=None)
        assert not (tmp_path / f"{name}-out").exists()
    # nor does a refit teach a student of its split: it saw the validation spectra
    from trainer.run import DataConfig, load_run, train_run

    cfg = json.loads((base / "config.json").read_text())
    data = DataConfig(root=cfg["data"]["root"], minerals=REAL_MINERALS,
                      cache_dir=cfg["data"]["cache_dir"])
    with pytest.raises(RunError, match="is a refit"):
        train_run(tmp_path / "student", data, load_run(base, load_model=False).model_config,
                  teachers=(refit,), log=None)
    # a refit run whose base network went missing cannot calibrate its artifact
    broken = tmp_path / "broken"
    shutil.copytree(refit, broken)
    (broken / "model_base.keras").unlink()
    code, _, err = run_cli(capsys, "quantize", broken, "--out", tmp_path / "art")
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "without its base network model_base.keras" \
        in errors[0] and "Traceback" not in err
    assert not (tmp_path / "art").exists()
