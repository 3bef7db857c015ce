"""Head store: add / retrain / list / rollback round trip through the CLI, exemplars, and
power-loss safety (corrupt files, SIGKILL in the middle of retraining and of adding)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.artifact import load_artifact
from edge_runtime.classify import Classifier
from edge_runtime.headstore import HeadStore
from edge_runtime.interpreter import make_interpreter
from quantize.exemplars import attach_exemplars
from ramanedge.errors import HeadStoreError
from ramanedge.grid import GRID, normalise_max
from tests.conftest import run_cli

# two minerals the tiny model never saw: peak sets unlike the four synthetic classes
NEW_PEAKS = {
    "zetaite": ((150, 1.0), (560, 0.5), (1050, 0.4)),
    "etaite": ((380, 0.4), (640, 1.0), (1250, 0.8)),
}


def new_spectra(label: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.arange(GRID.size, dtype=np.float64)
    out = []
    for _ in range(n):
        s = np.zeros(GRID.size)
        for pos, h in NEW_PEAKS[label]:
            s += h * rng.uniform(0.8, 1.2) * np.exp(
                -0.5 * ((k - pos - rng.uniform(-3, 3)) / rng.uniform(4, 9)) ** 2)
        s += rng.uniform(0, 0.4) + rng.uniform(-0.3, 0.3) * k / GRID.size
        s += rng.normal(0, 0.02, GRID.size)
        out.append(s)
    return normalise_max(np.asarray(out))


def write_csv(folder: Path, name: str, grid_spectrum: np.ndarray) -> Path:
    x = np.linspace(150.0, 1650.0, 2500)
    p = folder / name
    np.savetxt(p, np.c_[x, 1000 * np.interp(x, GRID, grid_spectrum)], delimiter=",")
    return p


@pytest.fixture
def new_files(tmp_path) -> dict[str, list[Path]]:
    """4 CSV files per new mineral: 3 to teach, the last one held out as a query."""
    d = tmp_path / "new"
    d.mkdir()
    return {lab: [write_csv(d, f"{lab}_{i}.csv", s)
                  for i, s in enumerate(new_spectra(lab, 4, seed=j))]
            for j, lab in enumerate(NEW_PEAKS)}


@pytest.fixture
def model(artifact_copy, synthetic_data) -> Path:
    """A private tiny artifact with exemplars (5 per class from the training split)."""
    Xtr, ytr = synthetic_data.part("train")
    attach_exemplars(artifact_copy, Xtr, ytr, per_class=5)
    return artifact_copy


def label_of(capsys, model: Path, f: Path, *extra) -> str:
    code, out, _ = run_cli(capsys, "classify", "--model", model, "--json", *extra, f)
    assert code == 0
    return json.loads(out)["top"][0]["label"]


def test_attach_exemplars(model, synthetic_data):
    art = load_artifact(model)  # manifest re-written: checksums verify
    assert art.manifest.data["head"]["exemplars"] == "exemplars.npz"
    assert art.unknown["method"] == "max_prob"  # no validation spectra given: rule unchanged
    assert "exemplars.npz" in art.manifest.files
    with np.load(model / "exemplars.npz", allow_pickle=False) as z:
        assert z["features"].dtype == np.int8
        assert z["features"].shape == (5 * len(art.labels), art.feature_dim)
        assert np.bincount(z["y"]).tolist() == [5] * len(art.labels)


def test_round_trip_add_retrain_list_rollback(capsys, model, new_files, synthetic_data):
    teach = {lab: files[:3] for lab, files in new_files.items()}
    code, out, _ = run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite",
                           *teach["zetaite"])
    assert code == 0 and out.count("stored as sample") == 3 and "000001" in out
    code, out, _ = run_cli(capsys, "head", "add", "--model", model, "--label", "etaite",
                           *teach["etaite"])
    assert code == 0 and "sample 000006" in out
    # the same file again: no duplicate; as another mineral: refused, nothing changes
    code, out, _ = run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite",
                           teach["zetaite"][0])
    assert code == 0 and "already stored as sample 000001" in out
    code, _, err = run_cli(capsys, "head", "add", "--model", model, "--label", "etaite",
                           teach["zetaite"][0])
    assert code == 1 and "already stored as sample 000001 labelled 'zetaite'" in err
    # a label that differs from a known one only in case would make a second class
    code, _, err = run_cli(capsys, "head", "add", "--model", model, "--label", "ZETAITE",
                           new_files["zetaite"][3])
    assert code == 1 and "differs from the known label 'zetaite' only in case" in err
    trained = synthetic_data.labels[0]
    code, _, err = run_cli(capsys, "head", "add", "--model", model, "--label",
                           trained.swapcase(), new_files["zetaite"][3])
    assert code == 1 and f"use {trained!r}" in err

    query = {lab: files[3] for lab, files in new_files.items()}
    assert label_of(capsys, model, query["zetaite"]) in synthetic_data.labels  # not known yet

    code, out, _ = run_cli(capsys, "head", "retrain", "--model", model)
    assert code == 0 and "head v0001 active: 6 classes (2 added: etaite, zetaite)" in out
    assert "6 samples + 20 exemplars" in out
    code, out, _ = run_cli(capsys, "head", "list", "--model", model)
    assert "* v0001" in out and "etaite (3), zetaite (3)" in out

    for lab, f in query.items():  # held-out spectra of the new minerals
        assert label_of(capsys, model, f) == lab
    Xte, yte = synthetic_data.part("test")  # old minerals are not forgotten
    art = load_artifact(model)
    clf = Classifier.from_dir(model)
    assert clf.head_version == "v0001"
    acc = np.mean([clf.classify_grid(x).label == synthetic_data.labels[t]
                   for x, t in zip(Xte, yte, strict=True)])
    assert acc >= art.manifest.data["metrics"]["int8"]["top1"] - 0.05

    code, out, _ = run_cli(capsys, "head", "rollback", "--model", model)
    assert code == 0 and "active head: base" in out
    assert label_of(capsys, model, query["zetaite"]) in synthetic_data.labels
    code, _, err = run_cli(capsys, "head", "rollback", "--model", model)
    assert code == 2 and "already active" in err
    code, out, _ = run_cli(capsys, "head", "rollback", "--model", model, "--to", "v0001")
    assert code == 0 and label_of(capsys, model, query["zetaite"]) == "zetaite"
    assert label_of(capsys, model, query["zetaite"], "--base-head") in synthetic_data.labels
    code, _, err = run_cli(capsys, "head", "rollback", "--model", model, "--to", "v0042")
    assert code == 2 and "base, v0001" in err


def _store_with_two_heads(model: Path, new_files) -> HeadStore:
    art = load_artifact(model)
    store = HeadStore.open(art, create=True)
    clf = Classifier(art, make_interpreter(art.model_path))
    from edge_runtime.headstore import add_spectra

    for lab, files in new_files.items():
        assert all(r[1] is not None for r in add_spectra(store, clf, lab, files[:2]))
        store.retrain()
    assert [h.version for h in store.heads()] == ["v0001", "v0002"]
    return store


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def test_corrupt_head_falls_back_to_last_good(capsys, model, new_files):
    store = _store_with_two_heads(model, new_files)
    heads = {h.version: h.path for h in store.heads()}
    _flip_byte(heads["v0002"])
    fresh = HeadStore.open(store.artifact)
    assert fresh.active_version() == "v0001"
    assert any("v0002" in p and "corrupt" in p for p in fresh.problems)
    assert "etaite" not in fresh.active_head().labels  # v0001 only knew zetaite
    code, out, err = run_cli(capsys, "classify", "--model", model, "--json",
                             new_files["zetaite"][3])
    assert code == 0 and json.loads(out)["head"] == "v0001" and "warning:" in err
    heads["v0001"].write_bytes(heads["v0001"].read_bytes()[:100])  # torn
    assert HeadStore.open(store.artifact).active_version() == "base"
    with pytest.raises(HeadStoreError, match="not a good head"):
        HeadStore.open(store.artifact).activate("v0002")
    # a new retrain never overwrites the damaged versions, and works again
    assert HeadStore.open(store.artifact).retrain().version == "v0003"


def test_corrupt_sample_pointer_and_stray_temp_files(model, new_files):
    store = _store_with_two_heads(model, new_files)
    samples = sorted((store.root / "samples").iterdir())
    assert len(samples) == 4
    _flip_byte(samples[0])
    (store.root / "samples" / ".000005-0123456789abcdef.npz.x1.tmp").write_bytes(b"torn")
    (store.root / "heads" / ".v0003-0123456789abcdef.npz.x2.tmp").write_bytes(b"torn")
    (store.root / "active.json").write_text('{"active": "v0001", "sha256": "bad"}')
    fresh = HeadStore.open(store.artifact)
    assert [s.seq for s in fresh.samples()] == [2, 3, 4]
    assert fresh.active_version() == "v0002"  # corrupt pointer: newest good head
    assert any("active.json" in p for p in fresh.problems)
    assert any(samples[0].name in p for p in fresh.problems)
    assert fresh.retrain().meta["n_samples"] == 3
    clf = Classifier(fresh.artifact, make_interpreter(fresh.artifact.model_path))
    s, created = fresh.add_sample("zetaite", clf.preprocess(*_xy(new_files["zetaite"][3])),
                                  clf.features_int8(clf.preprocess(*_xy(
                                      new_files["zetaite"][3]))))
    assert created and s.seq == 5  # numbers are never reused


def _xy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    a = np.loadtxt(path, delimiter=",")
    return a[:, 0], a[:, 1]


CRASH_CHILD = Path(__file__).with_name("headstore_crash_child.py")


def _spawn(args: list[str], cwd: Path, step: str) -> subprocess.Popen:
    """``ramanedge ARGS`` in a child whose head stores pause at checkpoint ``step``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.Popen([sys.executable, str(CRASH_CHILD), step, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_at(proc: subprocess.Popen, step: str, timeout: float = 60.0) -> str:
    """Read the child's stderr until it announces ``PAUSE step``, then SIGKILL it."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.strip() == f"PAUSE {step}":
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return proc.stdout.read()
    proc.kill()
    raise AssertionError(f"child never reached {step}: {''.join(seen)}")


@pytest.mark.parametrize("step", ["before-head-write", "after-head-write"])
def test_sigkill_during_retrain_keeps_store_usable(model, new_files, tmp_path, step):
    store = _store_with_two_heads(model, new_files)
    store.rollback("v0001")
    n_samples = len(store.samples())
    proc = _spawn(["head", "retrain", "--model", str(model)], tmp_path, step)
    _kill_at(proc, step)
    fresh = HeadStore.open(store.artifact)
    assert fresh.active_version() == "v0001"  # the interrupted retrain never became active
    assert len(fresh.samples()) == n_samples and not fresh.problems
    versions = [h.version for h in fresh.heads()]
    assert versions == (["v0001", "v0002"] if step == "before-head-write"
                        else ["v0001", "v0002", "v0003"])
    assert fresh.retrain().version == f"v{len(versions) + 1:04d}"  # and it still works


def test_sigkill_during_add_loses_no_acknowledged_sample(model, new_files, tmp_path):
    files = [str(p) for p in new_files["zetaite"]]
    proc = _spawn(["head", "add", "--model", str(model), "--label", "zetaite", *files],
                  tmp_path, "after-sample")
    out = _kill_at(proc, "after-sample")
    acked = [line for line in out.splitlines() if "stored as sample" in line]
    assert len(acked) == 1 and acked[0].startswith(files[0])
    store = HeadStore.open(load_artifact(model))
    assert [(s.seq, s.label, s.source) for s in store.samples()] == [(1, "zetaite", files[0])]
    assert not store.problems


def test_knn_unknown_rule_learns_taught_minerals(capsys, artifact_copy, synthetic_data,
                                                 new_files):
    Xtr, ytr = synthetic_data.part("train")
    Xva, _ = synthetic_data.part("val")
    attach_exemplars(artifact_copy, Xtr, ytr, per_class=5, X_val=Xva, target_tpr=0.9)
    art = load_artifact(artifact_copy)
    assert art.unknown["method"] == "knn_cosine" and art.unknown["n_bank"] == 20
    assert art.unknown["previous"]["method"] == "max_prob"
    clf = Classifier(art, make_interpreter(art.model_path))
    passed = np.mean([not clf.classify_grid(x).unknown for x in Xva])
    assert passed >= 0.85  # ~90 % of the calibration spectra pass by construction

    def score(f: Path) -> float:
        code, out, _ = run_cli(capsys, "classify", "--model", artifact_copy, "--json", f)
        assert code == 0
        return json.loads(out)["unknown_score"]

    taught, query = new_files["zetaite"][:3], new_files["zetaite"][3]
    before = [score(f) for f in (*taught, query)]
    run_cli(capsys, "head", "add", "--model", artifact_copy, "--label", "zetaite", *taught)
    code, _, _ = run_cli(capsys, "head", "retrain", "--model", artifact_copy)
    assert code == 0
    after = [score(f) for f in (*taught, query)]
    assert all(a < 1e-5 for a in after[:3])  # a taught spectrum is in the bank itself
    assert after[3] <= before[3] + 1e-9  # the bank only grew


def test_add_sample_reads_each_stored_file_once(model, monkeypatch):
    """Duplicate detection uses an index of the immutable sample files: adding the n-th
    sample reads only files it has not seen, not all n - 1 stored samples again."""
    import edge_runtime.headstore as hs

    art = load_artifact(model)
    store = HeadStore.open(art, create=True)
    rng = np.random.default_rng(0)
    fq = np.zeros(art.feature_dim, np.int8)
    grids = normalise_max(rng.uniform(0.1, 1.0, (12, GRID.size))).astype(np.float32)
    reads: list[str] = []
    real = hs._read_verified

    def counting(p, sha16):
        reads.append(Path(p).name)
        return real(p, sha16)

    monkeypatch.setattr(hs, "_read_verified", counting)
    for g in grids[:10]:
        assert store.add_sample("zetaite", g, fq)[1]
    assert reads == []  # its own writes are indexed without reading them back
    # another store object (another process) reads the index file, no sample file
    other = HeadStore.open(art)
    assert other.add_sample("etaite", grids[10], fq)[1]
    assert other.add_sample("etaite", grids[11], fq)[1]
    assert reads == []
    assert other.sample_counts() == {"zetaite": 10, "etaite": 2}
    # a duplicate is still found (reading just that file) and a relabel still refused
    s, created = other.add_sample("zetaite", grids[3], fq)
    assert not created and s.seq == 4 and len(reads) == 1
    with pytest.raises(HeadStoreError, match="already stored as sample 0*4 "):
        other.add_sample("etaite", grids[3], fq)
    # the first store picks up the other's appended lines: it reads just the match
    n = len(reads)
    s, created = store.add_sample("etaite", grids[11], fq)
    assert not created and s.seq == 12 and len(reads) == n + 1
    # the index is derived data: torn, damaged or lost, it is rebuilt from the sample files
    idx = store.root / "index.jsonl"
    lines = idx.read_bytes().splitlines(keepends=True)
    assert len(lines) == 12
    idx.write_bytes(lines[0][:-1].replace(b"zetaite", b"zetaitX") + b"\n"
                    + b"".join(lines[1:11]) + lines[11][:20])
    reads.clear()
    fresh = HeadStore.open(art)
    assert fresh.sample_counts() == {"zetaite": 10, "etaite": 2}
    names = [json.loads(ln.split(b" ", 1)[1])["name"] for ln in lines]
    assert sorted(reads) == sorted([names[0], names[11]])  # just the two lines damaged
    assert HeadStore.open(art).sample_counts() == {"zetaite": 10, "etaite": 2}
    idx.unlink()
    reads.clear()
    assert HeadStore.open(art).sample_features().shape == (12, art.feature_dim)
    assert len(reads) == 12 and len(idx.read_bytes().splitlines()) == 12


def test_numbers_grow_past_their_digits(model, new_files):
    """Issue 16.7: sample 999999 is followed by 1000000 and head v9999 by v10000; every
    file stays visible, versions compare as numbers."""
    store = _store_with_two_heads(model, new_files)
    samples = sorted((store.root / "samples").iterdir())
    last = samples[-1]
    last.rename(last.with_name("999999" + last.name[6:]))
    heads = sorted((store.root / "heads").iterdir())
    heads[-1].rename(heads[-1].with_name("v9999" + heads[-1].name[5:]))
    fresh = HeadStore.open(store.artifact)
    assert fresh.activate("v9999") == "v9999"
    clf = Classifier(fresh.artifact, make_interpreter(fresh.artifact.model_path))
    grid = clf.preprocess(*_xy(new_files["etaite"][3]))
    s, created = fresh.add_sample("etaite", grid, clf.features_int8(grid))
    assert created and s.id == "1000000"
    assert [x.seq for x in fresh.samples()][-2:] == [999999, 1000000]
    info = fresh.retrain()
    assert info.version == "v10000" and info.meta["n_samples"] == 5
    again = HeadStore.open(store.artifact)
    assert again.active_version() == "v10000" and not again.problems
    assert again.active_head().version == "v10000"
    assert again.rollback() == "v9999"  # numerically older, not "v10000" < "v9999"
    assert again.rollback() == "v0001"


def test_one_store_serves_two_models(model, new_files, tiny_artifact_b, synthetic_data,
                                     tmp_path):
    """Issue 16.1: samples are shared, heads and the active pointer are per model file; a
    model with another file recomputes the features from the stored spectra."""
    import shutil

    from quantize.exemplars import attach_exemplars as attach

    store = _store_with_two_heads(model, new_files)
    b = tmp_path / "b"
    shutil.copytree(tiny_artifact_b, b)
    Xtr, ytr = synthetic_data.part("train")
    attach(b, Xtr, ytr, per_class=5)
    on_b = HeadStore.open(load_artifact(b), store.root)
    assert on_b.heads() == [] and on_b.active_version() == "base" and not on_b.problems
    clf_b = Classifier.from_dir(b, head_store=store.root)
    assert clf_b.head_version == "base"
    info = on_b.retrain(features_fn=clf_b.features_batch)
    assert info.version == "v0003" and info.meta["n_recomputed"] == 4
    assert set(info.meta["new_labels"]) == set(NEW_PEAKS)
    # each model keeps its own active head
    assert HeadStore.open(load_artifact(model), store.root).active_version() == "v0002"
    assert Classifier.from_dir(b, head_store=store.root).head_version == "v0003"
    assert Classifier.from_dir(model).head_version == "v0002"


def test_knn_logit_rule_is_recalibrated_for_a_retrained_head(capsys, tmp_path, synthetic_data,
                                                           tiny_keras_model, new_files):
    """The default rule of an export with exemplars (knn_logit) is recomputed from the
    artifact's calibration spectra under the retrained head: a taught mineral stops being
    flagged, the known minerals still pass at about the target rate."""
    from quantize.export import QuantizeConfig, export_artifact

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    Xte, yte = synthetic_data.part("test")
    art_dir = tmp_path / "m"
    export_artifact(tiny_keras_model, labels=list(synthetic_data.labels),
                    model_config=tiny_keras_model.ramanedge_config, calib_X=Xtr[:60],
                    val_X=Xva, test_X=Xte, test_y=yte, train_X=Xtr, train_y=ytr, val_y=yva,
                    out_dir=art_dir, config=QuantizeConfig(exemplars_per_class=5,
                                                           unknown_target_tpr=0.9))
    art = load_artifact(art_dir)
    assert art.unknown["method"] == "knn_logit_norm"  # the default export

    def record(f: Path) -> dict:
        code, out, _ = run_cli(capsys, "classify", "--model", art_dir, "--json", f)
        assert code == 0
        return json.loads(out)

    taught, query = new_files["zetaite"][:3], new_files["zetaite"][3]
    assert all(record(f)["unknown"] for f in (*taught, query))  # an unseen mineral
    run_cli(capsys, "head", "add", "--model", art_dir, "--label", "zetaite", *taught)
    code, _, _ = run_cli(capsys, "head", "retrain", "--model", art_dir)
    assert code == 0
    after = [record(f) for f in (*taught, query)]
    assert not any(r["unknown"] for r in after) and after[3]["top"][0]["label"] == "zetaite"
    assert "zetaite" in after[3]["set"]  # the recalibrated prediction set knows it too
    clf = Classifier.from_dir(art_dir)
    rule = clf.unknown_rule
    assert rule["recalibrated"] and rule["weight"] == art.unknown["weight"]
    # the base rule's feature-norm part is not carried over: a taught mineral's features
    # may be weak (the backbone never trained on it), which no head retrain changes
    assert art.unknown["norm_weight"] > 0 and "norm_weight" not in rule
    assert rule["method"] == "knn_logit"
    assert rule["logit_mean"] != art.unknown["logit_mean"]  # the new head's logits
    assert np.mean([not clf.classify_grid(x).unknown for x in Xva]) >= 0.85
    assert Classifier.from_dir(art_dir, use_head_store=False).unknown_rule == art.unknown


def test_a_fit_that_did_not_converge_is_said_so(capsys, model, new_files):
    """An absurd --alpha stops the fit at its iteration cap: the head is active (JSON says
    "converged": false) and the text output warns instead of reporting success alone."""
    code, _, _ = run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite",
                         *new_files["zetaite"][:2])
    assert code == 0
    code, out, err = run_cli(capsys, "head", "retrain", "--model", model, "--alpha", "1e300")
    assert code == 0 and "head v0001 active" in out
    assert "without converging" in err and "ramanedge head rollback" in err
    code, out, err = run_cli(capsys, "head", "retrain", "--model", model)
    assert code == 0 and "without converging" not in err


def test_a_head_the_artifact_cannot_answer_with_is_not_stored(capsys, model, new_files):
    """``head retrain`` builds the classifier that will answer with the new head before it
    stores anything: with an unreadable calibration.npz (checksums redone, so only its
    content is wrong) it refuses in one line and the store stays as it was (before, the head
    was made active and every classify failed until a rollback)."""
    from ramanedge.manifest import read_manifest, write_manifest

    files = new_files["zetaite"][:2]
    assert run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite", *files)[0] == 0
    assert (model / "calibration.npz").is_file()
    (model / "calibration.npz").write_bytes(b"not an npz")
    d = read_manifest(model, verify_files=False).data
    write_manifest(model, {k: v for k, v in d.items() if k != "manifest_sha256"})
    code, out, err = run_cli(capsys, "head", "retrain", "--model", model)
    assert code == 2 and "head v0001 not stored" in err and "calibration.npz" in err
    assert len(err.strip().splitlines()) == 1 and "pickle" not in err
    store = HeadStore.open(load_artifact(model))
    assert store.heads() == [] and store.active_version() == "base"
    assert len(store.samples()) == 2  # nothing lost
    assert run_cli(capsys, "classify", "--model", model, new_files["zetaite"][3])[0] == 0


def test_a_broken_store_folder_is_named_as_the_stores_fault(capsys, model, new_files):
    """A store that cannot be written is reported as the store's problem in one line (not
    as the spectrum's, not as a traceback), and what it held stays."""
    files = new_files["zetaite"]
    assert run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite",
                   *files[:2])[0] == 0
    heads = model / "headstore" / "heads"
    if heads.is_dir():
        os.rmdir(heads)
    heads.write_text("not a folder")
    code, _, err = run_cli(capsys, "head", "retrain", "--model", model)
    assert code == 2 and "cannot store head v0001" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    lock = model / "headstore" / "lock"
    lock.unlink()
    lock.mkdir()
    code, _, err = run_cli(capsys, "head", "add", "--model", model, "--label", "zetaite",
                           files[2])
    assert code == 2 and "head store" in err and str(files[2]) not in err
    lock.rmdir()
    assert len(HeadStore.open(load_artifact(model)).samples()) == 2


def test_an_explicit_store_must_exist(capsys, model, new_files):
    """``--store`` mistyped would have answered silently with the base head."""
    q = new_files["zetaite"][3]
    for cmd in (["classify", "--model", model, "--store", model / "nope", q],
                ["head", "list", "--model", model, "--store", model / "nope"]):
        code, _, err = run_cli(capsys, *cmd)
        assert code == 2 and "no head store there" in err, err
    code, _, err = run_cli(capsys, "classify", "--model", model, "--base-head", "--store",
                           model, q)
    assert code == 2 and "--base-head ignores the head store" in err
    code, _, err = run_cli(capsys, "classify", "--model", model, "--min-coverage", "nan", q)
    assert code == 2 and "not a finite number" in err and "Traceback" not in err
