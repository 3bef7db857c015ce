"""Conformal prediction sets (issue 12): the guarantee on problems with a known answer, the
rule's edge cases, the artifact section and the recalibration after a head retrain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import conformal
from ramanedge.errors import ManifestError, ModelError


def _problem(rng: np.random.Generator, n: int, k: int = 12, conc: float = 0.3):
    """Spectra whose true class is drawn from the model's own probabilities: the model is
    calibrated, and calibration and test rows are exchangeable."""
    P = rng.dirichlet(np.full(k, conc), size=n)
    y = np.array([rng.choice(k, p=p) for p in P])
    return P, y


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_coverage_matches_the_level_on_a_synthetic_problem(level: float) -> None:
    """Split conformal: coverage is at least the level and at most level + 1/(n+1) in
    expectation; averaged over 40 calibration draws it must sit in that band (within the
    Monte-Carlo error of 40 x 2000 test rows)."""
    rng = np.random.default_rng(0)
    n = 300
    covs = []
    for _ in range(40):
        Pc, yc = _problem(rng, n)
        Pt, yt = _problem(rng, 2000)
        t = conformal.calibrate_sets(Pc, yc, level=level)["threshold"]
        # the LAC set proper (without the always-included top-1, which only adds coverage)
        covs.append(np.mean(1 - Pt[np.arange(yt.size), yt] <= t))
    mean = float(np.mean(covs))
    assert level - 0.01 <= mean <= level + 1 / (n + 1) + 0.01, mean


def test_an_uninformative_model_needs_big_sets_and_a_sharp_one_small_sets() -> None:
    rng = np.random.default_rng(1)
    k = 10
    flat = np.full((500, k), 1 / k)
    y = rng.integers(0, k, 500)
    t = conformal.calibrate_sets(flat, y, level=0.9)["threshold"]
    assert conformal.set_sizes(flat, t).mean() == k  # ties: every class is as likely
    sharp = np.full((500, k), 0.001)
    sharp[np.arange(500), y] = 1 - 0.001 * (k - 1)
    t = conformal.calibrate_sets(sharp, y, level=0.9)["threshold"]
    assert conformal.set_sizes(sharp, t).max() == 1 and conformal.covered(sharp, y, t).all()


def test_quantile_rank_and_too_few_calibration_spectra() -> None:
    s = np.arange(1, 20) / 20.0  # 19 scores 0.05 .. 0.95
    assert conformal.conformal_quantile(s, 0.9) == pytest.approx(0.9)  # ceil(20 * .9) = 18th
    assert conformal.conformal_quantile(s, 0.95) == pytest.approx(0.95)  # 19th
    assert conformal.conformal_quantile(s, 0.96) == 1.0  # rank 20 > n: everything passes
    with pytest.raises(ValueError, match="level must be in"):
        conformal.conformal_quantile(s, 1.0)
    with pytest.raises(ValueError, match="at least one finite"):
        conformal.conformal_quantile([], 0.9)


def test_the_set_is_ordered_and_never_empty() -> None:
    p = np.array([0.05, 0.6, 0.3, 0.05])
    assert conformal.prediction_set(p, 0.75).tolist() == [1, 2]  # p >= 0.25
    assert conformal.prediction_set(p, 0.0).tolist() == [1]  # nothing passes: top-1 kept
    assert conformal.prediction_set(p, 1.0).tolist() == [1, 2, 0, 3]  # stable on ties
    assert conformal.set_sizes(p[None], 0.0).tolist() == [1]
    assert conformal.covered(p[None], np.array([1]), 0.0).tolist() == [True]


def test_section_checks_name_what_is_wrong() -> None:
    good = {"method": "lac", "level": 0.95, "threshold": 0.5}
    conformal.check_section(good)
    for bad, what in (({**good, "method": "aps"}, "method"), ({**good, "level": 1.0}, "level"),
                      ({**good, "threshold": float("nan")}, "threshold"), ("x", "method")):
        with pytest.raises(ManifestError, match=f"conformal.{what}"):
            conformal.check_section(bad)


def test_recalibrate_maps_labels_and_drops_unknown_ones() -> None:
    sec = {"method": "lac", "level": 0.5, "threshold": 0.1, "n_calibration": 3}
    # the new head orders its labels differently and lost "c"
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    new = conformal.recalibrate(sec, probs, ["b", "a"], ["b", "a", "c"])
    # scores: 1 - 0.9, 1 - 0.8 (row "c" dropped) -> rank ceil(3 * .5) = 2 of 2 -> 0.2
    assert new["threshold"] == pytest.approx(0.2) and new["n_dropped"] == 1
    assert new["recalibrated"] and new["n_calibration"] == 2 and sec["threshold"] == 0.1
    with pytest.raises(ValueError, match="no calibration spectrum"):
        conformal.recalibrate(sec, probs, ["x", "y"], ["b", "a", "c"])


def test_artifact_sets_follow_the_manifest_and_a_retrained_head(tiny_artifact: Path,
                                                               synthetic_data) -> None:
    """The classifier's set is the manifest rule on the rover's probabilities; with a
    retrained head the threshold is recomputed from calibration.npz under that head, and a
    taught mineral can enter the set."""
    from edge_runtime import Classifier
    from edge_runtime.head import SoftmaxHead

    clf = Classifier.from_dir(tiny_artifact, use_head_store=False)
    rule = clf.conformal_rule
    assert rule == json.loads((tiny_artifact / "manifest.json").read_text())["conformal"]
    Xte, yte = synthetic_data.part("test")
    for x in Xte[:20]:
        p = clf.classify_grid(x)
        probs = clf.predict_proba(x)
        want = [clf.labels[i] for i in conformal.prediction_set(probs, rule["threshold"])]
        assert list(p.set) == want and p.set[0] == p.label
    # a new head with one taught class (shifted copies of class 0 named "newite")
    F = clf.features_batch(Xte)
    X = np.concatenate([F, F[yte == 0][:5] * 0.5])
    y = np.concatenate([np.array(clf.labels)[yte], ["newite"] * 5])
    head = SoftmaxHead(prior=clf.artifact.head).fit(X, y).to_head("v0001")
    clf2 = clf.with_head(head)
    r2 = clf2.conformal_rule
    assert r2["recalibrated"] and r2["level"] == rule["level"] and r2["n_dropped"] == 0
    Xva, yva = synthetic_data.part("val")
    P2 = head.probs(clf.features_batch(Xva))
    idx = [head.labels.index(clf.labels[i]) for i in yva]
    want = conformal.calibrate_sets(P2, np.array(idx), level=rule["level"])["threshold"]
    assert r2["threshold"] == pytest.approx(want)
    assert all(set(clf2.classify_grid(x).set) <= set(head.labels) for x in Xte[:10])


def test_a_retrained_head_without_calibration_spectra_is_refused(tiny_artifact: Path,
                                                                tmp_path: Path) -> None:
    from edge_runtime import Classifier
    from edge_runtime.artifact import load_artifact
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.manifest import CALIBRATION_FILE, MANIFEST_NAME, read_manifest, write_manifest

    art_dir = tmp_path / "a"
    shutil.copytree(tiny_artifact, art_dir)
    m = read_manifest(art_dir)
    d = {k: v for k, v in m.data.items() if k != "manifest_sha256"}
    d["conformal"] = {k: v for k, v in d["conformal"].items() if k != "file"}
    d["files"] = {k: {} for k in d["files"] if k != CALIBRATION_FILE}
    (art_dir / CALIBRATION_FILE).unlink()
    (art_dir / MANIFEST_NAME).unlink()
    write_manifest(art_dir, d)
    art = load_artifact(art_dir)
    clf = Classifier(art, make_interpreter(art.model_path))
    assert clf.conformal_rule["threshold"] == m.data["conformal"]["threshold"]  # base: fine
    with pytest.raises(ModelError, match="holds no calibration spectra"):
        clf.with_head(art.head.__class__(art.head.W, art.head.b, art.head.labels, "v0001"))


def test_a_bad_calibration_file_is_one_model_error(tiny_artifact: Path, tmp_path: Path) -> None:
    """Float class ids, or a file that is not an npz, under a re-hashed manifest: the
    retrained-head classifier refuses with a ModelError, never a traceback."""
    import io

    from edge_runtime import Classifier
    from ramanedge.manifest import CALIBRATION_FILE, MANIFEST_NAME, read_manifest, write_manifest

    for content in ("float ids", "garbage"):
        art_dir = tmp_path / content.replace(" ", "_")
        shutil.copytree(tiny_artifact, art_dir)
        z = np.load(art_dir / CALIBRATION_FILE)
        if content == "float ids":
            buf = io.BytesIO()
            np.savez(buf, features=z["features"], y=z["y"].astype(np.float32) + 0.5)
            (art_dir / CALIBRATION_FILE).write_bytes(buf.getvalue())
        else:
            (art_dir / CALIBRATION_FILE).write_bytes(b"PK\x03\x04 not really a zip")
        d = {k: v for k, v in read_manifest(art_dir, verify_files=False).data.items()
             if k != "manifest_sha256"}
        d["files"] = {k: {} for k in d["files"]}
        (art_dir / MANIFEST_NAME).unlink()
        write_manifest(art_dir, d)
        clf = Classifier.from_dir(art_dir, use_head_store=False)
        head = clf.artifact.head.__class__(clf.artifact.head.W, clf.artifact.head.b,
                                           clf.artifact.head.labels, "v0001")
        with pytest.raises(ModelError, match="calibration.npz"):
            clf.with_head(head)


def test_set_temperature_probe_keeps_the_ranking_and_cross_fits_honestly() -> None:
    """``benchmarks.set_temperature`` (rule (Z)): the tempered rows are probabilities with the
    same ranking (tau = 1: the rows themselves), and its cross-fit (calibrate on one half of
    the groups, measure on the other) covers at the level on a calibrated problem."""
    from benchmarks.set_temperature import cross_fit, tempered

    rng = np.random.default_rng(3)
    P, y = _problem(rng, 600)
    assert np.array_equal(tempered(P, 1.0), P)
    for tau in (0.2, 3.0):
        Q = tempered(P, tau)
        assert np.allclose(Q.sum(axis=1), 1.0)
        assert np.array_equal(np.argsort(-Q, axis=1, kind="stable")[:, :3],
                              np.argsort(-P, axis=1, kind="stable")[:, :3])
    # sharper for tau < 1, flatter for tau > 1
    assert tempered(P, 0.2).max(axis=1).mean() > P.max(axis=1).mean() \
        > tempered(P, 3.0).max(axis=1).mean()
    groups = np.repeat(np.arange(300), 2)  # two spectra per specimen
    res = cross_fit(P, y, groups, level=0.9, halvings=20, seed=0)
    assert 0.88 <= res["coverage"] <= 0.93, res
    assert 1.0 <= res["mean_size"] <= P.shape[1]
