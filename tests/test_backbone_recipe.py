"""The default recipe from a pretrained backbone (issue 11's accuracy from every RRUFF
spectrum): the student and every teacher it trains start from the backbone's weights, the
run records which backbone, and a backbone whose corpus held the split's validation or test
specimens is refused before anything is written."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

import trainer.train as tt
from trainer.model import ModelConfig, build_model
from trainer.train import TrainConfig

TINY = ModelConfig(arch="paper", pool_size=16, dense_units=16)
K = 3


def _spectra(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    X = rng.random((n, 1392)).astype(np.float32) * 0.1
    X[np.arange(n), 300 + 200 * y] = 1.0  # one band per class
    return X, y


def _distinct_backbone() -> dict[str, list[np.ndarray]]:
    """Backbone weights no seeded initialisation gives: every value 0.01 x its position."""
    from trainer.contrastive import backbone_layers

    return {layer.name: [np.full_like(w, 0.01 * (i + 1)) for i, w in
                         enumerate(layer.get_weights())]
            for layer in backbone_layers(build_model(K, TINY))}


def _record_starts(monkeypatch) -> list[dict[str, list[np.ndarray]]]:
    """The weights of every model ``fit_model`` is handed (teachers and student), by layer."""
    starts: list[dict[str, list[np.ndarray]]] = []
    real = tt.fit_model

    def fit(model, *a, **kw):
        starts.append({layer.name: [np.array(w) for w in layer.get_weights()]
                       for layer in model.layers if layer.weights})
        return real(model, *a, **kw)

    monkeypatch.setattr(tt, "fit_model", fit)
    return starts


def test_student_and_teachers_start_from_the_backbone(monkeypatch) -> None:
    X, y = _spectra(24, 0)
    Xv, yv = _spectra(9, 1)
    backbone = _distinct_backbone()
    tc = TrainConfig(epochs=1, teachers=2, distill=0.5, qat_epochs=0, outlier_exposure=0.0)
    starts = _record_starts(monkeypatch)
    res = tt.train_model(X, y, Xv, yv, K, TINY, tc, backbone=backbone, log=None)
    assert len(starts) == 3 and len(res.teachers) == 2  # two teachers, then the student
    head = [name for name in starts[0] if name not in backbone]
    assert head  # the softmax layer is not part of the backbone
    for start in starts:
        for name, weights in backbone.items():
            for got, want in zip(start[name], weights, strict=True):
                assert np.array_equal(got, want), name
    # without a backbone no model starts from those weights, and each model's head starts
    # exactly where it starts with one (the seeded initialisation, same random stream)
    with_backbone = list(starts)
    starts.clear()
    tt.train_model(X, y, Xv, yv, K, TINY, tc, log=None)
    assert len(starts) == 3
    name = next(iter(backbone))
    assert all(not np.array_equal(s[name][0], backbone[name][0]) for s in starts)
    for a, b in zip(with_backbone, starts, strict=True):
        for layer in head:
            for wa, wb in zip(a[layer], b[layer], strict=True):
                assert np.array_equal(wa, wb), layer
    with pytest.raises(ValueError, match="pass one"):
        tt.train_model(X, y, Xv, yv, K, TINY, tc, backbone=backbone,
                       init_weights=build_model(K, TINY).get_weights(), log=None)


@pytest.mark.realdata
def test_train_run_records_its_backbone_and_refuses_a_leaky_one(tmp_path, monkeypatch,
                                                                shared_data_root) -> None:
    from ramanedge.fsutil import sha256_file
    from tests.test_pretrain import small_real_data_and_clean_backbone
    from trainer.pretrain import save_backbone
    from trainer.run import DataConfig, train_run
    from trainer.ssl import SSLOptionError

    data, weights, meta = small_real_data_and_clean_backbone(tmp_path, shared_data_root)
    # weights no seeded initialisation gives, to see where each network starts
    weights = {name: [np.full_like(w, 0.01 * (i + 1)) for i, w in enumerate(ws)]
               for name, ws in weights.items()}
    good = save_backbone(tmp_path / "good", weights, meta=meta)
    tc = partial(TrainConfig, qat_epochs=0, outlier_exposure=0.0)(epochs=1, teachers=1)
    starts = _record_starts(monkeypatch)
    run = train_run(tmp_path / "run", data, TINY, tc, backbone=good, log=None)
    assert len(starts) == 2  # the teacher, then the student: both from the backbone
    for start in starts:
        for name, ws in weights.items():
            assert all(np.array_equal(a, b) for a, b in zip(start[name], ws, strict=True))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone"]["sha256"] == sha256_file(good / "backbone.npz")
    assert cfg["backbone"]["folder"] == str(good.resolve())
    # the same weights, but the corpus kept one validation/test specimen: refused, no run
    leaky = {**meta, "excluded_ids": meta["excluded_ids"][1:]}
    bad = save_backbone(tmp_path / "bad", weights, meta=leaky)
    with pytest.raises(SSLOptionError, match="validation/test specimens"):
        train_run(tmp_path / "run2", data, TINY, tc, backbone=bad, log=None)
    assert not (tmp_path / "run2").exists()
    # a backbone of another architecture is refused before the data are read (this data
    # root does not exist: reading it first would raise another error)
    nowhere = DataConfig(root=str(tmp_path / "nowhere"))
    with pytest.raises(SSLOptionError, match="another architecture"):
        train_run(tmp_path / "run3", nowhere, ModelConfig(), tc, backbone=good, log=None)
    assert not (tmp_path / "run3").exists()
    # weights that do not fit the recorded architecture: one clear error, no run
    short = save_backbone(tmp_path / "short", {k: v for k, v in weights.items()
                                               if k != next(iter(weights))}, meta=meta)
    with pytest.raises(SSLOptionError, match="does not fit"):
        train_run(tmp_path / "run4", nowhere, TINY, tc, backbone=short, log=None)
    assert not (tmp_path / "run4").exists()


def test_flight_eval_finds_the_split_backbone_or_says_how_to_make_it(tmp_path) -> None:
    import click

    from benchmarks.flight_eval import recipe_backbone, trained_with
    from ramanedge.fsutil import sha256_file
    from trainer.model import FLIGHT_MODEL

    assert recipe_backbone("flight", "grouped", 0, tmp_path) is None
    with pytest.raises(click.ClickException, match="--split-seed 2 --out"):
        recipe_backbone("flight-pre", "grouped", 2, tmp_path)
    with pytest.raises(click.ClickException, match="grouped split"):
        recipe_backbone("flight-pre", "random", 0, tmp_path)
    folder = tmp_path / "flight-barlow-s2"
    folder.mkdir()
    (folder / "pretrain.json").write_text("{}")
    assert recipe_backbone("flight-pre", "grouped", 2, tmp_path) == folder
    # a finished run counts as the recipe's only if it started from the same backbone
    run = tmp_path / "run"
    run.mkdir()
    saved = {"model": FLIGHT_MODEL.to_dict(), "train": TrainConfig().to_dict()}
    (run / "config.json").write_text(json.dumps(saved))
    assert trained_with(run, FLIGHT_MODEL, TrainConfig())
    assert not trained_with(run, FLIGHT_MODEL, TrainConfig(), folder)
    (folder / "backbone.npz").write_bytes(b"weights")
    source = {"folder": str(folder.resolve()), "sha256": sha256_file(folder / "backbone.npz")}
    (run / "config.json").write_text(json.dumps({**saved, "backbone": source}))
    assert trained_with(run, FLIGHT_MODEL, TrainConfig(), folder)
    assert not trained_with(run, FLIGHT_MODEL, TrainConfig())
    (folder / "backbone.npz").write_bytes(b"pretrained again")  # same folder, new weights
    assert not trained_with(run, FLIGHT_MODEL, TrainConfig(), folder)


def test_cli_backbone_alone_runs_the_whole_recipe(tmp_path, capsys, monkeypatch,
                                                  shared_data_root) -> None:
    import trainer.run
    import trainer.ssl
    from tests.conftest import run_cli

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(trainer.run, "train_run",
                        lambda *a, **kw: calls.append(("recipe", {"args": a, **kw})))
    monkeypatch.setattr(trainer.ssl, "ssl_cli_train",
                        lambda *a, **kw: calls.append(("few-label", {"args": a, **kw})))
    back = tmp_path / "pre"
    code, _, err = run_cli(capsys, "train", "--data", shared_data_root, "--backbone", back,
                           "--out", tmp_path / "r1")
    assert code == 0, err
    kind, kw = calls[-1]
    assert kind == "recipe" and kw["backbone"] == back
    tc = kw["args"][3]
    assert tc.teachers == 3 and tc.qat_epochs > 0 and tc.outlier_exposure > 0  # the default
    code, _, err = run_cli(capsys, "train", "--data", shared_data_root, "--backbone", back,
                           "--labelled-fraction", "0.5", "--out", tmp_path / "r2")
    assert code == 0, err
    assert calls[-1][0] == "few-label" and calls[-1][1]["backbone"] == back
    assert len(calls) == 2
