"""Smoke tests of the benchmark code (not benchmarks): every section still runs and its
numbers are sane, on the shared tiny synthetic artifact, in seconds.

The full benchmark (``make bench``) is not run in CI; these tests prove its pieces work:
the floor model, the latency worker's methods, the edge-only memory/cold-start probes in
fresh processes, the head-retraining cost worker, the sweep's run matching, the targets and
the report writer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import interleaved, stats_ms

GRID_X = 200.0 + np.arange(1392)


def _raw(grid_spectrum: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 'raw' spectrum on its own axis (150-1700 cm-1, ~0.7 cm-1 steps) with an offset."""
    rng = np.random.default_rng(seed)
    x = np.linspace(150.0, 1700.0, 2200)
    y = np.interp(x, GRID_X, grid_spectrum) * 3000.0 + 500.0 + rng.normal(0, 1.0, x.size)
    return x, y


def _write_files(folder: Path, X: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, g in enumerate(X):
        x, y = _raw(g, i)
        p = folder / f"s{i:03d}.csv"
        p.write_text("\n".join(f"{a:.4f},{b:.4f}" for a, b in zip(x, y, strict=True)) + "\n")
        out.append(p)
    return out


@pytest.fixture(scope="module")
def floor_model(tmp_path_factory) -> Path:
    from benchmarks.floor import build_floor_model

    p = tmp_path_factory.mktemp("floor") / "floor.tflite"
    info = build_floor_model(p)
    assert info["ops"] == {"ADD": 1}
    return p


def test_stats_and_interleaving_record_every_call():
    calls: list[tuple[str, int]] = []
    times = interleaved({"a": lambda i: calls.append(("a", i)),
                         "b": lambda i: calls.append(("b", i))}, 4, rounds=2, warmup=3)
    assert [len(v) for v in times.values()] == [8, 8]
    # warm-up first, then a and b alternate round by round over items 0..3
    assert calls[:6] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert calls[6:10] == [("a", i) for i in range(4)]
    assert calls[10:14] == [("b", i) for i in range(4)]
    s = stats_ms([0.001, 0.002, 0.003, 0.1])
    assert s["n"] == 4 and s["median"] == pytest.approx(2.5) and s["min"] == pytest.approx(1.0)
    assert s["median"] <= s["p90"] <= s["p99"] <= 100.0
    assert stats_ms([]) == {"n": 0}


def test_latency_methods_on_tiny_artifact(tiny_artifact, tiny_keras_model, synthetic_data,
                                          floor_model, tmp_path):
    from benchmarks.latency import build_methods, load_inputs, ratios, write_inputs

    Xte, yte = synthetic_data.part("test")
    Xtr, ytr = synthetic_data.part("train")
    npz = tmp_path / "inputs.npz"
    write_inputs(npz, X_test=Xte[:6], y_test=yte[:6], raw=[_raw(g, i) for i, g in
                                                          enumerate(Xte[:6])],
                 X_train=Xtr, y_train=ytr)
    keras_path = tmp_path / "tiny.keras"
    tiny_keras_model.save(keras_path)
    methods, info = build_methods(load_inputs(npz), artifact=tiny_artifact, threads=1,
                                  floor=floor_model, float32=None, keras_path=keras_path,
                                  knn={"k": 1, "metric": "cosine"}, n_items=6, xla=False)
    assert info["skipped"] == {"float32_tflite": "no float32 TFLite file"}
    expected = {"int8_invoke", "int8_model", "int8_classify", "keras_predict_on_batch",
                "keras_tf_function", "knn", "floor", "pre_resample", "pre_normalise",
                "pre_quantise", "pre_total", "total_raw_to_label"}
    assert set(methods) == expected
    # the methods compute real answers: the int8 classifier on raw spectra agrees with labels
    preds = [methods["total_raw_to_label"](i).label for i in range(6)]
    assert np.mean([p == synthetic_data.labels[y] for p, y in zip(preds, yte[:6],
                                                                 strict=True)]) >= 0.8
    times = interleaved(methods, 6, rounds=2, warmup=2)
    res = {k: stats_ms(v) for k, v in times.items()}
    r = ratios(res)
    assert r["int8_model"] == pytest.approx(1.0)
    assert all(v["n"] == 12 and v["median"] > 0 for v in res.values())
    # which method is faster is a benchmark figure (docs/benchmarks.md), not asserted here:
    # the ratios are computed from the same medians
    assert r["floor"] == pytest.approx(res["floor"]["median"] / res["int8_model"]["median"])


def test_edge_probe_and_classify_cli_memory(tiny_artifact, synthetic_data, tmp_path):
    from benchmarks.memory import classify_cli_run, probe_runs

    Xte, _ = synthetic_data.part("test")
    files = _write_files(tmp_path / "spectra", Xte[:5])
    res = probe_runs(tiny_artifact, files, repeats=1, log=lambda _m: None)
    run = res["runs"][0]
    assert res["heavy_modules_imported"] == []  # no TensorFlow/keras/trainer in the edge process
    assert run["n_classified"] == 5
    assert run["import_s"] > 0 and run["load_s"] > 0 and run["first_inference_s"] > 0
    # the in-process interval lies inside spawn -> first result (an ordering, not a speed)
    assert run["cold_start_in_process_s"] < run["spawn_to_first_s"]
    # launcher-measured peak RSS is the process's own (not the pytest parent's), and agrees
    # with the kernel's per-process high-water mark read inside the probe
    assert 10 < res["peak_rss_mib"]["max"] < 400
    assert abs(run["wait4_peak_rss_kib"] - run["vm_hwm_kib"]) < 0.2 * run["vm_hwm_kib"]
    cli = classify_cli_run(tiny_artifact, files, repeats=1, log=lambda _m: None)
    assert cli["n_classified"] == 5 and 10 < cli["peak_rss_mib"]["max"] < 400


def _new_minerals(n_classes: int, per_class: int, seed: int = 7):
    """Synthetic spectra of minerals the tiny model never saw (other peak positions)."""
    from ramanedge.grid import normalise_max

    rng = np.random.default_rng(seed)
    k = np.arange(1392, dtype=np.float64)
    X, labels = [], []
    for c in range(n_classes):
        centres = (150 + 97 * c, 600 + 131 * c, 1050 + 53 * c)
        for _ in range(per_class):
            s = sum(rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((k - p - rng.uniform(-2, 2)) / 6) ** 2)
                    for p in centres)
            X.append(s + rng.uniform(0, 0.3) + rng.normal(0, 0.02, k.size))
            labels.append(f"newite-{c}")
    return normalise_max(np.asarray(X)), np.array(labels)


def test_headcost_worker(artifact_copy, synthetic_data, tmp_path):
    from benchmarks.common import child_env, python, run_json
    from benchmarks.headcost import pick_minerals
    from quantize.exemplars import attach_exemplars

    Xtr, ytr = synthetic_data.part("train")
    attach_exemplars(artifact_copy, Xtr, ytr, per_class=3)
    X, labels = _new_minerals(3, 4)
    assert pick_minerals(labels, 4, 2) == ["newite-0", "newite-1"]
    assert pick_minerals(labels, 5, 2) == []
    npz = tmp_path / "new.npz"
    np.savez(npz, X=X, labels=labels)
    # as the bench runs it: a fresh edge-only process, one BLAS thread
    res = run_json([python(), "-m", "benchmarks.headcost", "--artifact", str(artifact_copy),
                    "--inputs", str(npz), "--work", str(tmp_path / "work"), "--classes", "1,2",
                    "--shots", "3", "--repeats", "2"], env=child_env(1), echo=lambda _m: None)
    assert res["heavy_modules"] == []  # TensorFlow-free
    r1, r2 = res["rows"]
    assert (r1["n_samples"], r2["n_samples"]) == (3, 6)
    assert r1["n_exemplars"] == r2["n_exemplars"] == 12  # 3 per class x 4 classes
    assert (r1["n_classes_after"], r2["n_classes_after"]) == (5, 6)
    assert all(t > 0 for t in r2["retrain_s_all"]) and len(r2["retrain_s_all"]) == 2
    assert r2["fit_s_median"] <= r2["retrain_s_median"]
    assert r2["train_accuracy"] > 0.9
    assert not (tmp_path / "work" / "store_c2").exists()  # stores are cleaned up


def test_sweep_grid_and_run_matching(tmp_path):
    from benchmarks import sweep
    from trainer.model import ModelConfig
    from trainer.train import TrainConfig

    base_model = ModelConfig(arch="paper").to_dict()
    pts = sweep.grid_points({**base_model, "pool_layers": 3}, n_classes=97)
    assert {(m, 3) for m in sweep.POOL_SIZES} <= set(pts)
    assert (2, 1) not in pts and (64, 1) in pts  # n=1, m=2 has 91 M weights: left out
    pts6 = sweep.grid_points({**base_model, "pool_size": 6, "pool_layers": 3}, n_classes=97)
    assert (6, 3) in pts6 and (6, 2) not in pts6  # the default's own m, at the default's n
    from benchmarks.suite import _identical_networks

    rows = [{"m": m, "n": n, "int8": {"0": {}}} for m, n in ((64, 2), (64, 3), (32, 2), (32, 3))]
    # 1392 -> 22 -> 1 after two pools of 64: a third pool changes nothing; not so for m=32
    assert _identical_networks(rows, base_model) == [[(64, 2), (64, 3)]]

    def fake_run(name: str, m: int, n: int, created: str, **train) -> Path:
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        for f in ("model.keras", "labels.json", "split.csv", "metrics.json"):
            (d / f).write_text("{}")
        cfg = {"model": {**base_model, "pool_size": m, "pool_layers": n},
               "train": {**TrainConfig().to_dict(), **train},
               "data": {"dataset": "rruff-raw", "min_spectra": 8, "minerals": None},
               "split_sha256": "abc", "created": created}
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    base = fake_run("default", 8, 3, "2026-01-01")
    old = fake_run("exp/m4_old", 4, 3, "2026-01-02")
    new = fake_run("exp/m4_new", 4, 3, "2026-01-03")
    fake_run("exp/m16_other_lr", 16, 3, "2026-01-04", learning_rate=0.01)
    found = sweep.find_runs(json.loads((base / "config.json").read_text()), tmp_path / "runs")
    assert found == {(8, 3): base, (4, 3): new}
    assert old not in found.values()


def test_targets_and_report(tmp_path):
    from benchmarks.report import evaluate_targets, write_report
    from benchmarks.suite import explain_misses, model_macs

    def m(med):
        return {"n": 10, "median": med, "p99": 2 * med, "p90": med, "mean": med, "min": med}

    methods = {"int8_invoke": m(0.09), "int8_model": m(0.1), "keras_predict_on_batch": m(1.0),
               "keras_tf_function": m(0.45), "floor": m(0.002), "pre_total": m(0.05)}
    res = {
        "meta": {"machine": {"date": "2026-11-26"}, "command": "ramanedge bench --smoke"},
        "latency": {"1": {"methods": methods, "ratios": {k: v["median"] / 0.1
                                                         for k, v in methods.items()},
                          "n_items": 10, "rounds": 1, "warmup": 1, "info": {}}},
        "memory": {"probe": {"median": {"spawn_to_first_s": 0.4, "import_s": 0.2,
                                        "load_s": 0.05, "first_inference_s": 0.01,
                                        "process_wall_s": 0.6, "per_spectrum_rest_ms": 1.0,
                                        "cold_start_in_process_s": 0.3},
                             "peak_rss_mib": {"median": 50.0, "max": 58.0},
                             "peak_rss_after_first_mib": 49.0, "heavy_modules_imported": [],
                             "n_files": 100, "repeats": 3}},
        "model_macs": model_macs(ModelConfigDict, 97),
    }
    t = {x["target"].split()[1]: x for x in evaluate_targets(res)}
    assert len(t) == 4
    speed = next(x for x in t.values() if "Keras" in x["target"])
    assert speed["value"] == pytest.approx(4.5) and not speed["ok"]  # 0.45 / 0.1
    floor = next(x for x in t.values() if "floor" in x["target"])
    assert floor["value"] == pytest.approx(45.0) and not floor["ok"]
    rss = next(x for x in t.values() if "RSS" in x["target"])
    assert rss["value"] == pytest.approx(58.0 * 1.048576) and not rss["ok"]  # 60.8 MB > 60
    cold = next(x for x in t.values() if "cold" in x["target"])
    assert cold["ok"]
    res["targets"] = list(t.values())
    explain_misses(res)
    assert "multiply-accumulates" in floor["why"]
    paths = write_report(res, tmp_path / "docs" / "benchmarks.md",
                         tmp_path / "docs" / "benchmarks.json")
    md = paths["md"].read_text()
    assert "| **int8 TFLite model** (quantise + invoke + dequantise) | 0.1000 |" in md
    assert "**no**" in md and "Missed:" in md
    assert paths["latency_png"].stat().st_size > 1000
    assert json.loads(paths["json"].read_text())["targets"][0]["value"] == speed["value"]


ModelConfigDict = {"input_points": 1392, "filters": [16, 32, 64], "kernel_size": 5,
                   "pool_size": 8, "pool_layers": 3, "dense_units": 2048}


def test_model_macs_by_hand():
    from benchmarks.suite import model_macs

    mm = model_macs(ModelConfigDict, 97)
    conv = 1392 * 5 * 16 + 174 * 5 * 16 * 32 + 22 * 5 * 32 * 64
    assert mm["conv"] == conv
    assert mm["dense"] == 3 * 64 * 2048 + 2048 * 97
    assert mm["macs"] == conv + mm["dense"]
    assert not math.isnan(mm["macs"])


def test_bench_cli_rejects_bad_options(tmp_path, capsys):
    from ramanedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--data", str(tmp_path), "--only", "latency,bogus"])
    assert e.value.code == 2
    assert "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", "--data", str(tmp_path / "missing")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data root") and "Traceback" not in err


def test_bench_with_a_missing_model_is_an_error_not_a_training(tmp_path):
    """Issue 16.14: ``bench --smoke --model <missing>`` used to start a 200-epoch training."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ramanedge.cli", "bench", "--smoke", "--model",
                          str(tmp_path / "nope"), "--run", str(tmp_path / "norun"), "--work",
                          str(tmp_path / "w"), "--out", str(tmp_path / "o" / "b.md")],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is not a model artifact" in out.stderr and "Traceback" not in out.stderr
    assert "training" not in out.stdout
    assert not (tmp_path / "norun").exists()
