"""edge_runtime: interpreter factory, int8 helpers, artifact loading, Classifier, unknown rule."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types

import numpy as np
import pytest

from edge_runtime import ood
from edge_runtime.artifact import HeadWeights, load_artifact
from edge_runtime.classify import Classifier, Prediction
from edge_runtime.interpreter import (
    QuantParams,
    dequantize_int8,
    make_interpreter,
    quantize_int8,
    runtime_name,
)
from ramanedge.errors import CoverageError, ManifestError, ModelError, SpectrumError
from ramanedge.grid import GRID, CoveragePolicy, pad_outside, preprocess


@pytest.fixture(scope="module")
def clf(tiny_artifact) -> Classifier:
    art = load_artifact(tiny_artifact)
    return Classifier(art, make_interpreter(art.model_path), top_k=3)


# -- int8 helpers --------------------------------------------------------------------------
def test_quantize_roundtrip_and_saturation():
    qp = QuantParams(index=0, scale=1 / 255, zero_point=-128, shape=(1, 5))
    x = np.array([0.0, 0.6, 1.0, -0.3, 2.0], dtype=np.float32)
    q = quantize_int8(x, qp)
    assert q.dtype == np.int8
    assert q.tolist() == [-128, 25, 127, -128, 127]  # negatives and >1 saturate, never wrap
    back = dequantize_int8(q, qp)
    assert np.allclose(back[:3], x[:3], atol=qp.scale / 2 + 1e-7)


@pytest.mark.parametrize("zero_point", [-128, -5, 0, 77, 127])
def test_dequantize_is_scale_times_code_minus_zero_point_exactly(zero_point):
    """Every int8 code, in float32: (q - zero_point) exact, then one rounding by the scale,
    whatever numpy call sequence computes it."""
    codes = np.arange(-128, 128, dtype=np.int8).reshape(2, 128)
    for scale in (1 / 255, 0.0235294122248888, 3.7):
        qp = QuantParams(index=0, scale=scale, zero_point=zero_point, shape=(2, 128))
        want = (codes.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        got = dequantize_int8(codes, qp)
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_softmax_and_max_is_softmax_bit_for_bit():
    from edge_runtime.artifact import softmax, softmax_and_max

    rng = np.random.default_rng(0)
    for z in (rng.normal(0, 5, 97).astype(np.float32), np.float32([800.0, 799.0, -50.0]),
              np.zeros(4, np.float32)):
        p, mx = softmax_and_max(z)
        assert np.array_equal(p, softmax(z)) and mx == float(z.max())
        assert type(mx) is float and p.dtype == np.float64


@pytest.mark.parametrize("bad", [
    {"scale": 0.0}, {"scale": float("nan")}, {"zero_point": 200}, {"dtype": "uint8"},
])
def test_quantparams_rejects_bad_entries(bad):
    d = {"index": 1, "scale": 0.1, "zero_point": 0, "shape": [1, 4], "dtype": "int8", **bad}
    with pytest.raises(ModelError):
        QuantParams.from_dict(d)


# -- interpreter factory -------------------------------------------------------------------
def test_make_interpreter_errors(tmp_path, tiny_artifact):
    with pytest.raises(ModelError, match="does not exist"):
        make_interpreter(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelError, match="could not be loaded"):
        make_interpreter(junk)
    with pytest.raises(ModelError, match="num_threads"):
        make_interpreter(tiny_artifact / "model.tflite", num_threads=0)
    # far too many threads crashed the runtime (exit 139) instead of failing cleanly
    with pytest.raises(ModelError, match=r"num_threads must be in 1\.\.64, got 100000"):
        make_interpreter(tiny_artifact / "model.tflite", num_threads=100_000)


def test_cli_threads_are_bounded(tiny_artifact, tmp_path):
    import subprocess
    import sys

    x = np.arange(100.0, 1700.0, 1.7)
    np.savetxt(tmp_path / "s.txt", np.c_[x, 100 + 900 * np.exp(-((x - 465) / 6) ** 2)],
               delimiter=",")
    store = tmp_path / "store"
    for argv in (["classify", "--model", str(tiny_artifact)],
                 ["head", "add", "--model", str(tiny_artifact), "--store", str(store),
                  "--label", "q"]):
        res = subprocess.run([sys.executable, "-m", "ramanedge.cli", *argv, "--threads",
                              "100000", str(tmp_path / "s.txt")], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2 and "1<=x<=64" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert not store.exists()  # nothing stored on the refusal


def test_edgetpu_missing_is_a_clear_error(tiny_artifact):
    import ctypes.util

    if ctypes.util.find_library("edgetpu"):
        pytest.skip("an Edge TPU runtime is installed here")
    with pytest.raises(ModelError, match="libedgetpu"):
        make_interpreter(tiny_artifact / "model.tflite", edgetpu=True)


def test_tflite_runtime_fallback(monkeypatch, tiny_artifact):
    import ai_edge_litert.interpreter as litert

    fake_pkg = types.ModuleType("tflite_runtime")
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = litert.Interpreter
    fake.load_delegate = litert.load_delegate
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import now fails
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake_pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert runtime_name() == "tflite-runtime"
    it = make_interpreter(tiny_artifact / "model.tflite")
    assert it.get_input_details()[0]["shape"].tolist() == [1, GRID.size]
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(ModelError, match="no TFLite runtime"):
        make_interpreter(tiny_artifact / "model.tflite")


# -- artifact ------------------------------------------------------------------------------
def test_load_artifact(tiny_artifact, synthetic_data):
    art = load_artifact(tiny_artifact)
    assert art.labels == tuple(synthetic_data.labels)
    assert art.input_q.shape == (1, GRID.size)
    assert art.probs_q.shape == (1, len(art.labels))
    assert art.head.W.shape == (art.feature_dim, len(art.labels))
    assert not art.head.W.flags.writeable


def test_tampered_model_file_is_refused(artifact_copy):
    p = artifact_copy / "model.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_artifact(artifact_copy)


def test_edited_manifest_and_schema_version_are_refused(artifact_copy):
    from ramanedge.fsutil import sha256_bytes
    from ramanedge.manifest import _canonical

    p = artifact_copy / "manifest.json"
    d = json.loads(p.read_text())
    d["schema_version"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="modified"):
        load_artifact(artifact_copy)
    d["manifest_sha256"] = sha256_bytes(_canonical(d))  # a consistent but newer manifest
    p.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="schema_version"):
        load_artifact(artifact_copy)


def test_pickled_head_is_refused(artifact_copy):
    from ramanedge.manifest import read_manifest, write_manifest

    with open(artifact_copy / "head.npz", "wb") as f:  # an object array needs pickle to load
        np.savez(f, W=np.array([{"W": 1}], dtype=object), b=np.zeros(4, np.float32))
    data = dict(read_manifest(artifact_copy, verify_files=False).data)
    data.pop("manifest_sha256")
    write_manifest(artifact_copy, data)  # checksums now match the bad file
    with pytest.raises(ModelError, match="npz"):
        load_artifact(artifact_copy)


# -- classifier ----------------------------------------------------------------------------
def test_classifier_accuracy_matches_quantiser_metrics(clf, synthetic_data):
    X, y = synthetic_data.part("test")
    preds = [clf.classify_grid(x) for x in X]
    acc = np.mean([p.label == synthetic_data.labels[t] for p, t in zip(preds, y, strict=True)])
    # the base classifier takes the path the gate judged (manifest head.base_output)
    assert clf.artifact.base_output == "head"
    assert acc == pytest.approx(clf.artifact.manifest.data["metrics"]["head"]["top1"], abs=0.02)
    assert acc >= 0.9


def test_prediction_fields(clf, synthetic_data):
    X, _ = synthetic_data.part("test")
    p = clf.classify_grid(X[0])
    assert isinstance(p, Prediction)
    assert len(p.top) == 3
    probs = [pr for _, pr in p.top]
    assert probs == sorted(probs, reverse=True)
    assert all(lab in clf.labels for lab, _ in p.top)
    assert 0 < sum(probs) <= 1.0 + 1e-6
    assert p.compute_ms > 0 and p.head == "base"
    assert (p.label, p.prob) == p.top[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.unknown = True  # type: ignore[misc]
    d = p.to_dict()
    assert set(d["top"][0]) == {"label", "prob"}
    json.dumps(d)


def test_classify_xy_resamples_like_training(clf, synthetic_data):
    X, _ = synthetic_data.part("test")
    # the same spectrum on a finer, wider, non-grid axis, scaled to raw counts
    x_raw = np.linspace(150.0, 1700.0, 4000)
    y_raw = 5000.0 * np.interp(x_raw, GRID, X[1])
    a = clf.classify_xy(x_raw, y_raw)
    b = clf.classify_grid(X[1])
    assert a.label == b.label
    assert a.prob == pytest.approx(b.prob, abs=0.02)


def test_classify_errors(clf):
    x = np.linspace(100, 2000, 3000)
    y = np.ones_like(x)
    y[10] = np.nan
    with pytest.raises(SpectrumError, match="NaN"):
        clf.classify_xy(x, y)
    with pytest.raises(CoverageError, match="the minimum is 50%"):  # 1200-2000: 28% of it
        clf.classify_xy(np.linspace(1200, 2000, 100), np.ones(100))
    with pytest.raises(SpectrumError):
        clf.classify_xy(np.array([]), np.array([]))
    with pytest.raises(SpectrumError, match="1392"):
        clf.classify_grid(np.ones(100, dtype=np.float32))


def test_partial_coverage_pads_like_training_and_reports_the_fraction(clf):
    """A spectrum covering 300-2000 cm-1 is classified on the grid the shared code pads
    (edge hold below 300, as the crop augmentation does); refuse mode turns it down."""
    x = np.linspace(300, 2000, 1700)
    y = 1.0 + np.exp(-0.5 * ((x - 465) / 4) ** 2) + 0.3 * np.exp(-0.5 * ((x - 1086) / 5) ** 2)
    pred = clf.classify_xy(x, y)
    lo = 100  # grid points 200..299 are not covered
    assert pred.coverage == pytest.approx((1392 - lo) / 1392)
    full = preprocess(np.linspace(100, 2000, 1901), np.interp(np.linspace(100, 2000, 1901), x, y))
    padded = pad_outside(full, lo, 1392)  # what crop augmentation makes of the full spectrum
    grid, frac = clf.preprocess_covered(x, y)
    np.testing.assert_allclose(grid, padded, atol=1e-6)
    assert frac == pred.coverage
    assert clf.classify_grid(grid).top == pred.top
    strict = Classifier(clf.artifact, clf.interpreter, coverage=CoveragePolicy(mode="refuse"))
    with pytest.raises(CoverageError, match="200-1591"):
        strict.classify_xy(x, y)
    xf = np.linspace(100, 2000, 1901)
    yf = 1.0 + np.exp(-0.5 * ((xf - 465) / 4) ** 2)  # covers the grid: not refused
    assert strict.classify_xy(xf, yf).coverage == 1.0


def test_features_are_dequantised_int8(clf, synthetic_data):
    X, _ = synthetic_data.part("test")
    f = clf.features(X[0])
    q = clf.features_int8(X[0])
    assert f.shape == (clf.artifact.feature_dim,) and q.dtype == np.int8
    assert np.array_equal(f, dequantize_int8(q, clf.artifact.features_q))
    # the float head on the int8 features agrees with the model's own int8 probs output
    head_label = clf.labels[int(np.argmax(clf.artifact.head.probs(f)))]
    assert head_label == clf.classify_grid(X[0]).label


def test_retrained_head_is_used(clf, synthetic_data):
    X, _ = synthetic_data.part("test")
    d, k = clf.artifact.head.W.shape
    W = np.zeros((d, k + 1), np.float32)
    b = np.zeros(k + 1, np.float32)
    b[-1] = 50.0  # a head that always says "newite"
    head = HeadWeights(W, b, (*clf.artifact.labels, "newite"), version="v0007")
    p = clf.with_head(head).classify_grid(X[0])
    assert p.label == "newite" and p.head == "v0007" and p.prob > 0.99


@pytest.mark.parametrize("norm_weight", [0.0, ood.KNN_LOGIT_NORM_WEIGHT])
def test_the_per_spectrum_answer_is_the_batch_computation(clf, synthetic_data, artifact_copy,
                                                          norm_weight):
    """classify_grid's lean per-spectrum arithmetic (Python floats, one softmax buffer, the
    set's prefix of the ranking) gives what the vectorised functions give for the same
    spectra: probabilities, set, and the knn_logit score and flag."""
    from edge_runtime import conformal
    from edge_runtime.artifact import softmax

    Xtr, _ = synthetic_data.part("train")
    Xva, _ = synthetic_data.part("val")
    X, _ = synthetic_data.part("test")
    head = clf.artifact.head
    assert clf.artifact.exemplars_file is None  # the bank is exactly `bank` below
    bank, Fva = clf.features_batch(Xtr[::3]), clf.features_batch(Xva)
    sec = ood.calibrate_unknown(np.zeros((len(Fva), 1)), features=Fva, bank=bank,
                                logits=head.logits(Fva), target_tpr=0.8,
                                norm_weight=norm_weight)  # knn_logit / knn_logit_norm
    # top_k = 1, a loose set threshold and noise spectra (flat probabilities) among the
    # inputs: some sets reach past the top-k in the ranking
    from ramanedge.manifest import MANIFEST_NAME, read_manifest, write_manifest

    d = {k: v for k, v in read_manifest(artifact_copy).data.items() if k != "manifest_sha256"}
    thr = d["conformal"]["threshold"] = 0.9
    (artifact_copy / MANIFEST_NAME).unlink()
    write_manifest(artifact_copy, d)
    c = Classifier(load_artifact(artifact_copy), clf.interpreter, unknown=sec, ood_bank=bank,
                   top_k=1)
    noise = np.random.default_rng(3).uniform(0, 1, size=(30, X.shape[1])).astype(np.float32)
    X = np.concatenate([X, noise / noise.max(axis=1, keepdims=True)])
    F = c.features_batch(X)
    want = ood.score(sec, probs=None, features=F, bank_unit=ood.normalise_rows(bank),
                     logits=head.logits(F))
    P = head.probs(F)
    flags, sizes = [], []
    for i, x in enumerate(X):
        p = c.classify_grid(x)
        order = np.argsort(-P[i], kind="stable")
        assert [lab for lab, _ in p.top] == [c.labels[j] for j in order[:1]]
        assert np.allclose([pr for _, pr in p.top], P[i][order[:1]], rtol=1e-5)
        assert p.set == tuple(c.labels[j] for j in conformal.prediction_set(P[i], thr))
        sizes.append(len(p.set))
        # float32 rounding of the cosine (one product then / norm, vs unit rows), scaled by
        # 1 / knn_sd: far below any threshold margin that matters
        assert p.unknown_score == pytest.approx(float(want[i]), abs=1e-3)
        if abs(float(want[i]) - sec["threshold"]) > 1e-3:  # clear of float rounding
            assert p.unknown == bool(want[i] > sec["threshold"])
        assert type(p.unknown) is bool and type(p.unknown_score) is float
        flags.append(p.unknown)
    assert 0 < sum(flags) < len(flags)  # the comparison was exercised both ways
    assert max(sizes) > 1  # some set reached past the top-1
    # the written-out head and softmax of the per-spectrum path are the functions', bit
    # for bit, and so are its dequantised features
    for x in X[:5]:
        probs, f = c.scores(x)
        assert np.array_equal(f, c.features(x))
        assert np.array_equal(probs, softmax(head.logits(f)))
    # the scalar forms are the vector ones, bit for bit
    z = head.logits(F[:5])
    for row in z:
        assert np.array_equal(softmax(row), softmax(row[None, :])[0])
        d, length = 0.123, 1.7
        assert ood.knn_logit_score_1(d, float(row.max()), sec, length) == float(
            ood.knn_logit_score(d, row, sec, length))


def test_the_finiteness_check_tells_overflow_from_nan(clf, synthetic_data):
    """Max and min screen the input: a huge but finite spectrum is still classified; NaN
    and inf anywhere are refused."""
    X, _ = synthetic_data.part("test")
    big = X[0].copy()
    top = np.finfo(np.float32).max
    big[5], big[6] = top, -top  # finite, but max - min overflows in float32
    with np.errstate(over="ignore"):  # the quantiser saturates them (its own overflow)
        assert clf.classify_grid(big).label in clf.labels
    for bad in (np.nan, np.inf, -np.inf):
        x = X[0].copy()
        x[700] = bad
        with pytest.raises(SpectrumError, match="NaN or infinite"):
            clf.classify_grid(x)


def test_mismatched_manifest_and_model_are_refused(clf):
    bad = dataclasses.replace(clf.artifact, features_q=dataclasses.replace(
        clf.artifact.features_q, index=clf.artifact.probs_q.index))
    with pytest.raises(ModelError, match="manifest says"):
        Classifier(bad, clf.interpreter)


# -- unknown rule --------------------------------------------------------------------------
def test_unknown_flag_follows_calibrated_threshold(clf, synthetic_data):
    rng = np.random.default_rng(1)
    Xva, _ = synthetic_data.part("val")
    probs = np.stack([clf.predict_proba(x) for x in Xva])
    sec = ood.calibrate_unknown(probs, target_tpr=0.9)
    c2 = Classifier(clf.artifact, clf.interpreter, unknown=sec)
    passed = np.mean([not c2.classify_grid(x).unknown for x in Xva])
    assert passed >= 0.85  # ~90% of the calibration set passes by construction
    noise = rng.uniform(0, 1, size=(20, GRID.size)).astype(np.float32)
    flagged = [c2.classify_grid(x / x.max()) for x in noise]
    assert all((p.unknown_score > ood.threshold_score(sec)) == p.unknown for p in flagged)
    assert Classifier(clf.artifact, clf.interpreter, unknown=None).classify_grid(
        noise[0]).unknown is False


def test_calibrate_unknown_contract():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.99, 0.01]])
    sec = ood.calibrate_unknown(probs, target_tpr=0.5)
    assert sec["method"] == "max_prob" and sec["n_calibration"] == 4
    assert np.mean(~ood.is_unknown(probs, sec)) >= 0.5
    json.dumps(sec)
    with pytest.raises(ValueError):
        ood.calibrate_unknown(probs, target_tpr=1.5)
    with pytest.raises(ManifestError):
        ood.check_section({"method": "magic", "threshold": 0.5})


def test_knn_cosine_rule_contract():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(30, 16)).astype(np.float32)
    val = bank[:20] + 0.05 * rng.normal(size=(20, 16)).astype(np.float32)
    probs = rng.dirichlet(np.ones(4), size=20)
    sec = ood.calibrate_unknown(probs, target_tpr=0.9, features=val, bank=bank)
    assert sec["method"] == "knn_cosine" and sec["n_bank"] == 30
    assert sec["max_prob_threshold"] == ood.calibrate_unknown(probs, target_tpr=0.9)["threshold"]
    json.dumps(sec)
    unit = ood.normalise_rows(bank)
    s_val = ood.score(sec, probs=probs, features=val, bank_unit=unit)
    assert np.mean(s_val <= ood.threshold_score(sec)) >= 0.9
    assert ood.score(sec, probs=probs[:1], features=bank[:1] * 3.0, bank_unit=unit)[0] < 1e-6
    far = -bank[:5]  # opposite directions: cosine distance ~2
    assert np.all(ood.is_unknown(probs[:5], sec, features=far, bank_unit=unit))
    with pytest.raises(ManifestError, match="exemplar bank"):
        ood.score(sec, probs=probs)
    with pytest.raises(ValueError, match="both"):
        ood.calibrate_unknown(probs, features=val)


def test_knn_logit_rule_is_monotone_in_both_parts_and_passes_its_target():
    """Farther from every exemplar -> higher score; a flatter head (lower top logit) ->
    higher score; on the calibration spectra about target_tpr pass."""
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(30, 16)).astype(np.float32)
    val = bank[:20] + 0.1 * rng.normal(size=(20, 16)).astype(np.float32)
    logits = rng.normal(size=(20, 5)) + np.array([4.0, 0, 0, 0, 0])
    sec = ood.calibrate_unknown(np.zeros((20, 5)), target_tpr=0.9, features=val, bank=bank,
                                logits=logits, weight=0.6, norm_weight=0.0)
    assert sec["method"] == "knn_logit" and sec["weight"] == 0.6
    assert sec["knn_threshold"] == ood.calibrate_unknown(
        np.zeros((20, 5)), target_tpr=0.9, features=val, bank=bank)["threshold"]
    json.dumps(sec)
    ood.check_section(sec)
    unit = ood.normalise_rows(bank)
    s = ood.score(sec, probs=None, features=val, bank_unit=unit, logits=logits)
    assert np.mean(s <= ood.threshold_score(sec)) >= 0.9
    f = val[:1]
    dirs = [f, -f]  # near its exemplar / opposite to it (cosine distance ~2)
    by_distance = [float(ood.score(sec, probs=None, features=d, bank_unit=unit,
                                   logits=logits[:1])[0]) for d in dirs]
    assert by_distance[0] < by_distance[1]
    by_logit = [float(ood.score(sec, probs=None, features=f, bank_unit=unit,
                                logits=np.array([[top, 0, 0, 0, 0]]))[0]) for top in (6, 3, 0)]
    assert by_logit == sorted(by_logit) and by_logit[0] < by_logit[-1]
    for w, part in ((1.0, by_logit), (0.0, by_distance)):  # each weight end ignores one part
        only = {**sec, "weight": w}
        vals = ([float(ood.score(only, probs=None, features=f, bank_unit=unit,
                                 logits=np.array([[top, 0, 0, 0, 0]]))[0]) for top in (6, 0)]
                if part is by_logit else
                [float(ood.score(only, probs=None, features=d, bank_unit=unit,
                                 logits=logits[:1])[0]) for d in (dirs[0], dirs[-1])])
        assert vals[0] == pytest.approx(vals[1])
    with pytest.raises(ManifestError, match="logits"):
        ood.score(sec, probs=None, features=val, bank_unit=unit)
    with pytest.raises(ManifestError, match="knn_sd"):
        ood.check_section({**sec, "knn_sd": 0.0})


def test_knn_logit_feature_norm_part():
    """The default rule's third part: weaker features (same direction, shorter) -> higher
    score; weight 0 is the two-part rule (scale-free); the part needs the lengths, refuses
    bad values, and is dropped when the rule is recalibrated for a retrained head."""
    rng = np.random.default_rng(2)
    bank = np.abs(rng.normal(size=(30, 16))).astype(np.float32)
    val = bank[:20] * rng.uniform(0.5, 2.0, size=(20, 1)).astype(np.float32)
    logits = rng.normal(size=(20, 5)) + np.array([4.0, 0, 0, 0, 0])
    sec = ood.calibrate_unknown(np.zeros((20, 5)), features=val, bank=bank, logits=logits)
    assert sec["method"] == "knn_logit_norm"
    assert sec["norm_weight"] == ood.KNN_LOGIT_NORM_WEIGHT > 0
    ood.check_section(sec)
    unit = ood.normalise_rows(bank)
    f, z = val[:1], logits[:1]
    by_length = [float(ood.score(sec, probs=None, features=c * f, bank_unit=unit,
                                 logits=z)[0]) for c in (2.0, 1.0, 0.25)]
    assert by_length == sorted(by_length) and by_length[0] < by_length[-1]
    two = ood.calibrate_unknown(np.zeros((20, 5)), features=val, bank=bank, logits=logits,
                                norm_weight=0.0)
    assert two["method"] == "knn_logit" and "norm_weight" not in two
    assert two["threshold"] != sec["threshold"]
    flat = [float(ood.score(two, probs=None, features=c * f, bank_unit=unit, logits=z)[0])
            for c in (2.0, 0.25)]
    assert flat[0] == pytest.approx(flat[1])
    # the scalar form with the length equals the vector form
    d = float(ood.knn_cosine_score(f, unit)[0])
    assert ood.knn_logit_score_1(d, float(z.max()), sec, float(ood.feature_norms(f)[0])) == \
        pytest.approx(float(ood.score(sec, probs=None, features=f, bank_unit=unit,
                                      logits=z)[0]), abs=1e-9)
    with pytest.raises(ManifestError, match="lengths"):
        ood.knn_logit_score(0.1, z[0], sec)
    with pytest.raises(ManifestError, match="length"):  # never a silent default length
        ood.knn_logit_score_1(0.1, 3.0, sec)
    # the method name carries the third part: its keys are required, and a runtime that
    # knows only knn_logit refuses the section instead of misreading it
    for key in ("norm_weight", "norm_mean", "norm_sd"):
        with pytest.raises(ManifestError, match=key):
            ood.check_section({k: v for k, v in sec.items() if k != key})
    with pytest.raises(ManifestError, match=r"norm_weight' must be in \[0, 1\)"):
        ood.check_section({**sec, "norm_weight": 1.0})
    with pytest.raises(ManifestError, match="norm_sd"):
        ood.check_section({**sec, "norm_sd": 0.0})
    with pytest.raises(ValueError, match="norm_weight must be in"):
        ood.calibrate_unknown(np.zeros((20, 5)), features=val, bank=bank, logits=logits,
                              norm_weight=-0.1)
    again = ood.recalibrate_knn_logit(sec, val, logits, ood.Int8Bank(
        np.zeros((0, 16), np.int8), 0.0, bank))
    assert again["recalibrated"] and again["method"] == "knn_logit"
    assert not {"norm_weight", "norm_mean", "norm_sd"} & set(again)


@pytest.mark.parametrize("key, value, needle", [
    ("knn_mean", "0.1", "finite number"),      # a string float() would parse
    ("weight", 7.0, "in [0, 1]"),
    ("target_tpr", 2.0, "in (0, 1)"),
    ("logit_sd", -1.0, "> 0"),
    ("threshold", True, "finite number"),      # JSON true is not a number here
])
def test_a_crafted_knn_logit_section_is_one_clean_error(key, value, needle):
    sec = {"method": "knn_logit", "threshold": 0.5, "weight": 0.6, "knn_mean": 0.1,
           "knn_sd": 0.05, "logit_mean": -5.0, "logit_sd": 1.0, "target_tpr": 0.95}
    ood.check_section(sec)
    with pytest.raises(ManifestError, match=re.escape(needle)):
        ood.check_section({**sec, key: value})
