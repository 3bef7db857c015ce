"""k-NN and SVM baselines: scoring, selection on val, real spectra, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.baselines import KNNScorer, SVMScorer, align_by_path, format_table, run_baseline
from trainer.evaluate import topk_accuracy


def test_knn_scores_rank_by_nearest_class() -> None:
    X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [6.0, 5.0], [10.0, 0.0]])
    y = np.array([0, 0, 1, 1, 2])
    knn = KNNScorer(k=1).fit(X, y, 4)
    s = knn.scores(np.array([[0.2, 0.0], [9.0, 1.0]]))
    assert s.shape == (2, 4)
    # query 0: nearest is class 0, then class 1 (dist ~7.1), then class 2 (9.8); class 3 absent
    assert list(np.argsort(-s[0])[:3]) == [0, 1, 2]
    assert list(np.argsort(-s[1])[:3]) == [2, 1, 0]
    assert s[0, 3] < s[0].min() + 1e-9 or s[0, 3] == s[0].min()
    # k=3 with distance weights: the vote decides top-1
    knn3 = KNNScorer(k=3).fit(X, y, 4)
    assert knn3.scores(np.array([[5.5, 5.0]])).argmax() == 1


def test_svm_separates_and_marks_absent_classes() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(3, 0.1, (20, 3))])
    y = np.repeat([0, 2], 20)
    svm = SVMScorer(C=1.0).fit(X, y, 3)
    s = svm.scores(X)
    assert s.shape == (40, 3)
    assert np.all(np.isneginf(s[:, 1]))
    assert topk_accuracy(s, y, 1) == 1.0


def test_align_by_path() -> None:
    assert list(align_by_path(["a", "b", "c"], ["c", "a"])) == [1, -1, 0]


@pytest.mark.realdata
def test_baselines_on_real_spectra(shared_data_root) -> None:
    from tests.conftest import REPO
    from trainer.run import DataConfig, load_data, make_or_read_split

    data = DataConfig(root=str(shared_data_root), cache_dir=str(REPO / ".cache" / "ramanedge"),
                      minerals=("Calcite", "Corundum", "Diopside", "Forsterite", "Quartz"))
    ds = load_data(data)
    split = make_or_read_split(ds, data)
    parts = [split == s for s in ("train", "val", "test")]
    args = [a for m in parts for a in (ds.X[m], ds.y[m])]
    rows = []
    for kind in ("knn", "svm"):
        r = run_baseline(kind, *args, n_classes=len(ds.labels))
        assert r["n_test"] == int(parts[2].sum())
        assert r["params"] in [{k: v for k, v in t.items() if k != "val_top1"}
                               for t in r["tried"]]
        best_val = max(t["val_top1"] for t in r["tried"])
        assert r["tried"][[t["val_top1"] for t in r["tried"]].index(best_val)]["val_top1"] \
            == best_val
        # five well-separated minerals: a library search must do far better than chance (20%)
        assert r["top1"] >= 0.6 and r["top3"] >= r["top1"]
        assert set(r["shifts"]) == {"0", "15", "30"}
        assert r["shifts"]["0"]["top1"] == pytest.approx(r["top1"])
        r["data"] = "rruff-raw"
        rows.append(r)
    table = format_table(rows)
    assert table.count("\n") == 3 and "| knn | rruff-raw |" in table


def test_baselines_cli_missing_data_folder(tmp_path, capsys) -> None:
    from ramanedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["baselines", "--data", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error: data folder") and "does not exist" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
