"""quantize (export, gate, exemplars, sweep, cli): the int8 artifact, the parity gate, the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quantize.export import QuantizeConfig, export_artifact, select_calibration
from quantize.gate import ParityGateError, gate_failure, parity_report, topk_accuracy
from quantize.runner import TFLiteRunner
from ramanedge.errors import DataError, ModelError, RamanEdgeError
from ramanedge.manifest import (
    CALIBRATION_FILE,
    EXEMPLARS_FILE,
    HEAD_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    VARIANT_FILES,
    read_manifest,
)

REPO = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _export(model, data, out: Path, calib: np.ndarray | None = None, **cfg):
    Xtr, ytr = data.part("train")
    Xva, _ = data.part("val")
    Xte, yte = data.part("test")
    if calib is None:
        calib = Xtr[select_calibration(ytr, 60)]
    return export_artifact(
        model, labels=list(data.labels), model_config=model.ramanedge_config, calib_X=calib,
        val_X=Xva, test_X=Xte, test_y=yte, out_dir=out,
        training_meta={"dataset": "synthetic", "split_sha256": "0" * 64},
        config=QuantizeConfig(**cfg),
    )


# ------------------------------------------------------------------ calibration selection


def test_select_calibration_is_stratified_seeded_and_proportional() -> None:
    y = np.repeat(np.arange(5), [100, 50, 30, 15, 5])
    idx = select_calibration(y, 41, seed=3)
    assert idx.size == 41 and np.unique(idx).size == 41 and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=5)
    assert np.all(counts >= 1)  # every class is represented
    expected = 41 * np.bincount(y) / y.size
    assert np.all(np.abs(counts - expected) <= 1.5), (counts, expected)
    assert np.array_equal(idx, select_calibration(y, 41, seed=3))
    assert not np.array_equal(idx, select_calibration(y, 41, seed=4))
    assert np.array_equal(select_calibration(y, 10_000), np.arange(y.size))
    small = select_calibration(y, 3)  # fewer than classes: still distinct classes
    assert np.unique(y[small]).size == 3
    with pytest.raises(DataError, match="training split is empty"):
        select_calibration(np.array([], dtype=int), 5)


def test_calibration_indices_stratify_by_the_given_labels_only() -> None:
    """A few-label run's draw: the given labels are strata, every spectrum without one (its
    hidden label never read) is one more stratum; all given: the plain draw."""
    from ramanedge.splits import calibration_indices

    y = np.repeat(np.arange(5), [100, 50, 30, 15, 5])
    assert np.array_equal(calibration_indices(y, None, 41, seed=3),
                          select_calibration(y, 41, seed=3))
    assert np.array_equal(calibration_indices(y, np.ones(y.size, bool), 41, seed=3),
                          select_calibration(y, 41, seed=3))
    given = np.arange(y.size) % 3 == 0
    idx = calibration_indices(y, given, 41, seed=3)
    assert np.array_equal(idx, select_calibration(np.where(given, y, -1), 41, seed=3))
    assert (~given[idx]).sum() >= 20  # the unlabelled two thirds: a stratum of its own
    scrambled = np.where(given, y, (y + 1) % 5)  # hidden labels changed: the same draw
    assert np.array_equal(calibration_indices(scrambled, given, 41, seed=3), idx)


# ------------------------------------------------------------------ gate arithmetic


def test_parity_report_and_gate_thresholds() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    f = np.eye(4)[y] * 0.7 + 0.1  # float model: always right
    q = f.copy()
    q[:2] = np.eye(4)[(y[:2] + 1) % 4] * 0.7 + 0.1  # int8: 2 of 200 wrong
    r = parity_report(f, q, y)
    assert r.float_top1 == 1.0 and r.int8_top1 == pytest.approx(0.99)
    assert r.agreement == pytest.approx(0.99) and r.n_test == 200
    assert r.drop_points == pytest.approx(1.0)
    assert gate_failure(r) is None  # exactly at the limits passes
    q[2] = np.eye(4)[(y[2] + 1) % 4] * 0.7 + 0.1  # 3 of 200 wrong: 1.5 points
    r = parity_report(f, q, y)
    reason = gate_failure(r)
    assert reason and "top-1 dropped 1.50 points" in reason and "agreement" not in reason
    assert gate_failure(r, max_top1_drop=2.0) is None
    reason = gate_failure(r, max_top1_drop=2.0, min_agreement=0.99)
    assert reason and "argmax agreement 98.50% < 99%" in reason
    m = r.to_metrics()
    assert m["float"]["top1"] == 1.0 and m["int8"]["top1"] == pytest.approx(0.985)
    assert m["drop_points"] == pytest.approx(1.5) and m["n_test"] == 200


def test_topk_accuracy_ties_and_k_larger_than_classes() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert topk_accuracy(p, np.array([0, 2]), 1) == 1.0  # tie -> lower id, as argmax
    assert topk_accuracy(p, np.array([1, 1]), 1) == 0.0
    assert topk_accuracy(p, np.array([1, 0]), 2) == 0.5
    assert topk_accuracy(p, np.array([2, 0]), 10) == 1.0


# ------------------------------------------------------------------ the written artifact


def test_artifact_contract(tiny_artifact: Path, tiny_keras_model, synthetic_data) -> None:
    m = read_manifest(tiny_artifact)
    d = m.data
    k = len(synthetic_data.labels)
    assert m.labels == list(synthetic_data.labels)
    assert d["model"]["precision"] == "int8"
    assert d["model"]["config"] == tiny_keras_model.ramanedge_config.to_dict()
    assert d["normalisation"] == {"method": "max"}
    assert d["grid"] == {"start": 200.0, "step": 1.0, "n_points": 1392}
    assert d["head"] == {"file": "head.npz", "feature_dim": 64, "n_classes": k,
                         "base_output": "head", "dtype": "float16"}
    assert d["training"]["dataset"] == "synthetic"
    runner = TFLiteRunner(tiny_artifact / MODEL_FILE)
    inp = runner.interpreter.get_input_details()
    outs = {o["index"]: o for o in runner.interpreter.get_output_details()}
    assert len(inp) == 1 and len(outs) == 2
    qi = d["quantization"]["input"]
    assert qi["index"] == inp[0]["index"] and qi["shape"] == [1, 1392] and qi["dtype"] == "int8"
    assert (qi["scale"], qi["zero_point"]) == pytest.approx(inp[0]["quantization"])
    for name, shape in (("probs", [1, k]), ("features", [1, 64])):
        e = d["quantization"]["outputs"][name]
        o = outs[e["index"]]  # the recorded index is the interpreter's tensor of that output
        assert list(o["shape"]) == shape == e["shape"]
        assert np.dtype(o["dtype"]) == np.int8 and e["dtype"] == "int8"
        assert (e["scale"], e["zero_point"]) == pytest.approx(o["quantization"])
    assert d["quantization"]["outputs"]["probs"]["scale"] == pytest.approx(1 / 256)
    # head.npz: the Keras probs layer, W stored as float16 (default), b float32, no pickle
    with np.load(tiny_artifact / HEAD_FILE, allow_pickle=False) as z:
        W, b = z["W"], z["b"]
    kw, kb = tiny_keras_model.get_layer("probs").get_weights()
    assert W.dtype == np.float16 and W.shape == (64, k) and b.shape == (k,)
    np.testing.assert_array_equal(W, kw.astype(np.float16))
    np.testing.assert_array_equal(b, kb)
    # metrics and the unknown threshold (calibrated on the validation split)
    met = d["metrics"]
    assert met["gate"]["passed"] is True
    assert met["n_test"] == int(np.sum(synthetic_data.split == "test"))
    assert met["agreement"] >= 0.98 and met["drop_points"] <= 1.0
    assert met["gate"]["on"] == "head" and d["head"]["base_output"] == "head"
    assert met["head"]["agreement"] >= 0.98 and met["head"]["drop_points"] <= 1.0
    assert 0.0 <= met["int8_ties"] <= 0.05
    assert met["features"]["cosine_mean"] > 0.99
    assert d["unknown"]["method"] == "max_prob" and d["unknown"]["split"] == "val"
    assert d["unknown"]["n_calibration"] == int(np.sum(synthetic_data.split == "val"))
    assert 0.0 < d["unknown"]["threshold"] <= 1.0


def test_artifact_loads_in_edge_runtime(tiny_artifact: Path) -> None:
    """The rover-side loader accepts what the quantiser writes (cross-package contract)."""
    artifact = pytest.importorskip("edge_runtime.artifact")
    art = artifact.load_artifact(tiny_artifact)
    assert art.feature_dim == 64 and len(art.labels) == 4


def test_int8_outputs_match_keras(tiny_artifact: Path, tiny_keras_model, synthetic_data) -> None:
    from quantize.convert import dual_output_model

    X = synthetic_data.X
    ref = dual_output_model(tiny_keras_model).predict(X, verbose=0)
    q = TFLiteRunner(tiny_artifact / MODEL_FILE).run(X)
    assert q["probs"].shape == (X.shape[0], 4) and q["features"].shape == (X.shape[0], 64)
    agree = np.mean(q["probs"].argmax(1) == ref["probs"].argmax(1))
    assert agree >= 0.99
    assert np.abs(q["probs"] - ref["probs"]).mean() < 0.02
    cos = np.sum(q["features"] * ref["features"], 1) / (
        np.linalg.norm(q["features"], axis=1) * np.linalg.norm(ref["features"], axis=1))
    assert cos.min() > 0.98
    # the float head on the int8 features (what the onboard retrainer builds on) agrees too
    with np.load(tiny_artifact / HEAD_FILE, allow_pickle=False) as z:
        logits = q["features"] @ z["W"] + z["b"]
    assert np.mean(logits.argmax(1) == q["probs"].argmax(1)) >= 0.98


@pytest.mark.slow
def test_variants_gate_failure_and_no_damage(tmp_path: Path, tiny_keras_model,
                                             synthetic_data) -> None:
    """--also writes float variants; a broken calibration is refused and destroys nothing."""
    out = tmp_path / "models" / "tiny"
    res = _export(tiny_keras_model, synthetic_data, out, also=("float32", "float16"))
    d = res.manifest.data
    assert set(d["files"]) == {MODEL_FILE, HEAD_FILE, *VARIANT_FILES.values()}
    sizes = {f: (out / f).stat().st_size for f in d["files"]}
    assert sizes == res.sizes
    assert (sizes[MODEL_FILE] < sizes[VARIANT_FILES["float16"]]
            < sizes[VARIANT_FILES["float32"]])
    for p in ("float32", "float16"):
        v = d["variants"][p]
        assert v["file"] == f"model_{p}.tflite" and v["agreement"] >= 0.99
        runner = TFLiteRunner(out / v["file"])
        assert np.dtype(runner.input["dtype"]) == np.float32
    before = _tree(out)
    Xtr, _ = synthetic_data.part("train")
    for broken in (np.zeros_like(Xtr[:40]), Xtr[:40] * 1000.0):
        with pytest.raises(ParityGateError,
                           match=r"parity gate \(float head on int8 features\) failed.*"
                                 r"nothing was written"):
            _export(tiny_keras_model, synthetic_data, out, calib=broken, overwrite=True)
        assert _tree(out) == before  # the old artifact is intact
        assert [p.name for p in out.parent.iterdir()] == ["tiny"]  # no temp folders left
    with pytest.raises(ParityGateError, match=r"int8 parity gate failed"):
        _export(tiny_keras_model, synthetic_data, out, calib=Xtr[:40] * 1000.0, overwrite=True,
                gate_on="probs")
    assert _tree(out) == before
    # and with --allow-accuracy-drop it is written, with the failure recorded
    forced = _export(tiny_keras_model, synthetic_data, tmp_path / "forced",
                     calib=np.zeros_like(Xtr[:40]), allow_accuracy_drop=True)
    g = forced.manifest.data["metrics"]["gate"]
    assert g["passed"] is False and g["allow_accuracy_drop"] is True
    assert forced.gate_reason and forced.manifest.data["metrics"]["agreement"] < 0.98
    read_manifest(tmp_path / "forced")


def test_destination_rules(tmp_path: Path, tiny_artifact: Path, tiny_keras_model,
                           synthetic_data) -> None:
    import shutil

    existing = tmp_path / "existing"
    shutil.copytree(tiny_artifact, existing)
    before = _tree(existing)
    with pytest.raises(DataError, match="already holds an artifact; pass --overwrite"):
        _export(tiny_keras_model, synthetic_data, existing)
    assert _tree(existing) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a model artifact"):
        _export(tiny_keras_model, synthetic_data, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        _export(tiny_keras_model, synthetic_data, afile)
    # an onboard head store beside the old artifact (mission data) survives --overwrite
    from edge_runtime.classify import Classifier
    from edge_runtime.headstore import HeadStore

    clf = Classifier.from_dir(existing)
    Xte, _ = synthetic_data.part("test")
    HeadStore.open(clf.artifact, create=True).add_sample("newite", Xte[0],
                                                         clf.features_int8(Xte[0]))
    res = _export(tiny_keras_model, synthetic_data, existing, overwrite=True)
    assert res.out_dir == existing and read_manifest(existing).name == "existing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "existing", "other"]
    kept = HeadStore.open(Classifier.from_dir(existing).artifact).samples()
    assert [(s.label, s.id) for s in kept] == [("newite", "000001")]
    assert np.array_equal(kept[0].grid, Xte[0].astype(np.float32))


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"labels": ["a", "b"]}, DataError, "2 labels given but the model has 4 outputs"),
        ({"test_X": np.zeros((3, 100), np.float32)}, DataError, r"shape \(N, 1392\)"),
        ({"val_X": np.zeros((0, 1392), np.float32)}, DataError, "validation split is empty"),
        ({"calib_X": np.full((2, 1392), np.nan, np.float32)}, DataError, "NaN"),
        ({"test_y": np.full(80, 9)}, DataError, r"class ids in 0\.\.3"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, tiny_keras_model, synthetic_data, change,
                                error, message) -> None:
    Xtr, ytr = synthetic_data.part("train")
    Xva, _ = synthetic_data.part("val")
    Xte, yte = synthetic_data.part("test")
    kw = dict(labels=list(synthetic_data.labels), model_config=tiny_keras_model.ramanedge_config,
              calib_X=Xtr[:10], val_X=Xva, test_X=Xte, test_y=yte, out_dir=tmp_path / "o")
    kw.update(change)
    with pytest.raises(error, match=message):
        export_artifact(tiny_keras_model, **kw)
    assert not (tmp_path / "o").exists()


def test_quantize_config_validation() -> None:
    assert QuantizeConfig(also=("Float32", " float16", "float32")).also == ("float32", "float16")
    with pytest.raises(ValueError, match="unknown extra precision"):
        QuantizeConfig(also=("int4",))
    with pytest.raises(ValueError, match="calib_size"):
        QuantizeConfig(calib_size=0)
    with pytest.raises(ValueError, match="gate_on"):
        QuantizeConfig(gate_on="logits")
    with pytest.raises(ValueError, match="head_dtype must be one of float16, float32"):
        QuantizeConfig(head_dtype="int8")


@pytest.mark.slow
def test_a_float32_head_is_stored_exactly_and_the_float16_one_halves_the_file(
        tmp_path: Path, tiny_keras_model, synthetic_data, tiny_artifact: Path) -> None:
    """Issue 14.1: the float16 head (default) is half the bytes; the gate's head figures are
    those of the head that was stored (rounded), float32 keeps the Keras weights exactly."""
    res = _export(tiny_keras_model, synthetic_data, tmp_path / "f32", head_dtype="float32")
    with np.load(res.out_dir / HEAD_FILE, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["W"], tiny_keras_model.get_layer("probs").get_weights()[0])
    assert res.manifest.data["head"]["dtype"] == "float32"
    with np.load(tiny_artifact / HEAD_FILE) as a, np.load(res.out_dir / HEAD_FILE) as c:
        assert 2 * a["W"].nbytes == c["W"].nbytes
    assert (tiny_artifact / HEAD_FILE).stat().st_size < (res.out_dir / HEAD_FILE).stat().st_size
    from edge_runtime.classify import Classifier

    Xte, yte = synthetic_data.part("test")
    for art in (tiny_artifact, res.out_dir):  # what the gate recorded is what the rover gets
        clf = Classifier.from_dir(art, use_head_store=False)
        top1 = float(np.mean(clf.artifact.head.probs(clf.features_batch(Xte)).argmax(1) == yte))
        assert top1 == pytest.approx(read_manifest(art).data["metrics"]["head"]["top1"])


def test_model_without_named_layers_is_refused(tmp_path: Path, synthetic_data) -> None:
    import keras

    inp = keras.Input((1392,))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(inp))
    from trainer.model import ModelConfig

    Xte, yte = synthetic_data.part("test")
    with pytest.raises(ModelError, match="no layers named 'probs' and 'features'"):
        export_artifact(model, labels=list(synthetic_data.labels),
                        model_config=ModelConfig(arch="paper"),
                        calib_X=Xte, val_X=Xte, test_X=Xte, test_y=yte, out_dir=tmp_path / "o")


def test_calibration_sweep_measures_without_writing(tmp_path: Path, monkeypatch,
                                                    tiny_keras_model, synthetic_data) -> None:
    from quantize.sweep import calibration_sweep, sweep_table

    monkeypatch.chdir(tmp_path)
    Xtr, ytr = synthetic_data.part("train")
    Xte, yte = synthetic_data.part("test")
    rows = calibration_sweep(tiny_keras_model, train_X=Xtr, train_y=ytr, test_X=Xte,
                             test_y=yte, sizes=(8, None), seeds=(0, 1))
    assert [(r["size"], r["seed"], r["n"]) for r in rows] == [(8, 0, 8), (8, 1, 8),
                                                               ("all", 0, len(ytr))]
    for r in rows:
        assert r["float_top1"] == pytest.approx(1.0) and r["agreement"] >= 0.98
        assert 0.0 <= r["ties"] <= 1.0 and r["input_scale"] > 0
    table = sweep_table(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("| 8 | 2 |") and "| all | 1 |" in table[3]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ CLI


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ramanedge.cli", "quantize", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs/does-not-exist", "--out", "{tmp}/m"], "run folder runs/does-not-exist does not"),
        (["{tmp}", "--out", "{tmp}/m"], "is not a training run: missing"),
        (["{tmp}"], "--out is required"),
        (["{tmp}", "--out", "{tmp}/m", "--also", "int4"], "unknown extra precision"),
        (["{tmp}", "--out", "{tmp}/m", "--calib-size", "0"], "--calib-size"),
        (["--check", "edgetpu", "{tmp}/none"], "does not exist"),
        (["{tmp}", "--calib-sweep", "20,x"], "--calib-sweep"),
        (["{tmp}", "--calib-sweep", "20", "--seeds", "a"], "--seeds"),
        (["{tmp}/nope", "--calib-sweep", "20"], "does not exist"),
        (["{tmp}/f.json", "--out", "{tmp}/m"], "is a file, not a run folder"),
        (["{tmp}", "--out", "{tmp}/m", "--set-level", "nan"], "--set-level"),
        (["--check", "edgetpu", "{tmp}", "--out", "{tmp}/m"], "--check measures and writes"),
        (["{tmp}", "--calib-sweep", "20", "--out", "{tmp}/m"], "--calib-sweep measures"),
        (["{tmp}", "--out", "{tmp}/m", "--name", "a\x1bb"], "--name"),
    ],
)
def test_cli_bad_input_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "f.json").write_text("{}")
    r = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.lower().startswith(("error", "usage"))]
    assert errors, r.stderr
    assert not (tmp_path / "m").exists()


def test_cli_refuses_existing_artifact_without_loading(tmp_path: Path, tiny_artifact: Path) -> None:
    import shutil

    out = tmp_path / "m"
    shutil.copytree(tiny_artifact, out)
    before = _tree(out)
    run = tmp_path / "run"
    run.mkdir()
    r = _cli(str(run), "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: --out")
    assert "pass --overwrite" in r.stderr and _tree(out) == before


class FakeRun:
    """What ``trainer.run.load_run`` returns, on the tiny model and the synthetic data."""

    def __init__(self, model, data) -> None:
        self.model = model
        self.labels = list(data.labels)
        self.model_config = model.ramanedge_config
        self.config = {"data": {"dataset": "synthetic", "split": "grouped",
                                "min_spectra": 8}, "split_sha256": "ab" * 32,
                       "created": "2026-01-01T00:00:00+00:00"}
        self.data = data

    def subset(self, name: str):
        return self.data.part(name)

    def labelled_mask(self):
        return np.ones(len(self.data.part("train")[1]), dtype=bool)  # fully labelled


def test_cli_end_to_end_with_a_run(tmp_path: Path, monkeypatch, tiny_keras_model,
                                   synthetic_data) -> None:
    """The CLI glue: load_run -> calibration draw from train -> export -> summary line."""
    from click.testing import CliRunner

    import trainer.run as trun
    from quantize.cli import quantize

    fake = FakeRun(tiny_keras_model, synthetic_data)
    seen = {}

    def fake_load_run(run_dir, *, data_root=None, **_):
        seen["run_dir"], seen["data_root"] = Path(run_dir), data_root
        return fake

    monkeypatch.setattr(trun, "load_run", fake_load_run)
    run_dir = tmp_path / "runs" / "syn"
    run_dir.mkdir(parents=True)
    out = tmp_path / "models" / "syn"
    res = CliRunner().invoke(quantize, [str(run_dir), "--out", str(out), "--calib-size", "30",
                                        "--also", "float32"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "agreement" in res.output
    m = read_manifest(out)
    assert m.data["training"]["split_sha256"] == "ab" * 32
    assert m.data["training"]["run"] == "syn" and m.data["training"]["dataset"] == "synthetic"
    assert m.data["quantization"]["calibration"]["n"] == 30
    assert VARIANT_FILES["float32"] in m.files
    assert seen["run_dir"] == run_dir
    # exemplars (default 10 per class) were attached before the folder was placed
    assert m.data["head"].get("exemplars") == EXEMPLARS_FILE and EXEMPLARS_FILE in m.files
    u = m.data["unknown"]  # the default rule with exemplars: distance + max logit + norm
    assert u["method"] == "knn_logit_norm" and u["norm_weight"] == 0.2
    assert u["weight"] == 0.6 and u["knn_sd"] > 0
    assert u["file"] == CALIBRATION_FILE and CALIBRATION_FILE in m.files
    assert sorted(p.name for p in out.parent.iterdir()) == ["syn"]
    res = CliRunner().invoke(quantize, [str(run_dir), "--out", str(out), "--overwrite",
                                        "--exemplars", "0"])
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    assert EXEMPLARS_FILE not in m.files and m.data["unknown"]["method"] == "max_prob"
    assert not (out / EXEMPLARS_FILE).exists()


def test_a_few_label_run_keeps_its_library_to_the_labels_it_was_given(
        tmp_path: Path, monkeypatch, tiny_keras_model, synthetic_data) -> None:
    """quantize_run of a run given part of its training labels: the library holds those
    labelled training spectra only (not the validation ones, the default for a fully
    labelled run), and the manifest says so."""
    import trainer.run as trun
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.library import LibraryConfig

    class FewLabelRun(FakeRun):
        def labelled_mask(self):
            m = np.zeros(len(self.data.part("train")[1]), dtype=bool)
            m[::3] = True
            return m

    cfg = QuantizeConfig(calib_size=30, library=LibraryConfig(), allow_accuracy_drop=True)
    assert cfg.library_with_validation
    n_train, n_val = (len(synthetic_data.part(p)[1]) for p in ("train", "val"))
    for cls, rows, parts in ((FewLabelRun, len(range(0, n_train, 3)), ["train"]),
                             (FakeRun, n_train + n_val, ["train", "val"])):
        fake = cls(tiny_keras_model, synthetic_data)
        monkeypatch.setattr(trun, "load_run", lambda run_dir, *, data_root=None, f=fake, **_: f)
        out = tmp_path / cls.__name__
        res = quantize_run(tmp_path, out, config=cfg)
        lib = res.manifest.data["library"]
        assert (lib["rows"], lib["parts"]) == (rows, parts)
        assert res.manifest.library_parts == tuple(parts)


def test_export_computes_everything_then_writes_the_manifest_once(
        tmp_path: Path, monkeypatch, tiny_keras_model, synthetic_data) -> None:
    """Issue 15.2: with exemplars, quantize_run builds every section first (exemplars and the
    knn_cosine rule included), writes the manifest exactly once and runs the int8 model in
    one interpreter; the exemplar file holds the model's own int8 codes."""
    import quantize.place
    import quantize.runner
    import ramanedge.manifest as contract
    import trainer.run as trun
    from edge_runtime.artifact import load_artifact
    from edge_runtime.interpreter import (
        dequantize_int8,
        make_interpreter,
        quantize_int8,
        set_input_int8,
    )
    from quantize.exemplars import select_exemplars
    from quantize.export import quantize_run

    calls: dict[str, list] = {"write_manifest": [], "manifest.json": [], "interpreters": []}

    def counting(key, real):
        def f(*args, **kwargs):
            calls[key].append(args[0])
            return real(*args, **kwargs)
        return f

    write = counting("write_manifest", contract.write_manifest)
    monkeypatch.setattr(contract, "write_manifest", write)
    monkeypatch.setattr(quantize.place, "write_manifest", write)
    real_atomic = contract.atomic_write_text

    def atomic(path, *args, **kwargs):  # every manifest.json written, by whatever name
        if Path(path).name == MANIFEST_NAME:
            calls["manifest.json"].append(path)
        return real_atomic(path, *args, **kwargs)

    monkeypatch.setattr(contract, "atomic_write_text", atomic)
    monkeypatch.setattr(quantize.runner, "make_interpreter",
                        counting("interpreters", quantize.runner.make_interpreter))
    monkeypatch.setattr(trun, "load_run",
                        lambda *_a, **_k: FakeRun(tiny_keras_model, synthetic_data))
    out = tmp_path / "models" / "once"
    res = quantize_run(tmp_path / "run", out,
                       config=QuantizeConfig(calib_size=30, exemplars_per_class=3))
    assert len(calls["write_manifest"]) == 1 and len(calls["manifest.json"]) == 1
    assert len(calls["interpreters"]) == 1  # the int8 model: gate, val, exemplars
    assert sorted(p.name for p in out.parent.iterdir()) == ["once"]
    m = read_manifest(out)
    assert m.data == json_round_trip(res.manifest.data)
    assert set(m.files) == {MODEL_FILE, HEAD_FILE, EXEMPLARS_FILE, CALIBRATION_FILE} \
        == set(res.sizes)
    # the prediction sets, calibrated on the validation split in the same pass
    c = m.data["conformal"]
    assert c["method"] == "lac" and c["level"] == 0.95 and c["split"] == "val"
    assert c["file"] == CALIBRATION_FILE
    assert c["n_calibration"] == len(synthetic_data.part("val")[1])
    assert m.data["head"]["exemplars"] == EXEMPLARS_FILE
    assert m.data["head"]["exemplars_per_class"] == 3
    u = m.data["unknown"]
    assert u["method"] == "knn_logit_norm" and u["split"] == "val" and u["n_bank"] == 12
    assert u["previous"]["method"] == "max_prob" and "previous" not in u["previous"]
    assert u["target_tpr"] == u["previous"]["target_tpr"] == 0.95

    # the stored codes are the int8 model's raw outputs for the herded training spectra
    art = load_artifact(out)
    fq = art.features_q
    it = make_interpreter(art.model_path)
    Xtr, ytr = synthetic_data.part("train")
    raw = np.empty((len(Xtr), art.feature_dim), dtype=np.int8)
    for i, x in enumerate(Xtr):
        set_input_int8(it, x, art.input_q)
        it.invoke()
        raw[i] = it.get_tensor(fq.index).reshape(-1)
    codes = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(quantize_int8(dequantize_int8(codes, fq), fq), codes)
    idx = select_exemplars(dequantize_int8(raw, fq), ytr, per_class=3)
    with np.load(out / EXEMPLARS_FILE, allow_pickle=False) as z:
        assert z["features"].dtype == np.int8
        np.testing.assert_array_equal(z["features"], raw[idx])
        np.testing.assert_array_equal(z["y"], ytr[idx].astype(np.int32))


def json_round_trip(d: dict) -> dict:
    import json

    return json.loads(json.dumps(d))


def test_requantising_dequantised_int8_features_is_exact() -> None:
    """build_exemplars recovers the model's int8 codes from run_int8_batch's float output:
    exact for every code, scale and zero point; anything off the grid is refused."""
    from edge_runtime.interpreter import QuantParams, dequantize_int8, quantize_int8
    from quantize.exemplars import build_exemplars

    rng = np.random.default_rng(0)
    codes = np.arange(-128, 128, dtype=np.int8)
    for scale in 10.0 ** rng.uniform(-12, 12, 300):
        qp = QuantParams(index=0, scale=float(scale), zero_point=int(rng.integers(-128, 128)),
                         shape=(1, 256))
        assert np.array_equal(quantize_int8(dequantize_int8(codes, qp), qp), codes)
    qp = QuantParams(index=0, scale=0.05, zero_point=-7, shape=(1, 8))
    q = rng.integers(-128, 128, (20, 8)).astype(np.int8)
    y = np.repeat(np.arange(4), 5)
    bank = build_exemplars(dequantize_int8(q, qp), y, qp, per_class=2)
    assert bank.codes.dtype == np.int8 and bank.y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(any(np.array_equal(c, r) for r in q) for c in bank.codes)
    with pytest.raises(ModelError, match="not the int8 model's dequantised outputs"):
        build_exemplars(dequantize_int8(q, qp) + 0.01, y, qp, per_class=2)


def test_export_needs_the_training_split_for_exemplars(tmp_path: Path, tiny_keras_model,
                                                       synthetic_data) -> None:
    with pytest.raises(DataError, match=r"exemplars_per_class=3 needs the training split"):
        _export(tiny_keras_model, synthetic_data, tmp_path / "o", exemplars_per_class=3)
    with pytest.raises(ValueError, match="exemplars_per_class"):
        QuantizeConfig(exemplars_per_class=-1)
    assert not (tmp_path / "o").exists()


PRODUCT_PACKAGES = ("ramanedge", "trainer", "quantize", "edge_runtime", "device_sim",
                    "benchmarks")


def _product_lines(pattern: re.Pattern[str], home: Path) -> list[str]:
    """``path:line: text`` of every product source line matching ``pattern``, but in ``home``."""
    found = []
    for pkg in PRODUCT_PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if path == home:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    return found


def test_no_tflite_interpreter_is_built_outside_make_interpreter() -> None:
    """Issue 15.1: one int8 runtime path. Only edge_runtime/interpreter.py names the runtime's
    Interpreter class; everything else asks make_interpreter."""
    home = REPO / "edge_runtime" / "interpreter.py"
    pattern = re.compile(r"Interpreter\s*\(|import\s.*\bInterpreter\b|\.Interpreter\b"
                         r"|interpreter_cls\s*\(")
    assert _product_lines(pattern, home) == []
    assert pattern.search(home.read_text(encoding="utf-8"))  # the pattern does find it there


def test_artifact_file_names_are_spelled_only_in_the_manifest_module() -> None:
    """Issue 15.2: ``ramanedge.manifest`` defines the names; product code and benchmarks use
    the constants (no literal, no second definition)."""
    names = [MANIFEST_NAME, MODEL_FILE, HEAD_FILE, EXEMPLARS_FILE, *VARIANT_FILES.values()]
    literal = "[\"'](" + "|".join(re.escape(n) for n in names) + ")[\"']"
    defined = (r"^\s*(MANIFEST_NAME|MODEL_FILE|HEAD_FILE|DEFAULT_HEAD_FILE|EXEMPLARS_FILE|"
               r"VARIANT_FILES)\s*[:=]")
    home = REPO / "ramanedge" / "manifest.py"
    assert _product_lines(re.compile(f"{literal}|{defined}"), home) == []
    assert re.search(literal, home.read_text(encoding="utf-8"))


def test_errors_are_ramanedge_errors() -> None:
    assert issubclass(ParityGateError, RamanEdgeError)


# ------------------------------------------------------------------ real RRUFF spectra

REAL_MINERALS = 6  # the most frequent minerals of rruff-raw (>= 20 spectra each)


@pytest.fixture(scope="module")
def real_setup(shared_data_root: Path, tmp_path_factory):
    """A small CNN trained on the 6 most frequent rruff-raw minerals, exported to int8.

    Returns ``(all rruff-raw spectra, Keras dual model, artifact folder, export result)``.
    The data set comes from the data layer's cache (``.cache/ramanedge`` in the repo).
    """
    import keras

    from quantize.convert import dual_output_model
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split
    from trainer.model import ModelConfig, build_model

    cache = REPO / ".cache" / "ramanedge"
    full = build_dataset(shared_data_root, "rruff-raw", min_spectra=8, cache_dir=cache)
    top = [m for m, _ in sorted(full.counts().items(), key=lambda t: (-t[1], t[0]))]
    ds = build_dataset(shared_data_root, "rruff-raw", min_spectra=8, cache_dir=cache,
                       minerals=top[:REAL_MINERALS])
    split = make_split(ds, "grouped", seed=0)
    tr, va, te = (split == s for s in ("train", "val", "test"))
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(arch="paper", dense_units=128)
    model = build_model(len(ds.labels), cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(ds.X[tr], ds.y[tr], epochs=15, batch_size=32, verbose=0)
    model.ramanedge_config = cfg
    out = tmp_path_factory.mktemp("real") / "real6"
    res = export_artifact(
        model, labels=ds.labels, model_config=cfg,
        calib_X=ds.X[tr][select_calibration(ds.y[tr], 50)], val_X=ds.X[va],
        test_X=ds.X[te], test_y=ds.y[te], out_dir=out,
        # 30 test spectra: one flip is 3.3 points, so the gate is judged on all spectra below
        config=QuantizeConfig(allow_accuracy_drop=True),
    )
    return full, dual_output_model(model), out, res


@pytest.mark.slow
@pytest.mark.realdata
def test_int8_agrees_with_keras_on_real_spectra(real_setup) -> None:
    """int8 vs Keras on every rruff-raw spectrum (1,262, 97 minerals, 91 never trained on).

    Raw RRUFF spectra carry fluorescence backgrounds and negative counts, so this checks
    what synthetic data cannot: that a calibration set drawn from the training split
    covers real inputs (few saturated input values) and that outputs stay close.
    """
    full, dual, out, res = real_setup
    assert res.parity.float_top1 >= 0.5  # the model learned something (chance: 1/6)
    ref = dual.predict(full.X, batch_size=256, verbose=0)
    runner = TFLiteRunner(out / MODEL_FILE)
    q = runner.run(full.X)
    scale, zp = runner.input["quantization"]
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    spectra = full.X
    clipped = np.mean((spectra < lo) | (spectra > hi))
    assert clipped < 0.005, f"{100 * clipped:.2f}% of real input values saturate"
    agree = np.mean(ref["probs"].argmax(1) == q["probs"].argmax(1))
    assert agree >= 0.97, agree
    assert np.abs(ref["probs"] - q["probs"]).mean() < 0.01
    f, g = ref["features"], q["features"]
    cos = np.sum(f * g, 1) / np.maximum(np.linalg.norm(f, axis=1) * np.linalg.norm(g, axis=1),
                                        1e-12)
    assert cos.mean() > 0.995 and np.percentile(cos, 1) > 0.99
    print(f"\nreal spectra (n={len(spectra)}): agreement {100 * agree:.2f}%, mean |dp| "
          f"{np.abs(ref['probs'] - q['probs']).mean():.4f}, feature cosine mean "
          f"{cos.mean():.5f} p1 {np.percentile(cos, 1):.5f}, saturated inputs "
          f"{100 * clipped:.3f}%; gate set: float {100 * res.parity.float_top1:.1f}% "
          f"int8 {100 * res.parity.int8_top1:.1f}% (n={res.parity.n_test})")
    # the manifest's figures are the measured ones
    m = read_manifest(out).data["metrics"]
    assert m["int8"]["top1"] == pytest.approx(res.parity.int8_top1)
    assert m["n_test"] == res.parity.n_test
