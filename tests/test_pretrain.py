"""Pretraining on every RRUFF spectrum: the corpus, the objectives, the strategy path,
FixMatch-style pseudo-labels, and the guard against a backbone that saw test specimens."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from ramanedge.corpus import Corpus, build_corpus
from ramanedge.grid import GRID
from tests.test_dataset import _rruff_text
from trainer.model import FLIGHT_HALF_POSITIONS, ModelConfig
from trainer.train import PseudoLabelConfig, TrainConfig

TINY = ModelConfig(arch="paper", pool_size=16, dense_units=16)
PlainTC = partial(TrainConfig, teachers=0, distill=0.0, qat_epochs=0, outlier_exposure=0.0,
                  ema=0.0)  # mechanics on a few steps: the opt-in moving average off


# ------------------------------------------------------------------ corpus

def _corpus_root(root):
    d = root / "mixed"
    d.mkdir(parents=True)
    files = {
        "Alphaite__R000001__Broad_Scan__532__0__unoriented__Raman_Data_Raw__0001.txt":
            _rruff_text("Alphaite", "R000001", "532", "RAW"),                 # full grid
        "Alphaite__R000002__Broad_Scan__532__0__unoriented__Raman_Data_Processed__0002.txt":
            _rruff_text("Alphaite", "R000002", "532", "Processed", x0=150, x1=1000),  # 57 %
        "Betaite__R000003__532__0__unoriented__Raman_Data_Processed__0003.txt":
            _rruff_text("Betaite", "R000003", "532", "Processed", x0=150, x1=500),  # 21 %: out
        "Compound__D000004__Broad_Scan__532__0__unoriented__Raman_Data_Raw__0004.txt":
            _rruff_text("Compound", "D000004", "532", "RAW"),                  # non-mineral
        "Gammaite__R000005__Broad_Scan__785__0__unoriented__Raman_Data_Raw__0005.txt":
            _rruff_text("Gammaite", "R000005", "785", "RAW", x0=700, x1=2000),  # 64 %
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_corpus_keeps_partial_spectra_padded_and_caches(tmp_path) -> None:
    root = _corpus_root(tmp_path)
    lines: list[str] = []
    c = build_corpus(root, cache_dir=tmp_path / "cache", progress=lines.append)
    assert sorted(c.sample_ids) == ["R000001", "R000002", "R000005"]
    by = dict(zip(c.sample_ids, range(len(c)), strict=True))
    full, low, high = by["R000001"], by["R000002"], by["R000005"]
    assert (c.lo[full], c.hi[full]) == (0, GRID.size)
    assert c.lo[low] == 0 and 790 < c.hi[low] <= 801        # measured up to ~1000 cm-1
    assert 499 <= c.lo[high] <= 501 and c.hi[high] == GRID.size   # from 700 cm-1
    # padded with the edge value outside the measured span, max-normalised
    assert np.all(c.X[low, c.hi[low]:] == c.X[low, c.hi[low] - 1])
    assert np.all(c.X[high, :c.lo[high]] == c.X[high, c.lo[high]])
    assert np.allclose(c.X.max(axis=1), 1.0)
    assert c.summary()["full_coverage"] == 1
    again: list[str] = []
    c2 = build_corpus(root, cache_dir=tmp_path / "cache", progress=again.append)
    assert any("from cache" in m for m in again) and np.array_equal(c2.X, c.X)


def test_corpus_rejects_bad_input(tmp_path) -> None:
    from ramanedge.errors import DataError

    with pytest.raises(DataError, match="not found"):
        build_corpus(tmp_path / "nowhere")
    with pytest.raises(DataError, match="min_coverage"):
        build_corpus(_corpus_root(tmp_path), min_coverage=0.0)


def test_corpus_excluding_drops_ids_minerals_and_paths() -> None:
    n = 5
    c = Corpus(X=np.zeros((n, GRID.size), np.float32), lo=np.zeros(n, np.int64),
               hi=np.full(n, GRID.size), paths=tuple(f"p{i}" for i in range(n)),
               minerals=("Quartz", "quartz", "Calcite", "Albite", "Albite"),
               sample_ids=("R1", "R2", "R3", "", "R5"), kinds=("raw",) * n,
               sources=("LR-Raman",) * n)
    kept = c.excluding(sample_ids=["R3", ""], minerals=["QUARTZ"], paths=["p4"])
    assert kept.paths == ("p3",)


@pytest.mark.realdata
def test_pretraining_corpus_leaves_out_val_test_and_unknown_evaluation(shared_data_root) -> None:
    from ramanedge.dataset import build_dataset, load_heldout
    from ramanedge.io.rruff import normalise_label
    from ramanedge.splits import make_split, unknown_halves
    from tests.conftest import REPO
    from trainer.pretrain import pretraining_corpus

    cache = str(REPO / ".cache" / "ramanedge")
    corpus, info = pretraining_corpus(shared_data_root, split_seed=1, cache_dir=cache, log=None)
    ds = build_dataset(shared_data_root, "rruff-raw", cache_dir=cache)
    split = np.asarray(make_split(ds, "grouped", seed=1))
    held_out_ids = {s for s, p in zip(ds.sample_ids, split, strict=True) if p != "train"}
    train_ids = {s for s, p in zip(ds.sample_ids, split, strict=True) if p == "train"}
    ids = set(corpus.sample_ids)
    assert not ids & held_out_ids
    assert len(ids & train_ids) > 0.9 * len(train_ids)
    held = load_heldout(shared_data_root, cache_dir=cache)
    evaluation = unknown_halves(held.labels, known=ds.labels)["evaluation"]
    assert not {normalise_label(m) for m in corpus.minerals} & {normalise_label(m)
                                                                for m in evaluation}
    # ... and by specimen: other sets file some of these specimens under another name
    eval_ids = {sid for sid, y in zip(held.sample_ids, held.y, strict=True)
                if sid and held.labels[y] in set(evaluation)}
    assert eval_ids and not ids & eval_ids
    assert set(info["excluded_unknown_specimens"]) == eval_ids
    s = corpus.summary()
    # every set enters, partial spectra (the 2019 processed set ends near 1290 cm-1) included
    assert {"LR-Raman/raw", "LR-Raman/processed", "excellent_unoriented/processed"} <= set(
        s["by_source"])
    assert s["full_coverage"] < len(corpus)
    assert set(info["excluded_ids"]) == held_out_ids - {""}


# ------------------------------------------------------------------ objectives

def _spectra(n: int = 48, seed: int = 0) -> np.ndarray:
    from tests.conftest import make_synthetic

    return make_synthetic(n_per_class=n // 4, seed=seed).X[:n]


@pytest.mark.parametrize("objective", ["simclr", "barlow", "masked"])
def test_each_objective_trains_the_backbone(objective) -> None:
    from trainer.contrastive import backbone_layers, load_backbone
    from trainer.model import build_model
    from trainer.pretrain import PretrainConfig, pretrain

    X = _spectra()
    cfg = PretrainConfig(objective=objective, epochs=2, batch_size=16, projection_dim=16,
                         seed=3)
    weights, hist = pretrain(X, TINY, cfg, log=None)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    fresh = build_model(4, TINY)
    assert set(weights) == {layer.name for layer in backbone_layers(fresh)}
    before = [w.copy() for w in fresh.get_layer("conv1").get_weights()]
    load_backbone(fresh, weights)
    after = fresh.get_layer("conv1").get_weights()
    assert not np.allclose(before[0], after[0])
    assert np.array_equal(after[0], weights["conv1"][0])


def test_barlow_loss_is_zero_only_for_invariant_decorrelated_views() -> None:
    import tensorflow as tf

    from trainer.pretrain import _barlow_loss

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(64, 8)))
    z = tf.constant(q - q.mean(axis=0), tf.float32)
    assert float(_barlow_loss(z, z, 5e-3)) < 1e-2          # identical, decorrelated
    other = tf.constant(rng.normal(size=(64, 8)), tf.float32)
    assert float(_barlow_loss(z, other, 5e-3)) > 4.0      # unrelated views: diagonal ~0


def test_mask_windows_cover_the_fraction() -> None:
    from trainer.pretrain import mask_windows

    m = mask_windows(20, GRID.size, 0.3, 24, np.random.default_rng(0))
    frac = m.mean(axis=1)
    assert np.all(frac >= 0.3) and np.all(frac < 0.3 + 24 / GRID.size + 1e-9)


def test_mirrored_strategy_runs_the_same_training() -> None:
    import tensorflow as tf

    from trainer.pretrain import PretrainConfig, make_strategy, pretrain

    X = _spectra(32)
    cfg = PretrainConfig(objective="barlow", epochs=1, batch_size=16, projection_dim=8)
    w0, h0 = pretrain(X, TINY, cfg, log=None)
    strat = tf.distribute.MirroredStrategy(["/cpu:0"])
    w1, h1 = pretrain(X, TINY, cfg, strategy=strat, log=None)
    assert np.allclose(h0["loss"], h1["loss"], rtol=1e-4)
    for name in w0:
        for a, b in zip(w0[name], w1[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="default, mirrored, multiworker"):
        make_strategy("ray")


def test_pretrain_config_file_errors_name_the_allowed_keys(tmp_path) -> None:
    from trainer.pretrain import PretrainConfig

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"objective": "barlow", "epoch": 3}))
    with pytest.raises(ValueError, match="unknown keys.*epoch.*expected"):
        PretrainConfig.from_file(p)
    with pytest.raises(ValueError, match="simclr, barlow, masked"):
        PretrainConfig(objective="byol")
    p.write_text(json.dumps({"objective": "masked", "epochs": 2}))
    assert PretrainConfig.from_file(p).epochs == 2


def test_backbone_round_trips_through_files(tmp_path) -> None:
    from trainer.pretrain import load_backbone_file, save_backbone

    w = {"conv1": [np.ones((3, 1, 2), np.float32), np.zeros(2, np.float32)],
         "dense": [np.arange(6, dtype=np.float32).reshape(2, 3)]}
    save_backbone(tmp_path, w, meta={"x": 1})
    back = load_backbone_file(tmp_path)
    assert set(back) == set(w)
    for k in w:
        for a, b in zip(w[k], back[k], strict=True):
            assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="cannot read"):
        load_backbone_file(tmp_path / "none")


# ------------------------------------------------------------------ pseudo-labels

def test_pseudo_labels_enter_training(synthetic_data) -> None:
    from trainer.model import build_model
    from trainer.train import fit_model, seed_everything

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    lab = np.zeros(len(ytr), bool)
    for c in range(4):
        lab[np.flatnonzero(ytr == c)[:3]] = True
    tc = PlainTC(epochs=3, augment=TrainConfig().augment.__class__())

    def fit(pseudo):
        seed_everything(0)
        model = build_model(4, TINY)
        return fit_model(model, Xtr[lab], ytr[lab], Xva, yva, 4, tc, epoch_samples=len(ytr),
                         unlabelled=Xtr[~lab], pseudo=pseudo, log=None)

    plain = fit(None)
    pl = fit(PseudoLabelConfig(threshold=0.3, ratio=1.0))
    assert "pseudo" not in plain.history
    assert len(pl.history["pseudo"]) == 3 and max(pl.history["pseudo"]) > 0
    assert any(not np.allclose(a, b) for a, b in zip(plain.model.get_weights(),
                                                     pl.model.get_weights(), strict=True))
    # nobody passes the bar: no pseudo-labelled spectrum is trained on
    none_sure = fit(PseudoLabelConfig(threshold=1.0))
    assert max(none_sure.history["pseudo"]) == 0


def test_pseudo_label_config_validates() -> None:
    with pytest.raises(ValueError, match="threshold"):
        PseudoLabelConfig(threshold=0.0)
    from trainer.ssl import SSLConfig

    with pytest.raises(ValueError, match="not sgan"):
        SSLConfig(method="sgan", pseudo=PseudoLabelConfig())
    with pytest.raises(ValueError, match="needs the backbone"):
        from trainer.ssl import train_ssl

        X = np.zeros((4, GRID.size), np.float32)
        train_ssl(X, np.array([0, 1, -1, -1]), X[:2], np.array([0, 1]), 2, TINY,
                  PlainTC(epochs=1), SSLConfig(method="pretrained"), log=None)


# ------------------------------------------------------------------ no leak from a backbone

def small_real_data_and_clean_backbone(tmp_path, data_root):
    """A small real data set (``tests.test_ssl.REAL_MINERALS``), a TINY backbone's weights
    (they do not depend on the number of classes) and the ``pretrain.json`` of a corpus that
    left out every validation and test specimen of the data's default split:
    ``(data, weights, meta)``."""
    from tests.conftest import REPO
    from tests.test_ssl import REAL_MINERALS
    from trainer.contrastive import backbone_layers
    from trainer.model import build_model
    from trainer.run import DataConfig, start_run

    data = DataConfig(root=str(data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    _, ds, split = start_run(tmp_path / "probe", data, overwrite=False, log=None)
    held = [(s, p) for s, p, part in zip(ds.sample_ids, ds.paths, split, strict=True)
            if part != "train"]
    weights = {layer.name: layer.get_weights()
               for layer in backbone_layers(build_model(2, TINY))}
    meta = {"model": TINY.to_dict(), "excluded_ids": sorted({s for s, _ in held if s}),
            "excluded_paths": sorted(p for s, p in held if not s)}
    return data, weights, meta


@pytest.mark.realdata
def test_backbone_run_refuses_a_corpus_that_held_its_test_specimens(tmp_path,
                                                                    shared_data_root) -> None:
    from trainer.pretrain import save_backbone
    from trainer.ssl import SSLConfig, SSLOptionError, check_backbone, ssl_train_run

    data, weights, meta = small_real_data_and_clean_backbone(tmp_path, shared_data_root)
    good = save_backbone(tmp_path / "good", weights, meta=meta)
    w, m = check_backbone(good, TINY)
    tc = PlainTC(epochs=2)
    run = ssl_train_run(tmp_path / "run", data, TINY, tc,
                        SSLConfig(method="pretrained", labelled_fraction=0.5),
                        pretrained=w, pretrained_meta=m, log=None)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["ssl"]["method"] == "pretrained"
    from ramanedge.fsutil import sha256_file

    # the run records which backbone it started from
    assert cfg["ssl"]["backbone"]["sha256"] == sha256_file(good / "backbone.npz")
    # the same backbone, but its corpus kept one test specimen
    leaky = {**meta, "excluded_ids": meta["excluded_ids"][1:]}
    bad = save_backbone(tmp_path / "bad", weights, meta=leaky)
    with pytest.raises(SSLOptionError, match="validation/test specimens"):
        ssl_train_run(tmp_path / "run2", data, TINY, tc, SSLConfig(method="pretrained"),
                      pretrained=w, pretrained_meta=check_backbone(bad, TINY)[1], log=None)
    with pytest.raises(SSLOptionError, match="another architecture") as err:
        check_backbone(good, ModelConfig())
    assert "filters" in str(err.value) and "(this run: [24, 48, 64, 96, 128])" in str(err.value)
    # a flight backbone of another stride: the refusal names the stride to train with
    half = save_backbone(tmp_path / "half", weights, meta={
        **meta, "model": FLIGHT_HALF_POSITIONS.to_dict()})
    with pytest.raises(SSLOptionError, match="another architecture") as err:
        check_backbone(half, ModelConfig())
    assert "(--stem-stride 2, the stride it was pretrained with)" in str(err.value)


def test_cli_pretrain_and_backbone_errors_are_one_line(tmp_path, capsys,
                                                       shared_data_root) -> None:
    from tests.conftest import run_cli

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out, err = run_cli(capsys, "pretrain", "--data", shared_data_root, "--config", bad,
                             "--out", tmp_path / "p")
    assert code == 2 and "cannot read the pretraining config" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "train", "--data", shared_data_root, "--backbone",
                             tmp_path / "missing", "--out", tmp_path / "r")
    assert code == 2 and "not a pretraining folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # a pretrain.json that is not an object, or names unknown model keys: one line too
    from trainer.pretrain import save_backbone

    for meta_text in ("[1, 2]", json.dumps({"model": {"arch": "flight", "wings": 2}})):
        folder = save_backbone(tmp_path / "odd", {"conv1": [np.zeros(2, np.float32)]},
                               meta={})
        (folder / "pretrain.json").write_text(meta_text)
        code, out, err = run_cli(capsys, "train", "--data", shared_data_root, "--backbone",
                                 folder, "--out", tmp_path / "r")
        assert code == 2 and "not a pretraining folder" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "train", "--data", shared_data_root, "--pseudo-label",
                             "--out", tmp_path / "r")
    assert code == 2 and "needs --labelled-fraction below 1, got 1" in err
    assert "Traceback" not in err


def test_backbone_pretrained_with_the_unknown_evaluation_minerals_is_refused(tmp_path) -> None:
    from trainer.pretrain import save_backbone
    from trainer.ssl import SSLOptionError, check_backbone

    folder = save_backbone(tmp_path, {"conv1": [np.zeros(2, np.float32)]},
                           meta={"model": TINY.to_dict(), "keep_unknown_evaluation": True})
    with pytest.raises(SSLOptionError, match="all-minerals"):
        check_backbone(folder, TINY)


@pytest.mark.parametrize(("tf_config", "writes"), [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker",
                                                               "index": 0}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief",
                                                               "index": 0}}, True),
])
def test_only_one_worker_writes_the_backbone(monkeypatch, tf_config, writes) -> None:
    """The chief is read from the strategy's cluster resolver (the one
    MultiWorkerMirroredStrategy builds from TF_CONFIG), not from TF_CONFIG by hand."""
    from types import SimpleNamespace

    import tensorflow as tf

    from trainer.pretrain import _is_chief

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
        assert _is_chief(tf.distribute.get_strategy()) is writes  # no cluster resolver
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert _is_chief(SimpleNamespace(cluster_resolver=resolver)) is writes


def test_new_mineral_probe_separates_informative_from_random_features() -> None:
    from benchmarks.fewlabel import new_mineral_accuracy

    rng = np.random.default_rng(0)
    names = np.repeat([f"m{i}" for i in range(30)], 4)
    ids = np.array([f"{n}-{j % 2}" for j, n in enumerate(names)])   # 2 specimens each
    centres = rng.normal(size=(30, 16)) * 5
    good = centres[np.repeat(np.arange(30), 4)] + rng.normal(size=(120, 16)) * 0.1
    assert new_mineral_accuracy(good, names, ids, draws=3) == 1.0
    noise = rng.normal(size=(120, 16))
    assert new_mineral_accuracy(noise, names, ids, draws=3) < 0.3


def test_shipped_pretrain_config_is_the_default() -> None:
    from tests.conftest import REPO
    from trainer.pretrain import PretrainConfig

    assert PretrainConfig.from_file(REPO / "configs" / "pretrain.json") == PretrainConfig()


def test_two_replicas_train_like_one() -> None:
    """Two CPU replicas of MirroredStrategy on [A; A] train as one process on A (a fresh
    process: logical devices must be set before TensorFlow starts; tests/replicas_child.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(repo / "tests" / "replicas_child.py")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2
    for objective in ("barlow", "simclr"):
        r = res["objectives"][objective]
        assert r["moved_one"] > 1e-4 and r["moved_two"] > 1e-4, (objective, r)  # trained
        assert r["max_diff"] <= 1e-6, (objective, r)
        assert r["loss_two"] == pytest.approx(r["loss_one"], rel=1e-6)
    m = res["objectives"]["masked"]
    assert np.isfinite(m["loss_two"]) and m["loss_two"] == pytest.approx(m["loss_one"], rel=0.1)


def test_check_no_leak_judges_ids_and_files_without_ids() -> None:
    """A val/test spectrum is covered by its specimen id when it has one, else by its file;
    training spectra never matter; the error names a leaked specimen or file."""
    from types import SimpleNamespace

    from trainer.ssl import SSLOptionError, check_no_leak

    ds = SimpleNamespace(sample_ids=["R1", "R2", "", "R3", ""],
                         paths=["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"])
    split = np.array(["train", "val", "test", "test", "train"])
    ok = {"excluded_ids": ["R2", "R3"], "excluded_paths": ["c.txt"]}
    check_no_leak(ok, ds, split)  # R1 and e.txt are training spectra: not needed
    with pytest.raises(SSLOptionError, match=r"held 1 validation/test specimens.*c\.txt"):
        check_no_leak({**ok, "excluded_paths": []}, ds, split)  # the id-less test file
    with pytest.raises(SSLOptionError, match=r"held 1 validation/test.*R3"):
        check_no_leak({**ok, "excluded_ids": ["R2"]}, ds, split)
    with pytest.raises(SSLOptionError, match="held 3"):
        check_no_leak({}, ds, split)  # a record without the lists excludes nothing


def test_views_respect_each_spectrum_span() -> None:
    """Corpus spans reach the views: crops stay inside the covered points, and the masked
    objective masks covered points only (it never learns to reconstruct padding)."""
    from trainer.pretrain import PretrainConfig, _views_dataset
    from trainer.raman_augment import RamanAugmentConfig

    rng = np.random.default_rng(0)
    X = (rng.random((16, GRID.size)) + 0.5).astype(np.float32)
    lo = np.full(16, 100)
    hi = np.full(16, 700)
    views = RamanAugmentConfig(shift_cm=0, gain=0.0, baseline=0.0, noise_std=0.0, spikes=0,
                               crop=1.0)
    cfg = PretrainConfig(objective="masked", epochs=1, batch_size=16, views=views)
    x, target, mask = _views_dataset(X, cfg, (lo, hi))[0]
    assert mask[:, :100].sum() == 0 and mask[:, 700:].sum() == 0 and mask.sum() > 0
    # each view is padded (held constant) outside 100:700: the crop window lies inside
    for t in target:
        assert np.all(t[:101] == t[100]) and np.all(t[699:] == t[698])
    bar = PretrainConfig(objective="barlow", epochs=1, batch_size=16, views=views)
    v1, v2 = _views_dataset(X, bar, (lo, hi))[0]
    for t in (*v1, *v2):  # both views of the contrastive objectives
        assert np.all(t[:101] == t[100]) and np.all(t[699:] == t[698])
    v1, _ = _views_dataset(X, bar, None)[0]  # without spans crops reach the whole grid
    assert any(not np.all(t[:101] == t[100]) for t in v1)


def test_bad_spans_and_within_spans_values_are_refused() -> None:
    from trainer.pretrain import PretrainConfig, pretrain

    with pytest.raises(ValueError, match="within_spans must be true or false"):
        PretrainConfig(within_spans=1)
    X = _spectra(8)
    cfg = PretrainConfig(epochs=1, batch_size=8, projection_dim=8)
    for lo, hi in ((np.zeros(8), np.zeros(8)), (np.zeros(7), np.full(7, 10)),
                   (np.full(8, -1), np.full(8, 10)), (np.zeros(8), np.full(8, 2000))):
        with pytest.raises(ValueError, match="spans must be"):
            pretrain(X, TINY, cfg, spans=(lo, hi), log=None)


def test_spans_move_with_the_shift() -> None:
    """A view shifted by s points keeps its crop inside the span moved by s (positive
    shifts move bands to higher wavenumbers), so the crop never reaches the padding."""
    from trainer.raman_augment import RamanAugmentConfig, raman_views

    n = 64
    X = np.random.default_rng(0).random((n, GRID.size)) + 0.5
    lo, hi = np.full(n, 300), np.full(n, 900)
    cfg = RamanAugmentConfig(shift_cm=40, gain=0.0, baseline=0.0, noise_std=0.0, spikes=0,
                             crop=1.0)
    V = raman_views(X, cfg, np.random.default_rng(7), spans=(lo, hi))
    s = np.random.default_rng(7).integers(-40, 41, size=n)  # the views' first draw
    assert np.any(s > 20) and np.any(s < -20)
    for v, a, b in zip(V, lo + s, hi + s, strict=True):
        assert np.all(v[:a + 1] == v[a]) and np.all(v[b - 1:] == v[b - 1])


def test_fewlabel_grid_refuses_bad_lists_before_reading_data(tmp_path) -> None:
    """A typo in the few-label grid's lists ends it with one line before the (missing) data
    folder is read or any model trains."""
    from click.testing import CliRunner

    from benchmarks.fewlabel import cli

    out = tmp_path / "rows.jsonl"
    for args, msg in ((["--methods", "none-aug,pre-barlow+xx"], "unknown method"),
                      (["--methods", "none-aug+libpl1.5"], "unknown method"),
                      (["--methods", "none-aug+libplx"], "unknown method"),
                      (["--methods", "none-aug+pl+pl"], "unknown method"),
                      (["--methods", "none-aug+libpl0.2+libpl0.4"], "unknown method"),
                      (["--methods", "none-aug+libpl0.6+rl0"], "unknown method"),
                      (["--methods", "none-aug+rl0.5+rl0.6"], "unknown method"),
                      (["--methods", "none-aug+spec"], "unknown method"),
                      (["--methods", "none-aug+pl+spec"], "unknown method"),
                      (["--methods", "none-aug+rr2"], "unknown method"),
                      (["--methods", "none-aug+rl1+rr6"], "unknown method"),
                      (["--methods", "none-aug+libpl0.6+spec+spec"], "unknown method"),
                      (["--seeds", "0,one"], "--seeds must be"),
                      (["--fractions", "0.1,ten"], "--fractions must be")):
        res = CliRunner().invoke(cli, ["run", "--data", str(tmp_path / "missing"), *args,
                                       "--out", str(out)])
        assert res.exit_code == 2 and msg in res.output, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not out.exists()


def test_fewlabel_method_names_parse_into_their_parts() -> None:
    from benchmarks.fewlabel import parse_method

    assert parse_method("none-aug") == ("none-aug", False, None, None, False, 1, None, 0,
                                        None, None, False, False)
    assert parse_method("pre-barlow+pl+libpl0.6+rl0.8") == ("pre-barlow", True, 0.6, 0.8,
                                                            False, 1, None, 0, None, None,
                                                            False, False)
    assert parse_method("none-aug+rl1+spec")[3:] == (1.0, True, 1, None, 0, None, None, False,
                                                     False)
    assert parse_method("none-aug+libpl0.6+rl1.0+spec+rr2").rounds == 2
    assert parse_method("none-aug+libpl0.6+spec").spec
    assert parse_method("none-aug+libpl0.6+rl1.0+spec+soft0.5").soft == 0.5
    assert parse_method("none-aug+libpl0.6+rl1.0+spec+kd3").teachers == 3
    assert parse_method("none-aug+libpl0.6+rl1.0+spec+lp0.5").propagate == 0.5
    both = parse_method("none-aug+libpl0.6+rl1.0+spec+lp0.5+lpf0.3")
    assert both.propagate == 0.5 and both.library_propagate == 0.3 and not both.joint
    assert parse_method("none-aug+libpl0.6+rl1.0+spec+lp0.5+lpf0.5+joint").joint
    shipped = parse_method("none-aug+libpl0.6+rl1.0+spec+lp0.5+lpf0.5+joint+shipped")
    assert shipped.shipped and shipped.joint and not parse_method("none-aug").shipped
    import click

    # each refused for its own part: the name beside it, that part mended, parses
    for bad, good in (("none-aug+libpl0.6+soft0.5", "none-aug+rl0.6+soft0.5"),
                      ("none-aug+rl1.0+soft0", "none-aug+rl1.0+soft0.1"),
                      ("none-aug+rl1.0+soft1.5", "none-aug+rl1.0+soft1.0"),
                      ("none-aug+rl1.0+soft0.5+soft1.0", "none-aug+rl1.0+soft1.0"),
                      ("none-aug+libpl0.6+kd3", "none-aug+rl0.6+kd3"),
                      ("none-aug+rl1+kd0", "none-aug+rl1+kd1"),
                      ("none-aug+rl1+kd9", "none-aug+rl1+kd8"),
                      ("none-aug+rl1+kd3+soft0.5", "none-aug+rl1+kd3"),
                      ("none-aug+libpl0.6+lp0.5", "none-aug+rl0.6+lp0.5"),
                      ("none-aug+rl1+lp0", "none-aug+rl1+lp0.3"),
                      ("none-aug+rl1+lp1.2", "none-aug+rl1+lp1"),
                      ("none-aug+rl1+lp0.5+lp0.3", "none-aug+rl1+lp0.3"),
                      ("none-aug+rl1+lpf0.5", "none-aug+libpl0.6+rl1+lpf0.5"),
                      ("none-aug+libpl0.6+lpf0.5+lpf0.3", "none-aug+libpl0.6+rl1+lpf0.3"),
                      ("none-aug+rl1+joint", "none-aug+rl1+lp0.5+joint"),
                      ("none-aug+rl1+lp0.5+joint+joint", "none-aug+rl1+lp0.5+joint"),
                      ("none-aug+rl1+shipped+shipped", "none-aug+rl1+shipped")):
        with pytest.raises(click.UsageError, match=r"\+softS"):
            parse_method(bad)
        assert parse_method(good).rl


def test_fewlabel_report_merges_files_of_one_machine_once() -> None:
    """``report --results A --results B``: a cell in both files counts once when the rows
    agree, and a cell that differs (another machine) is refused: it would not pair."""
    import click

    from benchmarks.fewlabel import merge_rows, summarise

    def row(method, seed, top1):
        return {"arch": "flight", "split_seed": 0, "fraction": 0.1, "seed": seed,
                "method": method, "top1": top1, "val_top1": 0.5, "n_labelled": 10,
                "seconds": 1.0}

    a = [row("ref", 0, 0.6), row("ref", 1, 0.7)]
    b = [row("ref", 0, 0.6), row("new", 0, 0.65)]
    merged = merge_rows([a, b])
    assert len(merged) == 3 and summarise(merged)[("flight", 0.1, "ref")]["n"] == 2
    with pytest.raises(click.UsageError, match="differs between the result files"):
        merge_rows([a, [row("ref", 1, 0.71)]])
    # rows of another training schedule never pool into a cell (rows without one: bench)
    cli_rows = [{**row("ref", 2, 0.6), "schedule": "cli", "max_epochs": 200}]
    with pytest.raises(click.UsageError, match="mix training schedules"):
        merge_rows([[{**r, "max_epochs": 40} for r in a], cli_rows])
    assert len(merge_rows([cli_rows, [{**row("library", 0, 0.5), "max_epochs": 0}]])) == 2


def test_fewlabel_run_refuses_to_resume_another_schedule(tmp_path) -> None:
    """A result file trained with one schedule is not resumed with another: its cells would
    be skipped as done and the new rows would not pair with them."""
    import click

    from benchmarks.fewlabel import _done

    out = tmp_path / "rows.jsonl"
    base = {"arch": "flight", "split_seed": 0, "fraction": 0.1, "seed": 0}
    out.write_text(json.dumps({**base, "method": "library", "max_epochs": 0}) + "\n"
                   + json.dumps({**base, "method": "none-aug", "max_epochs": 40}) + "\n")
    assert len(_done(out, ("bench", 40))) == 2
    for other in (("cli", 200), ("bench", 60)):
        with pytest.raises(click.UsageError, match="another schedule"):
            _done(out, other)
    assert _done(tmp_path / "new.jsonl", ("cli", 200)) == set()


def test_fewlabel_cli_schedule_is_the_one_ramanedge_train_uses() -> None:
    """``--schedule cli`` fine-tunes as ``ramanedge train --labelled-fraction`` does (the
    default schedule, no teachers, no outlier exposure) minus the int8-aware fine-tune;
    ``bench`` is the cheap cap; ``--epochs`` with ``cli`` is refused."""
    from click.testing import CliRunner

    from benchmarks.fewlabel import cli, fewlabel_train
    from trainer.train import TrainConfig

    default = TrainConfig()
    c = fewlabel_train(3, 40, "cli")
    assert (c.epochs, c.lr_patience, c.early_stop_patience) == (
        default.epochs, default.lr_patience, default.early_stop_patience)
    assert c.teachers == 0 and c.distill == 0 and c.outlier_exposure == 0 and c.seed == 3
    assert c.qat_epochs == 0 < default.qat_epochs and c.augment == default.augment
    b = fewlabel_train(3, 40)
    assert (b.epochs, b.lr_patience, b.early_stop_patience) == (40, 4, 10)
    assert b.augment == c.augment and b.teachers == 0 and b.outlier_exposure == 0
    with pytest.raises(ValueError, match="schedule must be one of bench, cli"):
        fewlabel_train(3, 40, "fast")
    res = CliRunner().invoke(cli, ["run", "--schedule", "cli", "--epochs", "5", "--out",
                                   "unused.jsonl"])
    assert res.exit_code == 2 and "--epochs caps the bench schedule" in res.output


def test_fewlabel_grid_scores_the_library_of_the_labelled_spectra(shared_data_root,
                                                                   tmp_path) -> None:
    """``--library``: per cell a ``library`` row (the lag-tolerant 1-NN over the labelled
    spectra alone, the same figure as building that library by hand) and a ``METHOD+lib``
    row from the same trained network (same epochs); a re-run writes nothing new."""
    from click.testing import CliRunner

    from benchmarks.common import read_jsonl
    from benchmarks.fewlabel import cli
    from ramanedge.dataset import build_dataset
    from ramanedge.library import SpectralLibrary
    from ramanedge.splits import make_split, specimen_groups
    from trainer.ssl import NAMING_LIBRARY, labelled_fraction_mask

    out = tmp_path / "rows.jsonl"
    args = ["run", "--data", str(shared_data_root), "--fractions", "0.1", "--split-seeds",
            "0", "--seeds", "0", "--epochs", "1", "--methods", "none-aug,none-aug+libpl0.3",
            "--library", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = {r["method"]: r for r in read_jsonl(out)}
    assert sorted(rows) == ["library", "none-aug", "none-aug+lib", "none-aug+libpl0.3",
                            "none-aug+libpl0.3+lib", "none-aug+libpl0.3+libP"]
    assert rows["none-aug+lib"]["epochs"] == rows["none-aug"]["epochs"] == 1
    assert rows["none-aug"]["schedule"] == "bench" and rows["none-aug"]["max_epochs"] == 1
    assert rows["library"]["epochs"] == 0
    ds = build_dataset(shared_data_root, "rruff-raw")
    split = np.asarray(make_split(ds, "grouped", seed=0))
    tr, te = split == "train", split == "test"
    mask = labelled_fraction_mask(ds.y[tr], np.asarray(specimen_groups(ds))[tr], 0.1, 0)
    lib = SpectralLibrary.build(ds.X[tr][mask], ds.y[tr][mask], len(ds.labels),
                                replace(NAMING_LIBRARY, candidates=0))
    want = float(np.mean(lib.similarity_batch(ds.X[te]).argmax(1) == ds.y[te]))
    assert rows["library"]["top1"] == pytest.approx(want)
    # 10 %, at least one specimen per mineral: 193 of 824 on this split
    assert rows["library"]["n_labelled"] == int(mask.sum()) < tr.sum() / 4
    # one epoch leaves the network near chance; the library carries the blend
    assert rows["none-aug+lib"]["top1"] > rows["none-aug"]["top1"] + 0.1
    # library pseudo-labels: 30 % of the unlabelled training spectra named by that library,
    # judged (after the fact) against the hidden labels; the '+libP' blend uses them too
    pl = rows["none-aug+libpl0.3"]
    assert pl["n_pseudo"] == round(0.3 * int((~mask).sum()))
    assert pl["n_pseudo"] == rows["none-aug+libpl0.3+libP"]["n_pseudo"]
    assert 0.7 < pl["pseudo_acc"] <= 1.0  # the confident third is mostly right
    assert rows["none-aug+libpl0.3+lib"]["epochs"] == pl["epochs"] == 1
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert len(read_jsonl(out)) == 6
