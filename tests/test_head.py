"""SoftmaxHead (the onboard head retrainer) and exemplar selection."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.artifact import HeadWeights
from edge_runtime.head import NotFittedError, SoftmaxHead
from quantize.exemplars import select_exemplars


def blobs(n_classes=6, per_class=20, d=32, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(n_classes, d))
    y = np.repeat(np.arange(n_classes), per_class)
    X = centres[y] + rng.normal(0, spread, size=(y.size, d))
    return X.astype(np.float32), np.array([f"m{c}" for c in y]), centres


def test_fit_returns_self_and_learns():
    X, y, _ = blobs()
    h = SoftmaxHead(alpha=1e-3)
    assert h.fit(X, y) is h
    assert h.W_.shape == (32, 6) and h.b_.shape == (6,) and h.W_.dtype == np.float32
    assert h.classes_.tolist() == [f"m{c}" for c in range(6)]
    assert h.converged_ and h.n_iter_ >= 1
    Xt, yt, _ = blobs(seed=0, per_class=10)  # same centres, new noise draws
    assert h.score(Xt, yt) > 0.9
    p = h.predict_proba(Xt)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert h.to_head("v0001").labels == tuple(h.classes_)


def test_not_fitted_guard_and_params():
    h = SoftmaxHead()
    with pytest.raises(NotFittedError, match="not fitted"):
        h.predict(np.zeros((1, 4)))
    with pytest.raises(TypeError):
        SoftmaxHead(0.1)  # keyword-only
    with pytest.raises(ValueError, match="alpha_bias, class_weight"):
        h.set_params(bogus=1)
    X, y, _ = blobs(n_classes=2, per_class=3, d=4)
    with pytest.raises(ValueError, match=r"class_weight must be one of \('balanced', None\)"):
        SoftmaxHead(class_weight="uniform").fit(X, y)
    with pytest.raises(ValueError, match="alpha"):
        SoftmaxHead(alpha=-1).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SoftmaxHead().fit(X[:3], ["a"] * 3)
    assert SoftmaxHead(alpha=0.5).get_params()["alpha"] == 0.5


@pytest.mark.parametrize("d", [16, 256])  # n=60 > d: primal; n < d: in the samples' span
def test_matches_scikit_learn_logistic_regression(d):
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y, _ = blobs(n_classes=4, per_class=15, d=d, spread=2.0)
    alpha = 0.05
    h = SoftmaxHead(alpha=alpha, alpha_bias=0.0, class_weight=None, tol=1e-8,
                    max_iter=2000).fit(X, y)
    # same objective: sum CE + 1/(2C) ||W||^2 with C = 1 / (N alpha), bias not penalised
    ref = sklearn.LogisticRegression(C=1 / (len(y) * alpha), tol=1e-10, max_iter=5000).fit(X, y)
    assert np.allclose(h.W_, ref.coef_.T, atol=2e-3)
    assert np.mean(h.predict(X) == ref.predict(X)) == 1.0


def test_prior_anchor_keeps_old_classes_and_adds_new():
    X, y, _ = blobs(n_classes=6, per_class=20)
    old = np.isin(y, ["m0", "m1", "m2", "m3"])
    base = SoftmaxHead(alpha=1e-3).fit(X[old], y[old])
    prior = base.to_head("base")
    # 3 shots of each new class + 3 exemplars of each old class
    pick = np.concatenate([np.flatnonzero(y == c)[:3] for c in np.unique(y)])
    h = SoftmaxHead(prior=prior, alpha=1e-2).fit(X[pick], y[pick])
    assert h.classes_.tolist() == ["m0", "m1", "m2", "m3", "m4", "m5"]  # prior order, then new
    rest = np.setdiff1d(np.arange(y.size), pick)
    assert h.score(X[rest], y[rest]) > 0.85
    # default: the prior's columns are frozen exactly; anchored: refitted, and a very strong
    # anchor keeps them at the prior
    assert np.array_equal(h.W_[:, :4], prior.W)
    loose = SoftmaxHead(prior=prior, prior_weights="anchored", alpha=1e-3).fit(X[pick], y[pick])
    assert not np.allclose(loose.W_[:, :4], prior.W, atol=1e-3)
    stiff = SoftmaxHead(prior=prior, prior_weights="anchored", alpha=1e4).fit(X[pick], y[pick])
    assert np.allclose(stiff.W_[:, :4], prior.W, atol=1e-3)
    with pytest.raises(ValueError, match=r"prior_weights must be one of \('frozen', 'anchored'\)"):
        SoftmaxHead(prior=prior, prior_weights="free").fit(X[pick], y[pick])
    with pytest.raises(ValueError, match="prior head expects"):
        SoftmaxHead(prior=prior).fit(X[:, :8], y)


def test_balanced_weights_help_a_single_shot():
    X, y, _ = blobs(n_classes=5, per_class=20, spread=1.5, seed=3)
    pick = np.concatenate([np.flatnonzero(y == c)[: (1 if c == "m4" else 10)]
                           for c in np.unique(y)])
    rest = np.setdiff1d(np.flatnonzero(y == "m4"), pick)
    bal = SoftmaxHead(class_weight="balanced").fit(X[pick], y[pick])
    assert bal.score(X[rest], y[rest]) >= SoftmaxHead(class_weight=None).fit(
        X[pick], y[pick]).score(X[rest], y[rest])


def test_select_exemplars_herding():
    X, y, centres = blobs(n_classes=3, per_class=30, d=8)
    idx = select_exemplars(X, y, per_class=4)
    assert len(idx) == 12 and np.array_equal(idx, select_exemplars(X, y, per_class=4))
    assert all(np.sum(y[idx] == c) == 4 for c in np.unique(y))
    # herded exemplars' mean is closer to the class mean than a random pick's, on average
    rng = np.random.default_rng(0)
    for c in np.unique(y):
        Xc = X[y == c]
        herd = np.linalg.norm(X[idx][y[idx] == c].mean(0) - Xc.mean(0))
        rand = np.mean([np.linalg.norm(Xc[rng.choice(len(Xc), 4, replace=False)].mean(0)
                                       - Xc.mean(0)) for _ in range(50)])
        assert herd < rand
    few = select_exemplars(X[:2], y[:2], per_class=5)  # fewer samples than per_class
    assert len(few) == 2
    with pytest.raises(ValueError):
        select_exemplars(X, y, per_class=0)


def test_headweights_validation():
    with pytest.raises(Exception, match="shapes disagree"):
        HeadWeights(np.zeros((4, 3)), np.zeros(2), ("a", "b", "c"))
    with pytest.raises(Exception, match="duplicates"):
        HeadWeights(np.zeros((4, 2)), np.zeros(2), ("a", "a"))
