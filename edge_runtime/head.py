"""Onboard softmax-head retraining on the frozen int8 backbone's features (numpy only).

:class:`SoftmaxHead` is a multinomial logistic regression in the scikit-learn style
(keyword-only hyper-parameters, ``fit(X, y)`` returns ``self``, learned attributes end in
``_``). It is fitted on the dequantised ``features`` output (D = 192 for the flight model)
of the int8 model and is
warm-started from a *prior* head (the artifact's float head ``head.npz``): by default the
prior's (old-class) weight columns stay frozen and only the new classes' columns and all
biases are fitted, with the penalty ``alpha/2 * ||W_new||^2``; ``prior_weights="anchored"``
refits the old columns too, held near the prior by ``alpha/2 * ||W_old - W0||^2``.

Forgetting is prevented by fitting on **exemplars** of the old classes (a few training
spectra per class, stored as the model's own int8 features in the artifact's
``exemplars.npz``, chosen on the ground by :mod:`quantize.exemplars`) together with the new
labelled samples: they are the negatives that keep the new classes from claiming old
minerals. Measured in ``docs/parts/edge.md``: frozen + exemplars forgets least; without
exemplars the old minerals collapse.

The optimiser is a small deterministic L-BFGS with Armijo backtracking in float64 over
float32 matrix products, run in the n-dimensional span of the samples when n < d (exactly the
same problem, see :meth:`SoftmaxHead.fit`); no scipy needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.artifact import HeadWeights, load_npz_arrays
from edge_runtime.interpreter import QuantParams, dequantize_int8
from ramanedge.errors import ModelError, RamanEdgeError

CLASS_WEIGHTS = ("balanced", None)
PRIOR_WEIGHTS = ("frozen", "anchored")


class NotFittedError(RamanEdgeError, ValueError):
    """The estimator was used before :meth:`SoftmaxHead.fit`."""


class SoftmaxHead:
    """Multinomial logistic regression on backbone features, anchored at a prior head.

    Parameters (keyword-only):

    ``alpha``: L2 strength of the anchor ``alpha/2 * ||W - W0||^2`` (>= 0). Larger keeps old
    classes closer to the prior head and new classes smaller.
    ``alpha_bias``: the same for the biases (>= 0).
    ``prior_weights``: what happens to the prior's (old) weight columns: ``"frozen"`` (kept
    exactly; only new columns and all biases are fitted, old exemplars act as negatives for
    the new classes) or ``"anchored"`` (fitted too, held near the prior by ``alpha``).
    ``prior``: a :class:`~edge_runtime.artifact.HeadWeights` (the artifact's head) to start
    from and anchor to; its labels come first in ``classes_``, in its order. ``None``: plain
    L2-regularised logistic regression from zero.
    ``class_weight``: ``"balanced"`` (each class weighs the same in the loss whatever its
    number of samples, so 1 new spectrum counts as much as 5 exemplars) or ``None``.
    ``max_iter`` (>= 1), ``tol`` (> 0, on the gradient's max-norm): L-BFGS stopping rules.
    ``memory``: number of L-BFGS correction pairs (>= 1).

    Learned: ``W_`` float32 (D, K), ``b_`` float32 (K,), ``classes_`` (K,) labels,
    ``n_iter_``, ``converged_``, ``loss_``, ``fit_seconds_``.
    """

    def __init__(
        self,
        *,
        alpha: float = 3e-3,
        alpha_bias: float = 1e-3,
        prior: HeadWeights | None = None,
        class_weight: str | None = "balanced",
        prior_weights: str = "frozen",
        max_iter: int = 300,
        tol: float = 1e-5,
        memory: int = 10,
    ) -> None:
        self.alpha = alpha
        self.alpha_bias = alpha_bias
        self.prior = prior
        self.class_weight = class_weight
        self.prior_weights = prior_weights
        self.max_iter = max_iter
        self.tol = tol
        self.memory = memory

    # -- scikit-learn protocol -------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn protocol)."""
        return {k: getattr(self, k) for k in
                ("alpha", "alpha_bias", "prior", "class_weight", "prior_weights", "max_iter",
                 "tol", "memory")}

    def set_params(self, **params: Any) -> SoftmaxHead:
        """Set constructor parameters; unknown names raise ``ValueError`` listing valid ones."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for SoftmaxHead; valid parameters: "
                                 f"{', '.join(sorted(valid))}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        p = self.get_params()
        p["prior"] = None if self.prior is None else f"<head {self.prior.version}>"
        return "SoftmaxHead(" + ", ".join(f"{k}={v!r}" for k, v in p.items()) + ")"

    def _validate_params(self) -> None:
        if not (np.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a number >= 0, got {self.alpha!r}")
        if not (np.isfinite(self.alpha_bias) and self.alpha_bias >= 0):
            raise ValueError(f"alpha_bias must be a number >= 0, got {self.alpha_bias!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, "
                             f"got {self.class_weight!r}")
        if self.prior_weights not in PRIOR_WEIGHTS:
            raise ValueError(f"prior_weights must be one of {PRIOR_WEIGHTS}, "
                             f"got {self.prior_weights!r}")
        if not (isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not (np.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a number > 0, got {self.tol!r}")
        if not (isinstance(self.memory, int | np.integer) and self.memory >= 1):
            raise ValueError(f"memory must be an integer >= 1, got {self.memory!r}")
        if self.prior is not None and not isinstance(self.prior, HeadWeights):
            raise ValueError(f"prior must be a HeadWeights or None, got {type(self.prior)}")

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: Sequence[str] | np.ndarray) -> SoftmaxHead:
        """Fit on features ``X`` (N, D) float and labels ``y`` (N,) (strings); returns self.

        ``classes_`` = the prior's labels (in order) followed by labels of ``y`` not in the
        prior, sorted. Classes of the prior without samples keep being scored (they are
        negatives for every sample and are held at the prior by the anchor).
        """
        self._validate_params()
        t0 = time.perf_counter()
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y).astype(str)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (N, D) array, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        prior_labels = list(self.prior.labels) if self.prior is not None else []
        new = sorted(set(y.tolist()) - set(prior_labels))
        classes = prior_labels + new
        if len(classes) < 2:
            raise ValueError(f"need at least 2 classes, got {classes}")
        n, d = X.shape
        k = len(classes)
        index = {c: i for i, c in enumerate(classes)}
        yi = np.array([index[c] for c in y], dtype=np.int64)
        W0 = np.zeros((d, k), dtype=np.float64)
        b0 = np.zeros(k, dtype=np.float64)
        if self.prior is not None:
            if self.prior.feature_dim != d:
                raise ValueError(f"prior head expects {self.prior.feature_dim}-d features, "
                                 f"X has {d}")
            kp = len(prior_labels)
            W0[:, :kp] = self.prior.W
            b0[:kp] = self.prior.b
            # new classes start where old ones are typically: mean old bias, so their
            # logits are not favoured or disfavoured before the first step
            if k > kp:
                b0[kp:] = float(np.mean(self.prior.b))
        counts = np.bincount(yi, minlength=k).astype(np.float64)
        if self.class_weight == "balanced":
            present = counts > 0
            cw = np.zeros(k)
            cw[present] = n / (present.sum() * counts[present])
            sw = cw[yi]
        else:
            sw = np.ones(n)
        sw = (sw / sw.sum()).astype(np.float32)
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[np.arange(n), yi] = 1.0
        alpha, alpha_b = float(self.alpha), float(self.alpha_bias)

        # Every gradient of the loss w.r.t. W is X^T G, so starting from W0 all iterates (and
        # the optimum) lie in W0 + rowspace(X). With X X^T = U S U^T, Q = X^T U S^-1/2 has
        # orthonormal columns and W = W0 + Q V gives logits X W0 + (U S^1/2) V and penalty
        # alpha/2 ||V||^2: the same problem, same L-BFGS iterates, but in n instead of d
        # dimensions (n samples << d = 2048 onboard), ~d/n times cheaper per iteration.
        Z0 = X @ W0.astype(np.float32)
        if n < d:
            s, U = np.linalg.eigh(X.astype(np.float64) @ X.T.astype(np.float64))
            keep = s > max(float(s.max()), 1e-30) * 1e-10
            U, s = U[:, keep], s[keep]
            Phi = (U * np.sqrt(s)).astype(np.float32)
            Q = (X.T @ (U / np.sqrt(s)).astype(np.float32)).astype(np.float64)
        else:
            Phi, Q = X, None
        PhiT = np.ascontiguousarray(Phi.T)
        r = Phi.shape[1]
        # fitted weight columns: all, or only the new classes' when the prior is frozen
        kp = len(prior_labels)
        cols = np.arange(kp, k) if (self.prior_weights == "frozen" and kp) else np.arange(k)
        kt = cols.size

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            V = theta[: r * kt].reshape(r, kt)
            b = theta[r * kt:]
            z = Z0 + b.astype(np.float32)
            if kt:
                z[:, cols] += Phi @ V.astype(np.float32)
            z = z - z.max(axis=1, keepdims=True)
            ez = np.exp(z)
            se = ez.sum(axis=1, keepdims=True)
            logp = z - np.log(se)
            loss = -float(np.sum(sw * np.sum(onehot * logp, axis=1), dtype=np.float64))
            G = (ez / se - onehot) * sw[:, None]
            dV = (PhiT @ G[:, cols]).astype(np.float64)
            db = G.sum(axis=0, dtype=np.float64)
            dbr = b - b0
            loss += 0.5 * alpha * float(np.vdot(V, V)) + 0.5 * alpha_b * float(np.vdot(dbr, dbr))
            grad = np.concatenate([(dV + alpha * V).ravel(), db + alpha_b * dbr])
            return loss, grad

        theta0 = np.concatenate([np.zeros(r * kt), b0])
        theta, loss, n_iter, converged = _lbfgs(fun, theta0, max_iter=int(self.max_iter),
                                                tol=float(self.tol), memory=int(self.memory))
        V = theta[: r * kt].reshape(r, kt)
        W = W0.copy()
        W[:, cols] += V if Q is None else Q @ V
        self.W_ = W.astype(np.float32)
        self.b_ = theta[r * kt:].astype(np.float32)
        self.classes_ = np.array(classes)
        self.n_features_in_ = d
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.loss_ = loss
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise NotFittedError("this SoftmaxHead is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits ``X @ W_ + b_`` (N, K) float32."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (N, {self.n_features_in_}), got {X.shape}")
        return X @ self.W_ + self.b_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K), columns in ``classes_`` order."""
        z = self.decision_function(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable label per row."""
        z = self.decision_function(X)
        return self.classes_[np.argmax(z, axis=1)]

    def score(self, X: np.ndarray, y: Sequence[str] | np.ndarray) -> float:
        """Top-1 accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y).astype(str)))

    def to_head(self, version: str) -> HeadWeights:
        """The fitted head as :class:`~edge_runtime.artifact.HeadWeights` named ``version``."""
        self._check_fitted()
        return HeadWeights(self.W_, self.b_, tuple(self.classes_.tolist()), version=version)


def _lbfgs(fun, x0: np.ndarray, *, max_iter: int, tol: float,
           memory: int) -> tuple[np.ndarray, float, int, bool]:
    """Minimise a smooth function with L-BFGS (two-loop recursion) and Armijo backtracking.

    ``fun(x) -> (f, grad)``. Returns ``(x, f, iterations, converged)``; converged means the
    gradient's max-norm fell below ``tol`` or the objective stopped decreasing (relative
    change < 1e-10).
    """
    x = x0.astype(np.float64).copy()
    f, g = fun(x)
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    rho: list[float] = []
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - value used after the loop
        if np.max(np.abs(g)) < tol:
            return x, f, it - 1, True
        q = g.copy()
        alphas = []
        for s, yv, r in zip(reversed(s_list), reversed(y_list), reversed(rho), strict=True):
            a = r * np.dot(s, q)
            alphas.append(a)
            q -= a * yv
        if s_list:
            gamma = np.dot(s_list[-1], y_list[-1]) / np.dot(y_list[-1], y_list[-1])
        else:
            gamma = 1.0 / max(np.linalg.norm(g), 1e-12)
        q *= gamma
        for s, yv, r, a in zip(s_list, y_list, rho, reversed(alphas), strict=True):
            bcoef = r * np.dot(yv, q)
            q += (a - bcoef) * s
        direction = -q
        slope = float(np.dot(g, direction))
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_list.clear()
            y_list.clear()
            rho.clear()
            direction = -g / max(np.linalg.norm(g), 1e-12)
            slope = float(np.dot(g, direction))
        step = 1.0
        for _ in range(30):
            x_new = x + step * direction
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            return x, f, it, False
        s = x_new - x
        yv = g_new - g
        sy = float(np.dot(s, yv))
        if sy > 1e-12:
            s_list.append(s)
            y_list.append(yv)
            rho.append(1.0 / sy)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
                rho.pop(0)
        done = abs(f - f_new) <= 1e-10 * max(abs(f), abs(f_new), 1.0)
        x, f, g = x_new, f_new, g_new
        if done:
            return x, f, it, True
    return x, f, it, bool(np.max(np.abs(g)) < tol)


# -- exemplars: old-class features carried in the artifact -----------------------------------
@dataclass(frozen=True)
class Exemplars:
    """Old-class exemplar features: ``features`` float32 (N, D) dequantised, ``labels`` (N,)."""

    features: np.ndarray
    labels: np.ndarray


def load_exemplars(path: str | os.PathLike, features_q: QuantParams,
                   labels: Sequence[str]) -> Exemplars:
    """Read an artifact's ``exemplars.npz`` into dequantised features and label names."""
    arr = load_npz_arrays(path, ("features", "y"))
    fq, yy = arr["features"], arr["y"]
    if fq.dtype != np.int8 or fq.ndim != 2 or fq.shape[1] != features_q.shape[-1]:
        raise ModelError(f"{path}: 'features' must be int8 (N, {features_q.shape[-1]}), got "
                         f"{fq.dtype} {fq.shape}")
    if yy.shape != (fq.shape[0],) or yy.dtype.kind not in "iu":
        raise ModelError(f"{path}: 'y' must be integer ({fq.shape[0]},), got {yy.dtype} "
                         f"{yy.shape}")
    if yy.size and (yy.min() < 0 or yy.max() >= len(labels)):
        raise ModelError(f"{path}: class ids out of range 0..{len(labels) - 1}")
    names = np.array(list(labels))[yy.astype(np.int64)] if yy.size else np.array([], dtype=str)
    return Exemplars(dequantize_int8(fq, features_q), names)
