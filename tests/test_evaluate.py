"""Evaluation metrics on hand-checkable examples, and the shift evaluation's edge padding."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluate import (
    confusion_matrix,
    evaluate_predictions,
    per_class_recall,
    plot_confusion,
    shift_accuracy,
    topk_accuracy,
)

SCORES = np.array([
    [0.7, 0.2, 0.1, 0.0],   # true 0: top-1 hit
    [0.5, 0.3, 0.15, 0.05],  # true 2: 3rd -> top-3 hit only
    [0.1, 0.2, 0.3, 0.4],   # true 0: last -> miss even at top-3
    [0.0, 0.9, 0.1, 0.0],   # true 1: top-1 hit
])
Y = np.array([0, 2, 0, 1])


def test_topk_by_hand() -> None:
    assert topk_accuracy(SCORES, Y, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(SCORES, Y, 2) == pytest.approx(2 / 4)
    assert topk_accuracy(SCORES, Y, 3) == pytest.approx(3 / 4)
    assert topk_accuracy(SCORES, Y, 4) == pytest.approx(1.0)
    assert topk_accuracy(SCORES, Y, 99) == pytest.approx(1.0)


def test_topk_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        topk_accuracy(SCORES, Y[:3], 1)


def test_confusion_and_recall_by_hand() -> None:
    pred = SCORES.argmax(1)  # [0, 0, 3, 1]
    cm = confusion_matrix(Y, pred, 4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1
    expected[2, 0] = 1
    expected[0, 3] = 1
    expected[1, 1] = 1
    assert np.array_equal(cm, expected)
    rec = per_class_recall(cm)
    assert rec[0] == pytest.approx(0.5)
    assert rec[1] == pytest.approx(1.0)
    assert rec[2] == pytest.approx(0.0)
    assert np.isnan(rec[3])  # class 3 has no sample


def _peak_classifier(centres: list[int]):
    """Scores = intensity at each class's peak position (a shift-sensitive toy model)."""
    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(X)[:, centres]
    return predict


def test_shift_accuracy_mean_of_both_directions_and_edge_padding() -> None:
    p = 1392
    X = np.zeros((2, p), np.float32)
    X[0, 100] = 1.0   # class 0 peak at 300 cm-1
    X[1, 1391] = 1.0  # class 1 "peak" is the last grid point
    y = np.array([0, 1])
    predict = _peak_classifier([100, 1391])
    res = shift_accuracy(predict, X, y, shifts=(0, 15), ks=(1,))
    assert res["0"]["top1"] == 1.0
    # +15: both peaks leave their positions (the start is padded with X[0] = 0), so both
    # rows score (0, 0); the stable tie-break predicts class 0: row 0 right, row 1 wrong.
    assert res["15"]["top1_plus"] == pytest.approx(0.5)
    # -15: the last 15 points are padded with the edge value X[-1] = 1, so row 1 keeps its
    # score at 1591 cm-1 (zero padding would lose it); row 0 ties again -> class 0, right.
    assert res["15"]["top1_minus"] == pytest.approx(1.0)
    assert res["15"]["top1"] == pytest.approx(0.75)


def test_evaluate_predictions_keys_and_plot(tmp_path) -> None:
    labels = ["a", "b", "c", "d"]
    res = evaluate_predictions(lambda X: SCORES[: len(X)], np.zeros((4, 1392), np.float32), Y,
                               labels, shifts=(0,))
    assert res["n"] == 4
    assert res["top1"] == pytest.approx(0.5)
    assert res["top3"] == pytest.approx(0.75)
    assert set(res["per_class_recall"]) == {"a", "b", "c"}
    assert res["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    out = tmp_path / "cm.png"
    plot_confusion(np.asarray(res["confusion"]), labels, out, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_not_a_run(tmp_path, capsys) -> None:
    from ramanedge.cli import main

    (tmp_path / "model.keras").write_text("not a model")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "is not a training run" in err and "labels.json" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(tmp_path / "missing")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
