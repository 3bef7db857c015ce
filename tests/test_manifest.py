"""ramanedge.manifest: round trip, schema validation, tamper detection (files and manifest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramanedge.errors import ManifestError, RamanEdgeError
from ramanedge.grid import DEFAULT_GRID, GridSpec
from ramanedge.manifest import (
    EXEMPLARS_FILE,
    HEAD_FILE,
    LIBRARY_FILE,
    MANIFEST_NAME,
    MODEL_FILE,
    SCHEMA_VERSION,
    VARIANT_FILES,
    Manifest,
    QuantParams,
    check_tensors,
    head_section,
    library_section,
    manifest_data,
    model_section,
    quantization_section,
    read_manifest,
    unknown_section,
    validate,
    variant_entry,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]


def _base(labels=("quartz", "calcite", "diamond")) -> dict:
    return {
        "name": "unit",
        "labels": list(labels),
        "grid": DEFAULT_GRID.to_dict(),
        "normalisation": {"method": "max"},
        "model": {"file": "model.tflite", "precision": "int8", "config": {"pool_size": 8}},
        "quantization": {"input": {"scale": 0.01, "zero_point": -5}},
        "metrics": {"int8": {"top1": 0.9}},
        "files": {"model.tflite": {}, "head.npz": {}},
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "model.tflite").write_bytes(b"TFL3-not-really-a-model" * 10)
    np.savez(tmp_path / "head.npz", W=np.ones((4, 3), np.float32), b=np.zeros(3, np.float32))
    return tmp_path


def test_round_trip_keeps_everything_and_checksums_files(folder: Path) -> None:
    written = write_manifest(folder, _base())
    read = read_manifest(folder)
    assert read.data == written.data
    assert read.labels == ["quartz", "calcite", "diamond"]
    assert read.grid == GridSpec()
    assert read.normalisation == "max"
    assert read.model_file == "model.tflite"
    assert read.data["schema_version"] == SCHEMA_VERSION
    assert read.data["metrics"] == {"int8": {"top1": 0.9}}
    size = (folder / "model.tflite").stat().st_size
    assert read.files["model.tflite"]["bytes"] == size
    import hashlib

    assert read.files["head.npz"]["sha256"] == hashlib.sha256(
        (folder / "head.npz").read_bytes()).hexdigest()


def test_tampered_model_file_is_rejected_by_name(folder: Path) -> None:
    write_manifest(folder, _base())
    p = folder / "model.tflite"
    data = bytearray(p.read_bytes())
    data[3] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.tflite does not match its sha256"):
        read_manifest(folder)
    # explicitly skipping the file check still validates the manifest itself
    assert read_manifest(folder, verify_files=False).name == "unit"


def test_missing_listed_file_is_rejected(folder: Path) -> None:
    write_manifest(folder, _base())
    (folder / "head.npz").unlink()
    with pytest.raises(ManifestError, match=r"head\.npz listed in the manifest is missing"):
        read_manifest(folder)


def test_comparison_variants_are_optional_but_checked_when_present(folder: Path) -> None:
    (folder / "model_float32.tflite").write_bytes(b"float32 comparison model" * 40)
    d = _base()
    d["files"]["model_float32.tflite"] = {}
    d["variants"] = {"float32": {"file": "model_float32.tflite", "top1": 0.9}}
    m = write_manifest(folder, d)
    assert m.comparison_files == {"model_float32.tflite"}
    assert set(m.flight_files) == {"model.tflite", "head.npz"}
    assert "model_float32.tflite" in m.files  # still checksummed
    (folder / "model_float32.tflite").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match=r"model_float32\.tflite does not match"):
        read_manifest(folder)
    (folder / "model_float32.tflite").unlink()  # ground-only file left behind: complete
    assert read_manifest(folder).name == "unit"
    (folder / "head.npz").unlink()  # a flight file is never optional
    with pytest.raises(ManifestError, match=r"head\.npz listed in the manifest is missing"):
        read_manifest(folder)


def test_hand_edited_manifest_is_rejected(folder: Path) -> None:
    write_manifest(folder, _base())
    p = folder / MANIFEST_NAME
    d = json.loads(p.read_text())
    d["labels"][0], d["labels"][1] = d["labels"][1], d["labels"][0]  # swap two classes
    p.write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="modified after it was written"):
        read_manifest(folder)


def test_reformatting_the_manifest_json_is_not_tampering(folder: Path) -> None:
    write_manifest(folder, _base())
    p = folder / MANIFEST_NAME
    p.write_text(json.dumps(json.loads(p.read_text()), indent=7))
    assert read_manifest(folder).labels == ["quartz", "calcite", "diamond"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"name": "x"}', "no manifest_sha256"),
    ],
)
def test_unreadable_manifests(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")  # a file given for the folder: said so
    with pytest.raises(ManifestError, match="file.txt is a file; expected an artifact folder"):
        read_manifest(tmp_path / "file.txt")
    with pytest.raises(ManifestError, match="not a ramanedge model artifact"):
        read_manifest(tmp_path)


def _set(key: str, value):
    def f(d: dict) -> None:
        if value is KeyError:
            del d[key]
        else:
            d[key] = value

    return f


def _set_file(name: str, meta):
    def f(d: dict) -> None:
        d["files"][name] = meta

    return f


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set("labels", KeyError), "missing keys: labels"),
        (_set("schema_version", 99), "schema_version 99 is not supported"),
        (_set("schema_version", True), "schema_version True is not supported"),
        (_set("labels", []), "non-empty list of strings"),
        (_set("labels", ["a", 3]), "non-empty list of strings"),
        (_set("labels", ["a", "a"]), "duplicates"),
        (_set("labels", ["a", "\x1b[31mred"]), "printable characters"),
        (_set("labels", ["a", " "]), "printable characters"),
        (_set("grid", {"start": 200}), "'grid' is invalid"),
        (_set("grid", {"start": 200, "step": -1, "n_points": 5}), "'grid' is invalid"),
        # wrong types that int()/float() would have taken, and values no grid has
        (_set("grid", {"start": float("nan"), "step": 1.0, "n_points": 5}), "finite start"),
        (_set("grid", {"start": 200, "step": float("inf"), "n_points": 5}), "finite step"),
        (_set("grid", {"start": 200, "step": 1.0, "n_points": "1392"}), "whole number"),
        (_set("grid", {"start": 200, "step": 1.0, "n_points": 1392.5}), "whole number"),
        (_set("grid", {"start": 200, "step": 1.0, "n_points": True}), "whole number"),
        (_set("name", 7), "'name' must be 1-200 printable"),
        (_set("name", ""), "'name' must be 1-200 printable"),
        (_set("name", "a\x1b[2Jb"), "'name' must be 1-200 printable"),
        (_set("name", "   "), "'name' must be 1-200 printable"),
        (_set("normalisation", {"method": "snv"}), "normalisation.method"),
        (_set("model", {"precision": "int8"}), "model.file"),
        (_set("files", {"head.npz": {"sha256": "0"}}), "must list the model file"),
        (_set_file("../x", {"sha256": "0"}), "plain file name"),
        (_set_file("sub/x", {"sha256": "0"}), "plain file name"),
        (_set_file("head.npz", {}), "has no sha256"),
        (_set_file(MANIFEST_NAME, {"sha256": "0"}), "manifest itself"),
        (_set("quantization", []), "'quantization' must be an object"),
        # issue 16.2/10/11/12: every file named must be listed; sections have their types
        (_set("head", 5), "'head' must be an object"),
        (_set("head", {"exemplars": "/elsewhere/x.npz"}), "head.exemplars"),
        (_set("head", {"exemplars": "../../../../elsewhere/x.npz"}), "head.exemplars"),
        (_set("head", {"exemplars": "exemplars.npz"}), "head.exemplars"),  # not in files
        (_set("head", {"file": "other.npz"}), "head.file"),
        (_set("head", {"feature_dim": "abc"}), "feature_dim' must be a positive integer"),
        (_set("head", {"feature_dim": True}), "feature_dim' must be a positive integer"),
        (_set("head", {"base_output": "logits"}), "base_output"),
        (_set("head", {"n_classes": "3"}), "head.n_classes' must be the number of labels"),
        (_set("head", {"n_classes": 4}), "head.n_classes' must be the number of labels"),
        (_set("head", {"dtype": "int4"}), "head.dtype' must be one of float16, float32"),
        (_set("variants", ["float32"]), "'variants' must be an object"),
        (_set("variants", {"float32": {"file": "/tmp/model.tflite"}}), "variants.float32.file"),
        (_set("unknown", "off"), "'unknown' must be an object"),
        (_set("unknown", {"method": "max_prob", "threshold": float("nan")}), "finite number"),
        (_set("unknown", {"method": "max_prob", "threshold": "0.5"}), "finite number"),
        (_set("unknown", {"threshold": 0.5}), "unknown.method"),
        (_set_file("headstore", {"sha256": "0"}), "reserved for the onboard head store"),
    ],
)
def test_validate_rejects_bad_structure(mutate, message: str) -> None:
    d = _base()
    d["schema_version"] = SCHEMA_VERSION
    d["files"] = {"model.tflite": {"sha256": "a" * 64}, "head.npz": {"sha256": "b" * 64}}
    validate(d)  # the unmutated one is valid
    mutate(d)
    with pytest.raises(ManifestError, match=message):
        validate(d)
    with pytest.raises(ManifestError, match=message):
        Manifest(d)


def test_write_refuses_missing_files_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        write_manifest(tmp_path, _base())
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_write_replaces_atomically_and_leaves_no_temp_files(folder: Path) -> None:
    write_manifest(folder, _base())
    d = _base(labels=("a", "b"))
    write_manifest(folder, d)
    assert read_manifest(folder).labels == ["a", "b"]
    assert sorted(p.name for p in folder.iterdir()) == ["head.npz", MANIFEST_NAME, "model.tflite"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                               max_size=12).filter(str.strip),
                       min_size=1, max_size=8, unique=True),
       flip=st.integers(min_value=0, max_value=10_000))
def test_any_label_list_round_trips_and_any_byte_flip_in_values_is_caught(
    tmp_path_factory, labels: list[str], flip: int
) -> None:
    folder = tmp_path_factory.mktemp("hyp")
    (folder / "model.tflite").write_bytes(b"\x00" * 64)
    d = _base(labels=labels)
    d["files"] = {"model.tflite": {}}
    write_manifest(folder, d)
    m = read_manifest(folder)
    assert m.labels == labels
    # change one label character: must be caught by the manifest checksum
    p = folder / MANIFEST_NAME
    j = json.loads(p.read_text(encoding="utf-8"))
    i = flip % len(labels)
    j["labels"][i] = j["labels"][i] + "x"
    if len(set(j["labels"])) == len(j["labels"]):
        p.write_text(json.dumps(j), encoding="utf-8")
        with pytest.raises(ManifestError, match="modified after it was written"):
            read_manifest(folder)


# ----------------------------------------------------------------- on a real artifact


def test_real_artifact_reads_back(tiny_artifact: Path) -> None:
    m = read_manifest(tiny_artifact)
    assert set(m.files) == {"model.tflite", "head.npz", "calibration.npz"}
    assert m.calibration_file == "calibration.npz"
    for k in ("labels", "grid", "normalisation", "model", "quantization", "head", "training",
              "metrics", "unknown", "conformal", "files", "manifest_sha256"):
        assert k in m.data


@pytest.mark.parametrize("victim", ["model.tflite", "head.npz"])
def test_tampered_real_artifact_is_rejected(artifact_copy: Path, victim: str) -> None:
    p = artifact_copy / victim
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01  # a single bit
    p.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=f"{victim} does not match its sha256"):
        read_manifest(artifact_copy)


def test_tampered_quantization_is_rejected(artifact_copy: Path) -> None:
    p = artifact_copy / MANIFEST_NAME
    d = json.loads(p.read_text())
    d["quantization"]["input"]["scale"] *= 2
    p.write_text(json.dumps(d, indent=2))
    with pytest.raises(ManifestError, match="modified after it was written"):
        read_manifest(artifact_copy)


def test_cli_reports_tampered_artifact_in_one_line(artifact_copy: Path) -> None:
    p = artifact_copy / "model.tflite"
    p.write_bytes(p.read_bytes() + b"\x00")
    r = subprocess.run(
        [sys.executable, "-m", "ramanedge.cli", "quantize", "--check", "edgetpu",
         str(artifact_copy)], capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "does not match its sha256" in lines[0]
    assert "Traceback" not in r.stderr


def test_manifest_error_is_a_ramanedge_error() -> None:
    assert issubclass(ManifestError, RamanEdgeError)


def _rehash(folder: Path, mutate) -> None:
    """Edit a real artifact's manifest and write it back with fresh checksums (what an
    attacker or a buggy ground tool could uplink: it passes every sha256 check)."""
    d = read_manifest(folder, verify_files=False).data
    d = {k: v for k, v in d.items() if k != "manifest_sha256"}
    mutate(d)
    write_manifest(folder, d)


def _q(key: str, value):
    def f(d: dict) -> None:
        d["quantization"]["input"][key] = value

    return f


@pytest.mark.parametrize("mutate, message", [
    (_q("scale", 1e308), "scale must be a number in"),
    (_q("zero_point", 0.5), "'zero_point' must be an integer"),
    (_q("index", "0"), "'index' must be an integer"),
    (_q("shape", "1392"), "'shape' must be a list of integers"),
])
def test_rehashed_bad_quantisation_is_refused(artifact_copy: Path, mutate, message) -> None:
    from edge_runtime.artifact import load_artifact

    _rehash(artifact_copy, mutate)
    with pytest.raises(ManifestError, match=message):
        load_artifact(artifact_copy)


def test_a_swapped_model_file_is_refused_even_when_rehashed(artifact_copy: Path,
                                                            tiny_artifact_b: Path) -> None:
    """Issue 16.10: the manifest's quantisation must be the model's own."""
    from edge_runtime.classify import Classifier
    from ramanedge.errors import ModelError

    (artifact_copy / "model.tflite").write_bytes((tiny_artifact_b / "model.tflite").read_bytes())
    _rehash(artifact_copy, lambda d: d.update(files={k: {} for k in d["files"]}))
    with pytest.raises(ModelError, match="do not belong together"):
        Classifier.from_dir(artifact_copy)


def test_files_outside_the_artifact_or_symlinked_are_refused(artifact_copy: Path,
                                                             tmp_path: Path) -> None:
    """Issue 16.2: exemplars named by path, left out of 'files', or a symlink."""
    import shutil

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(artifact_copy / "head.npz", elsewhere / "x.npz")
    for name in (str(elsewhere / "x.npz"), "../elsewhere/x.npz"):
        with pytest.raises(ManifestError, match="head.exemplars"):
            _rehash(artifact_copy, lambda d, n=name: d["head"].update(exemplars=n))
    # a plain name that is not in 'files' (so never checksummed)
    shutil.copy(artifact_copy / "head.npz", artifact_copy / "extra.npz")
    with pytest.raises(ManifestError, match="head.exemplars"):
        _rehash(artifact_copy, lambda d: d["head"].update(exemplars="extra.npz"))
    # a listed file replaced by a symlink to an identical file outside
    (artifact_copy / "head.npz").unlink()
    (artifact_copy / "head.npz").symlink_to(elsewhere / "x.npz")
    with pytest.raises(ManifestError, match="is a symlink"):
        read_manifest(artifact_copy)
    r = subprocess.run([sys.executable, "-m", "ramanedge.cli", "classify", "--model",
                        str(artifact_copy), str(artifact_copy / "manifest.json")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if "symlink" in ln], r.stderr


def test_deeply_nested_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested too deeply|not valid JSON"):
        read_manifest(tmp_path)


def test_strict_json_output_has_no_bare_nan() -> None:
    from ramanedge.jsonio import dumps

    text = dumps({"median": float("nan"), "p": (np.float32(0.5), np.int64(3)),
                  "inf": [float("-inf")], "path": Path("a/b")})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "median": None, "p": [0.5, 3], "inf": [None], "path": "a/b"}


# ----------------------------------------------------------------- one contract (issue 15.2)


def test_the_artifact_file_names_are_the_contracts() -> None:
    """The on-disk names are the contract (rovers in the field hold such folders). They are
    defined here only; tests/test_quantize.py checks no product code spells them out."""
    assert (MANIFEST_NAME, MODEL_FILE, HEAD_FILE, EXEMPLARS_FILE) == (
        "manifest.json", "model.tflite", "head.npz", "exemplars.npz")
    assert dict(VARIANT_FILES) == {"float32": "model_float32.tflite",
                                   "float16": "model_float16.tflite"}


def test_section_builders_make_a_valid_manifest(folder: Path) -> None:
    qi = QuantParams(index=0, scale=0.01, zero_point=-5, shape=(1, DEFAULT_GRID.n_points),
                     name="spectrum")
    qo = {"probs": QuantParams(index=7, scale=1 / 256, zero_point=-128, shape=(1, 3),
                               name="probs"),
          "features": QuantParams(index=8, scale=0.1, zero_point=3, shape=(1, 4),
                                  name="features")}
    assert QuantParams.from_dict(qi.to_dict()) == qi
    prev = unknown_section({"method": "max_prob", "threshold": 0.5, "target_tpr": 0.95},
                           split="val", previous={"method": "old", "previous": {"x": 1}})
    assert prev["previous"] == {"method": "old"} and prev["split"] == "val"
    assert unknown_section({"method": "max_prob", "threshold": 0.5}, split="val") == {
        "method": "max_prob", "threshold": 0.5, "split": "val"}
    head = head_section(feature_dim=4, n_classes=3, base_output="head")
    assert head == {"file": HEAD_FILE, "feature_dim": 4, "n_classes": 3, "base_output": "head",
                    "dtype": "float32"}
    assert head_section(feature_dim=4, n_classes=3, base_output="head",
                        dtype="float16")["dtype"] == "float16"
    with pytest.raises(ManifestError, match="head.dtype"):
        head_section(feature_dim=4, n_classes=3, base_output="head", dtype="int8")
    assert head_section(feature_dim=4, n_classes=3, base_output="head",
                        exemplars_per_class=2) == {**head, "exemplars": EXEMPLARS_FILE,
                                                   "exemplars_per_class": 2}
    with pytest.raises(ManifestError, match="base_output"):
        head_section(feature_dim=4, n_classes=3, base_output="logits")
    assert variant_entry("float32", top1=0.5)["file"] == VARIANT_FILES["float32"]
    with pytest.raises(ManifestError, match="no comparison variant"):
        variant_entry("int4")
    data = manifest_data(name="unit", labels=["quartz", "calcite", "diamond"],
                         model=model_section({"pool_size": 8}, ops={"FULLY_CONNECTED": 1}),
                         quantization=quantization_section(qi, qo, calibration={"n": 3}),
                         head=head, files=[MODEL_FILE, HEAD_FILE], unknown=prev,
                         metrics={"int8": {"top1": 0.9}})
    m = write_manifest(folder, data)
    t = check_tensors(read_manifest(folder))
    assert (t.input, t.probs, t.features, t.feature_dim) == (qi, qo["probs"], qo["features"], 4)
    assert m.head_file == HEAD_FILE and m.base_output == "head" and m.exemplars_file is None
    assert m.data["model"] == {"file": MODEL_FILE, "precision": "int8",
                               "config": {"pool_size": 8}, "ops": {"FULLY_CONNECTED": 1}}


def _qt(where: tuple[str, ...], key: str, value):
    def f(d: dict) -> None:
        node = d["quantization"]
        for k in where:
            node = node[k]
        if value is KeyError:
            del node[key]
        else:
            node[key] = value

    return f


def _no_head(d: dict) -> None:
    del d["head"]
    d["files"] = {k: {} for k in d["files"] if k != HEAD_FILE}


@pytest.mark.parametrize("mutate, message", [
    (_qt(("input",), "shape", [1, 1000]), r"input shape \[1, 1000\] does not match the grid"),
    (_qt(("outputs", "probs"), "shape", [1, 3]), "does not match the 4 labels"),
    (_qt(("outputs", "features"), "shape", [64]), r"'features' shape \[64\]; expected"),
    (_qt(("outputs",), "features", KeyError), "quantization.outputs.features' is missing"),
    (_qt((), "input", KeyError), "quantization.input' is missing"),
    (lambda d: d["head"].update(feature_dim=65), "head.feature_dim' is 65 but the model's "
                                                 "features have 64"),
    (_no_head, "the head file 'head.npz' is not listed"),
])
def test_cross_section_checks_need_no_interpreter(artifact_copy: Path, mutate,
                                                  message: str) -> None:
    """The quantisation entries against grid, labels and head: ramanedge.manifest checks
    them (TF- and runtime-free); load_artifact refuses the same artifact."""
    from edge_runtime.artifact import load_artifact

    check_tensors(read_manifest(artifact_copy))  # the real artifact passes
    _rehash(artifact_copy, mutate)
    with pytest.raises(ManifestError, match=message):
        check_tensors(read_manifest(artifact_copy))
    with pytest.raises(ManifestError, match=message):
        load_artifact(artifact_copy)


def test_version_3_is_written_and_versions_1_and_2_still_read(folder: Path) -> None:
    """Since the library's ``power`` key (2026-12-06) manifests were written as version 2,
    since its ``lag_penalty`` key (2026-12-08) as version 3: rover code that reads only an
    older version would ignore the key and mismatch the library, so it refuses them. This
    code reads all three; a version-1 library without ``power`` matches at power 1 and a
    version-2 library without ``lag_penalty`` with every lag alike (as before each key); a
    newer library must name them."""
    from ramanedge.library import LibraryConfig

    assert SCHEMA_VERSION == 3
    (folder / LIBRARY_FILE).write_bytes(b"not read here")
    data = _base()
    data["files"][LIBRARY_FILE] = {}
    data["library"] = library_section(LibraryConfig(), rows=3)
    written = write_manifest(folder, data)
    assert written.data["schema_version"] == 3
    assert read_manifest(folder).data["library"]["power"] == 0.25
    assert read_manifest(folder).data["library"]["lag_penalty"] == LibraryConfig().lag_penalty

    v2 = dict(written.data, schema_version=2)
    v2["library"] = {k: v for k, v in written.data["library"].items() if k != "lag_penalty"}
    validate(v2)  # an artifact from before the prior
    assert LibraryConfig.from_dict(v2["library"]).lag_penalty == 0.0
    with pytest.raises(ManifestError, match=r"'library.lag_penalty' is missing"):
        validate(dict(v2, schema_version=3))
    old = dict(v2, schema_version=1)
    old["library"] = {k: v for k, v in v2["library"].items() if k != "power"}
    validate(old)  # an artifact from before the key
    assert LibraryConfig.from_dict(old["library"]).power == 1.0
    new_without = dict(old, schema_version=2)
    with pytest.raises(ManifestError, match=r"'library.power' is missing"):
        validate(new_without)
    assert written.library_parts == ("train",)  # library_section's default
    assert Manifest(dict(written.data, library=None)).library_parts == ()
    for parts in (["train", "val"], ["train"]):
        validate(dict(written.data, library={**written.data["library"], "parts": parts}))
    for parts in ([], ["test"], ["train", "train"], "train"):
        with pytest.raises(ManifestError, match="'library.parts' must list split parts"):
            validate(dict(written.data, library={**written.data["library"], "parts": parts}))
    for bad in (0, 4, "2", 2.0):
        with pytest.raises(ManifestError, match=r"not supported; expected one of 1, 2, 3 "
                                                 r"\(this code writes 3\)"):
            validate(dict(written.data, schema_version=bad))
