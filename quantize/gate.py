"""The int8 parity gate: an artifact is written only if int8 matches the float model.

On the held-out test split the float (Keras) model and the int8 TFLite model are compared:
top-1 / top-3 accuracy of each, the top-1 drop in percentage points, and the argmax
agreement (fraction of spectra where both pick the same mineral). The gate fails when the
drop exceeds ``max_top1_drop`` points or the agreement is below ``min_agreement``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ramanedge.errors import ModelError

MAX_TOP1_DROP_POINTS = 1.0
MIN_AGREEMENT = 0.98


class ParityGateError(ModelError):
    """The int8 model does not match the float model closely enough; nothing was written."""


def topk_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores."""
    probs = np.asarray(probs)
    y = np.asarray(y)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"probs {probs.shape} and labels {y.shape} do not match")
    if y.size == 0:
        raise ValueError("need at least one sample")
    k = min(k, probs.shape[1])
    # Stable sort of -probs: ties favour the lower class id, as argmax does.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


@dataclass(frozen=True)
class ParityReport:
    """Float vs int8 figures on one evaluation set (accuracies as fractions 0..1)."""

    float_top1: float
    float_top3: float
    int8_top1: float
    int8_top3: float
    agreement: float
    n_test: int

    @property
    def drop_points(self) -> float:
        """Top-1 drop from float to int8 in percentage points (negative = int8 is better)."""
        return 100.0 * (self.float_top1 - self.int8_top1)

    def to_metrics(self) -> dict:
        """The manifest ``metrics`` section."""
        d = asdict(self)
        return {
            "float": {"top1": d["float_top1"], "top3": d["float_top3"]},
            "int8": {"top1": d["int8_top1"], "top3": d["int8_top3"]},
            "agreement": d["agreement"],
            "n_test": d["n_test"],
            "drop_points": round(self.drop_points, 6),
        }


def parity_report(float_probs: np.ndarray, int8_probs: np.ndarray, y: np.ndarray) -> ParityReport:
    """Compare float and (dequantised) int8 probabilities against the true labels ``y``."""
    float_probs = np.asarray(float_probs, dtype=np.float64)
    int8_probs = np.asarray(int8_probs, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if float_probs.shape != int8_probs.shape:
        raise ValueError(f"float {float_probs.shape} and int8 {int8_probs.shape} outputs differ")
    agreement = float(np.mean(np.argmax(float_probs, 1) == np.argmax(int8_probs, 1)))
    return ParityReport(
        float_top1=topk_accuracy(float_probs, y, 1),
        float_top3=topk_accuracy(float_probs, y, 3),
        int8_top1=topk_accuracy(int8_probs, y, 1),
        int8_top3=topk_accuracy(int8_probs, y, 3),
        agreement=agreement,
        n_test=int(y.size),
    )


def gate_failure(
    report: ParityReport,
    *,
    max_top1_drop: float = MAX_TOP1_DROP_POINTS,
    min_agreement: float = MIN_AGREEMENT,
) -> str | None:
    """Why ``report`` fails the gate (one line), or None when it passes."""
    problems = []
    if report.drop_points > max_top1_drop + 1e-9:
        problems.append(
            f"top-1 dropped {report.drop_points:.2f} points (float {100 * report.float_top1:.2f}%"
            f" -> int8 {100 * report.int8_top1:.2f}%, limit {max_top1_drop:g})"
        )
    if report.agreement < min_agreement - 1e-12:
        problems.append(
            f"argmax agreement {100 * report.agreement:.2f}% < {100 * min_agreement:g}%"
        )
    if not problems:
        return None
    return (f"int8 parity gate failed on {report.n_test} test spectra: "
            + " and ".join(problems))
