"""Few-label training: label-fraction split, no label leak, contrastive and SGAN run folders."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ramanedge.library import SpectralLibrary
from ramanedge.options import range_of
from ramanedge.splits import specimen_groups
from trainer.model import ModelConfig
from trainer.raman_augment import RamanAugmentConfig, raman_views
from trainer.ssl import (
    NAMING_LIBRARY,
    UNLABELLED,
    SSLConfig,
    blend_pseudo_labels,
    hide_labels,
    labelled_fraction_mask,
    library_pseudo_labels,
    propagate_labels,
    soft_name_targets,
    train_ssl,
)
from trainer.train import PAPER_TRAIN, TrainConfig

#: the plain training loop (no teachers, no distillation) that these tests exercise
# the trainer's mechanics on a few steps: no teachers, and the moving average of the weights
# pinned off (an opt-in, rule (E))
PlainTC = partial(TrainConfig, teachers=0, distill=0.0, ema=0.0)

REAL_MINERALS = ("Calcite", "Corundum", "Diopside", "Forsterite", "Quartz")
TINY = ModelConfig(arch="paper", pool_size=16, dense_units=16)


@pytest.fixture(scope="module")
def real(shared_data_root):
    """rruff-raw (cached) with its grouped split, seed 0."""
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split
    from tests.conftest import REPO

    ds = build_dataset(shared_data_root, "rruff-raw", cache_dir=REPO / ".cache" / "ramanedge")
    split = np.asarray(make_split(ds, "grouped", seed=0))
    return ds, split


# ------------------------------------------------------------------ label-fraction split

@pytest.mark.realdata
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_labelled_fraction_is_stratified_grouped_and_seeded(real, fraction) -> None:
    ds, split = real
    tr = split == "train"
    y, g = ds.y[tr], specimen_groups(ds)[tr]
    mask = labelled_fraction_mask(y, g, fraction, seed=3)
    assert np.array_equal(mask, labelled_fraction_mask(y, g, fraction, seed=3))
    assert not np.array_equal(mask, labelled_fraction_mask(y, g, fraction, seed=4))
    # no specimen is split between labelled and unlabelled
    for sid in np.unique(g):
        assert len(set(mask[g == sid])) == 1, sid
    # every mineral keeps >= 1 labelled specimen, and about `fraction` of its specimens
    for c in np.unique(y):
        specs = np.unique(g[y == c])
        kept = np.unique(g[(y == c) & mask])
        assert len(kept) == max(1, round(fraction * len(specs)))
    assert 0 < mask.sum() < mask.size
    assert labelled_fraction_mask(y, g, 1.0).all()


def test_labelled_fraction_rejects_bad_fraction() -> None:
    y, g = np.array([0, 0, 1, 1]), np.array(["a", "b", "c", "d"])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            labelled_fraction_mask(y, g, bad)


def test_hide_labels_sets_unlabelled_to_minus_one() -> None:
    y = np.array([3, 1, 4, 1, 5])
    mask = np.array([True, False, True, False, False])
    out = hide_labels(y, mask)
    assert out.tolist() == [3, UNLABELLED, 4, UNLABELLED, UNLABELLED]
    assert y.tolist() == [3, 1, 4, 1, 5]  # input untouched


# ------------------------------------------------------------------ library pseudo-labels

def _bands(centres, n=1392, width=4.0) -> np.ndarray:
    """A spectrum of unit Lorentzian-like bands at grid points ``centres`` on a sloped
    background (which the library's high-pass removes)."""
    k = np.arange(n, dtype=np.float64)
    return sum(1.0 / (1.0 + ((k - c) / width) ** 2) for c in centres) + 1e-4 * k


def test_library_pseudo_labels_name_only_the_confident_unlabelled_spectra() -> None:
    """Three minerals, one labelled spectrum each (a fourth mineral has none); unlabelled:
    shifted copies of the three (within the match's reach), one spectrum half mineral 0 and
    half mineral 1 (margin ~0) and one of the unlabelled mineral's own bands."""
    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000), (520, 920, 1320)]
    X = [_bands(t) for t in templates[:3]]
    y = [0, 1, 2]
    for c, d in ((0, 12), (1, -8), (2, 16), (0, -20), (1, 24)):  # shifted copies
        X.append(_bands([p + d for p in templates[c]]))
        y.append(UNLABELLED)
    X.append(_bands(templates[0]) + _bands(templates[1]))  # ambiguous
    X.append(_bands(templates[3]))  # a mineral nobody labelled
    X, y = np.array(X), np.array(y + [UNLABELLED, UNLABELLED])
    named, margin = library_pseudo_labels(X, y, 4, coverage=5 / 7)
    assert named[:3].tolist() == [0, 1, 2] and np.isnan(margin[:3]).all()
    assert named[3:8].tolist() == [0, 1, 2, 0, 1]  # the shifted copies, correctly named
    assert named[8] == UNLABELLED and named[9] == UNLABELLED  # the two least confident
    assert margin[8] < margin[3:8].min() and margin[9] < margin[3:8].min()
    assert y[3:].tolist() == [UNLABELLED] * 7  # input untouched
    # the same names whatever the order of the spectra
    perm = np.random.default_rng(0).permutation(len(y))
    shuffled, _ = library_pseudo_labels(X[perm], y[perm], 4, coverage=5 / 7)
    assert np.array_equal(shuffled, named[perm])
    # floor(coverage * 7 + 0.5) spectra are named: 0.5 of 7 -> 4 (3.5 rounds up)
    half, _ = library_pseudo_labels(X, y, 4, coverage=0.5)
    assert int((half[3:] >= 0).sum()) == 4
    every, _ = library_pseudo_labels(X, y, 4, coverage=1.0)
    assert (every >= 0).all() and 3 not in every  # a mineral without a labelled spectrum
    none, _ = library_pseudo_labels(X, y, 4, coverage=0.0)
    assert np.array_equal(none, y)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="coverage"):
            library_pseudo_labels(X, y, 4, coverage=bad)
    with pytest.raises(ValueError, match="labelled"):
        library_pseudo_labels(X, np.full(len(y), UNLABELLED), 4, coverage=0.5)
    with pytest.raises(ValueError, match="-1..3"):
        library_pseudo_labels(X, np.where(y < 0, -2, y), 4, coverage=0.5)
    bad = X.copy()
    bad[5, 10] = np.nan
    with pytest.raises(ValueError, match="finite"):
        library_pseudo_labels(bad, y, 4, coverage=0.5)


def test_library_names_mix_in_propagation_over_the_library_view() -> None:
    """``library_pseudo_labels(propagate=p)``: the score that names is ``(1 - p)`` the
    softmax of the library's similarities (its temperature) plus ``p`` the given labels
    propagated over the library's own view of every spectrum (``match_view``), surest by
    that score's margin; p = 0 keeps the library's similarities and names."""
    from ramanedge.library import match_view, softmax_rows

    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000)]
    X = [_bands(t) for t in templates]
    y = [0, 1, 2]
    for c, d in ((0, 12), (1, -8), (2, 16), (0, -20), (1, 24), (2, -28)):
        X.append(_bands([p + d for p in templates[c]]))
        y.append(UNLABELLED)
    X.append(_bands(templates[0]) + _bands(templates[1]))  # ambiguous to the library
    X, y = np.array(X), np.array(y + [UNLABELLED])
    cfg = replace(NAMING_LIBRARY, candidates=0)
    free = np.flatnonzero(y < 0)
    S = SpectralLibrary.build(X[:3], y[:3], 3, cfg).similarity_batch(X[free])
    Z = propagate_labels(match_view(X, cfg), y, 3)[free]
    for p in (0.5, 1.0):
        named, margin = library_pseudo_labels(X, y, 3, coverage=4 / 7, propagate=p)
        q = (1 - p) * softmax_rows(S / cfg.temperature) + p * Z
        top2 = np.sort(q, axis=1)[:, -2:]
        assert np.allclose(margin[free], top2[:, 1] - top2[:, 0])
        surest = free[np.argsort(-(top2[:, 1] - top2[:, 0]), kind="stable")[:4]]
        assert np.array_equal(named[surest], q.argmax(axis=1)[np.searchsorted(free, surest)])
        assert int((named[free] >= 0).sum()) == 4 and named[:3].tolist() == [0, 1, 2]
    plain, m0 = library_pseudo_labels(X, y, 3, coverage=4 / 7)
    again, m1 = library_pseudo_labels(X, y, 3, coverage=4 / 7, propagate=0.0)
    assert np.array_equal(plain, again) and np.array_equal(m0, m1, equal_nan=True)
    top2 = np.sort(S, axis=1)[:, -2:]  # without propagation: the similarities' margin
    assert np.allclose(m0[free], top2[:, 1] - top2[:, 0])
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="propagate must be"):
            library_pseudo_labels(X, y, 3, coverage=0.5, propagate=bad)
    with pytest.raises(ValueError, match="library_propagate joins the library's naming"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, library_propagate=0.5)


def test_blend_pseudo_labels_weigh_the_network_and_the_library_as_the_rover_does() -> None:
    """The second round's names: the library of the labelled spectra blended into the
    network's probabilities (0.7 / 0.3 as shipped); the surest by margin are named."""
    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000), (520, 920, 1320)]
    X = [_bands(t) for t in templates[:3]]
    y = [0, 1, 2]
    for c, d in ((0, 12), (1, -8), (2, 16), (0, -20), (1, 24)):
        X.append(_bands([p + d for p in templates[c]]))
        y.append(UNLABELLED)
    X.append(_bands(templates[0]) + _bands(templates[1]))  # ambiguous to the library
    X.append(_bands(templates[3]))  # a mineral nobody labelled
    X, y = np.array(X), np.array(y + [UNLABELLED, UNLABELLED])
    flat = np.full((len(y), 4), 0.25)  # a network that knows nothing: the library decides
    named = blend_pseudo_labels(X, y, flat, coverage=5 / 7)
    assert named[:3].tolist() == [0, 1, 2] and named[3:8].tolist() == [0, 1, 2, 0, 1]
    assert named[8] == named[9] == UNLABELLED and y[3:].tolist() == [UNLABELLED] * 7
    sure = flat.copy()
    sure[3] = sure[8] = [0.01, 0.97, 0.01, 0.01]  # the network outweighs the library (0.7)
    named = blend_pseudo_labels(X, y, sure, coverage=5 / 7)
    assert named[3] == 1 and named[8] == 1  # the ambiguous spectrum is now among the surest
    assert int((named[3:] >= 0).sum()) == 5
    assert np.array_equal(blend_pseudo_labels(X, y, sure, coverage=0.0), y)
    assert (blend_pseudo_labels(X, y, sure, coverage=1.0) >= 0).all()
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="coverage"):
            blend_pseudo_labels(X, y, sure, coverage=bad)
    with pytest.raises(ValueError, match="differ"):
        blend_pseudo_labels(X, y, sure[:-1], coverage=0.5)
    with pytest.raises(ValueError, match="labelled"):
        blend_pseudo_labels(X, np.full(len(y), UNLABELLED), sure, coverage=0.5)
    with pytest.raises(ValueError, match="-1..3"):
        blend_pseudo_labels(X, np.where(y < 0, 4, y), sure, coverage=0.5)
    with pytest.raises(ValueError, match="differ"):
        blend_pseudo_labels(X, y, sure[:, 0], coverage=0.5)
    nan = sure.copy()
    nan[4, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        blend_pseudo_labels(X, y, nan, coverage=0.5)


def test_label_propagation_spreads_labels_through_unlabelled_neighbours() -> None:
    """``propagate_labels``: two chains of points in feature space, each with one labelled
    end. Chain A's far end lies nearer to chain B's labelled point than to its own (a
    nearest-labelled match names it B), yet its neighbours are chain A's: every point of a
    chain gets its chain's label, borrowed through the unlabelled middle of the chain,
    which neither the library nor the network does; rows are distributions; a point that
    no label reaches has a zero row."""
    t = np.arange(21) * 0.05
    a = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], axis=1)  # angles 0-1.0, xy-plane
    b = np.stack([np.cos(1.3) * np.cos(t), np.sin(1.3) * np.cos(t), np.sin(t)], axis=1)
    far = np.array([[-1.0, -1.0, -1.0], [-1.0, -1.05, -1.0]])  # apart from both chains
    F = np.vstack([a, b, far])
    y = np.full(len(F), UNLABELLED)
    y[0], y[21] = 0, 1  # chain A starts at angle 0, chain B at angle 1.3
    # the nearest labelled point of A's far end is B's
    assert float(a[20] @ b[0]) > float(a[20] @ a[0])
    Z = propagate_labels(F, y, 3, k=2, alpha=0.9)
    assert Z.shape == (44, 3)
    assert Z[:21].argmax(axis=1).tolist() == [0] * 21
    assert Z[21:42].argmax(axis=1).tolist() == [1] * 21
    assert np.allclose(Z[:42].sum(axis=1), 1.0) and np.allclose(Z[42:], 0.0)
    assert np.all(Z[:42, 2] == 0)  # no spectrum carries class 2: it never appears
    # spreading less far (alpha 0.5) still names the whole chain: the far end's only
    # links are chain A's
    assert propagate_labels(F, y, 3, k=2, alpha=0.5)[:21].argmax(axis=1).tolist() == [0] * 21
    for bad_k in (0, 44, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            propagate_labels(F, y, 3, k=bad_k)
    for bad_alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="alpha"):
            propagate_labels(F, y, 3, k=2, alpha=bad_alpha)
    with pytest.raises(ValueError, match="differ"):
        propagate_labels(F[:-1], y, 3, k=2)
    with pytest.raises(ValueError, match="-1..2"):
        propagate_labels(F, np.where(y < 0, 3, y), 3, k=2)
    nan = F.copy()
    nan[3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        propagate_labels(nan, y, 3, k=2)


def test_label_propagation_is_the_closed_form_on_a_random_graph() -> None:
    """``propagate_labels`` equals Zhou et al.'s closed form built here by hand, dense:
    the k-NN graph of cosines raised to the third power, made symmetric (W + W^T),
    normalised D^-1/2 W D^-1/2, F = (I - alpha S)^-1 Y, then each column divided by its
    sum and each row by its own; for two alphas."""
    rng = np.random.default_rng(3)
    F = np.abs(rng.normal(size=(60, 8)))
    y = np.full(60, UNLABELLED)
    y[rng.choice(60, 12, replace=False)] = np.arange(12) % 4
    U = F / np.linalg.norm(F, axis=1, keepdims=True)
    C = U @ U.T
    np.fill_diagonal(C, -np.inf)
    W = np.zeros((60, 60))
    for i in range(60):
        nn = np.argsort(-C[i])[:4]
        W[i, nn] = np.maximum(C[i, nn], 0) ** 3
    W = W + W.T
    d = W.sum(axis=1)
    S = W / np.sqrt(np.outer(d, d))
    Y = np.zeros((60, 4))
    Y[np.flatnonzero(y >= 0), y[y >= 0]] = 1
    for alpha in (0.5, 0.95):
        Z = np.linalg.solve(np.eye(60) - alpha * S, Y)
        Z /= Z.sum(axis=0, keepdims=True)
        Z /= Z.sum(axis=1, keepdims=True)
        assert np.allclose(propagate_labels(F, y, 4, k=4, alpha=alpha), Z, rtol=1e-7,
                           atol=1e-9)


def test_blend_names_mix_in_the_propagated_scores() -> None:
    """``blend_pseudo_labels(propagated=Z, propagate=p)``: the score that names is
    ``(1 - p)`` the blend plus ``p`` Z; p = 0 ignores Z, p = 1 names by Z alone."""
    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000)]
    X = [_bands(t) for t in templates] + [_bands([p + 8 for p in templates[c]])
                                          for c in (0, 1, 2)]
    y = np.array([0, 1, 2] + [UNLABELLED] * 3)
    X = np.array(X)
    flat = np.full((6, 3), 1 / 3)
    by_blend = blend_pseudo_labels(X, y, flat, coverage=1.0)
    assert by_blend[3:].tolist() == [0, 1, 2]
    Z = np.zeros((6, 3))
    Z[3:] = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]  # the propagation disagrees everywhere
    assert np.array_equal(blend_pseudo_labels(X, y, flat, coverage=1.0, propagated=Z,
                                              propagate=0.0), by_blend)
    assert blend_pseudo_labels(X, y, flat, coverage=1.0, propagated=Z,
                               propagate=1.0)[3:].tolist() == [2, 0, 1]
    _, q = blend_pseudo_labels(X, y, flat, coverage=1.0, return_blend=True)
    _, mixed = blend_pseudo_labels(X, y, flat, coverage=1.0, return_blend=True,
                                   propagated=Z, propagate=0.3)
    assert np.allclose(mixed[3:], 0.7 * q[3:] + 0.3 * Z[3:])
    with pytest.raises(ValueError, match="give propagated too"):
        blend_pseudo_labels(X, y, flat, coverage=1.0, propagate=0.5)
    with pytest.raises(ValueError, match="propagate must be"):
        blend_pseudo_labels(X, y, flat, coverage=1.0, propagated=Z, propagate=1.5)
    with pytest.raises(ValueError, match="shaped like probs"):
        blend_pseudo_labels(X, y, flat, coverage=1.0, propagated=Z[:, :2], propagate=0.5)


def test_soft_name_targets_mix_the_name_with_the_blend() -> None:
    """Given labels stay one-hot, a named spectrum's target is ``(1 - s)`` its name plus
    ``s`` its blend renormalised, an unnamed one trains on nothing; the blend that
    :func:`blend_pseudo_labels` returns is the one it named by (NaN rows where labelled)."""
    given = np.array([0, 1, UNLABELLED, UNLABELLED, UNLABELLED])
    named = np.array([0, 1, 2, 0, UNLABELLED])
    blend = np.full((5, 3), np.nan)
    blend[2] = [0.1, 0.3, 0.6]
    blend[3] = [0.2, 0.2, 0.2]  # sums to 0.6: renormalised to a third each
    blend[4] = [0.5, 0.25, 0.25]
    T = soft_name_targets(named, given, blend, soft=0.5)
    assert T.shape == (5, 3) and T.dtype == np.float32
    assert np.array_equal(T[:2], np.eye(3, dtype=np.float32)[[0, 1]])
    assert np.allclose(T[2], [0.05, 0.15, 0.8]) and np.allclose(T[3], [2 / 3, 1 / 6, 1 / 6])
    assert not T[4].any() and np.allclose(T[:4].sum(axis=1), 1.0)
    assert np.array_equal(soft_name_targets(named, given, blend, soft=0.0)[:4],
                          np.eye(3, dtype=np.float32)[named[:4]])
    assert np.allclose(soft_name_targets(named, given, blend, soft=1.0)[3], 1 / 3)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="soft must be a fraction"):
            soft_name_targets(named, given, blend, soft=bad)
    with pytest.raises(ValueError, match="changes a label that was given"):
        soft_name_targets(np.array([1, 1, 2, 0, -1]), given, blend, soft=0.5)
    with pytest.raises(ValueError, match="differ"):
        soft_name_targets(named, given, blend[:4], soft=0.5)
    missing = blend.copy()
    missing[3] = np.nan
    with pytest.raises(ValueError, match="blend row"):
        soft_name_targets(named, given, missing, soft=0.5)
    # the blend rows come from blend_pseudo_labels: NaN where a label was given
    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000)]
    X = np.array([_bands(t) for t in templates] + [_bands([p + 10 for p in templates[2]])])
    y = np.array([0, 1, 2, UNLABELLED])
    P = np.array([[0.6, 0.2, 0.2]] * 4)
    names, q = blend_pseudo_labels(X, y, P, coverage=1.0, return_blend=True)
    assert np.array_equal(names, blend_pseudo_labels(X, y, P, coverage=1.0))
    assert np.isnan(q[:3]).all() and q[3].argmax() == names[3] == 2
    assert np.allclose(q[3], SpectralLibrary.build(X[:3], y[:3], 3, NAMING_LIBRARY)
                       .blend_batch(P[3:], X[3:])[0])
    # coverage below 1: every unlabelled spectrum keeps its blend row, named or not
    X2 = np.vstack([X, _bands([p - 10 for p in templates[0]])])
    y2 = np.append(y, UNLABELLED)
    P2 = np.vstack([P, [[0.34, 0.33, 0.33]]])
    some, q2 = blend_pseudo_labels(X2, y2, P2, coverage=0.5, return_blend=True)
    assert (some[3:] >= 0).sum() == 1 and np.isfinite(q2[3:]).all() and np.isnan(q2[:3]).all()
    none, q0 = blend_pseudo_labels(X2, y2, P2, coverage=0.0, return_blend=True)
    assert np.array_equal(none, y2) and np.isnan(q0).all()  # nothing named, nothing blended
    for bad_row in ([0.0, 0.0, 0.0], [0.5, -0.1, 0.6]):
        bad = blend.copy()
        bad[2] = bad_row
        with pytest.raises(ValueError, match="blend row"):
            soft_name_targets(named, given, bad, soft=0.5)
    with pytest.raises(ValueError, match="soft_names softens the blend round"):
        SSLConfig(labelled_fraction=0.1, library_labels=0.5, soft_names=0.5)


def test_names_by_specimen_share_one_name_and_margin() -> None:
    """``groups``: the scores of a specimen's unlabelled spectra are averaged, so a spectrum
    the library cannot tell apart on its own takes its specimen's clear answer."""
    templates = [(300, 700, 1100), (450, 850, 1250), (350, 600, 1000)]
    X = [_bands(t) for t in templates]
    y = [0, 1, 2]
    X.append(_bands([p + 12 for p in templates[0]]))  # specimen A: clearly mineral 0
    X.append(_bands(templates[0]) * 0.45 + _bands(templates[1]) * 0.55)  # A: leans to 1
    X.append(_bands([p - 8 for p in templates[2]]))  # specimen B: mineral 2
    X, y = np.array(X), np.array(y + [UNLABELLED] * 3)
    groups = np.array(["L0", "L1", "L2", "A", "A", "B"])
    alone, m_alone = library_pseudo_labels(X, y, 3, coverage=1.0)
    named, m = library_pseudo_labels(X, y, 3, coverage=1.0, groups=groups)
    assert alone[3] == 0 and alone[4] == 1  # on its own, the mixed spectrum leans to 1
    assert named[3] == named[4] == 0 and named[5] == 2  # with its specimen: 0
    assert m[3] == m[4] != m[5] and m_alone[3] != m_alone[4]
    assert m_alone[4] < m[4] < m_alone[3]  # the mean of the two, not either one
    flat = np.full((len(y), 3), 1 / 3)
    q_named = blend_pseudo_labels(X, y, flat, coverage=1.0, groups=groups)
    assert q_named[3] == q_named[4] == 0 and q_named[5] == 2
    sure = flat.copy()
    sure[4] = [0.02, 0.96, 0.02]  # the network outvotes the library on one spectrum of A
    split = blend_pseudo_labels(X, y, sure, coverage=1.0)
    joint = blend_pseudo_labels(X, y, sure, coverage=1.0, groups=groups)
    assert split[3] == 0 and split[4] == 1
    assert joint[3] == joint[4] == 1  # the mean of both rows, not the first one's answer
    with pytest.raises(ValueError, match="one specimen id per training spectrum"):
        library_pseudo_labels(X, y, 3, coverage=0.5, groups=groups[:-1])
    with pytest.raises(ValueError, match="one specimen id per training spectrum"):
        blend_pseudo_labels(X, y, flat, coverage=0.5, groups=groups[:-1])
    with pytest.raises(ValueError, match="empty specimen id"):
        library_pseudo_labels(X, y, 3, coverage=0.5, groups=np.array(["L0", "L1", "L2", "A",
                                                                       "", "B"]))
    with pytest.raises(ValueError, match="by_specimen changes how"):
        SSLConfig(labelled_fraction=0.5, by_specimen=True)
    with pytest.raises(ValueError, match="one specimen id per training spectrum"):
        train_ssl(X, y, X[:3], np.arange(3), 3, TINY, PlainTC(epochs=1),
                  SSLConfig(labelled_fraction=0.5, relabel=0.5, by_specimen=True),
                  groups=groups[:-1], log=None)  # refused before the first round trains
    with pytest.raises(ValueError, match="needs the specimen"):
        train_ssl(X, y, X[:3], np.arange(3), 3, TINY, PlainTC(epochs=1),
                  SSLConfig(labelled_fraction=0.5, library_labels=0.5, by_specimen=True),
                  log=None)


def test_second_round_trains_again_on_the_blend_names(synthetic_data, monkeypatch) -> None:
    """``SSLConfig.relabel``: round 1 trains on the given labels and the library's names;
    the first network's blend with the labelled spectra's library then names the unlabelled
    spectra afresh (from the given labels, not round 1's names) and a second network trains
    on those (its result returned)."""
    import trainer.ssl as ssl
    from trainer.train import fit_model, predict_probs

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    rng = np.random.default_rng(0)
    given = np.zeros(len(ytr), bool)
    for c in range(4):
        given[rng.choice(np.flatnonzero(ytr == c), 3, replace=False)] = True
    masked = np.where(given, ytr, UNLABELLED)
    calls: list = []

    def spy(model, X, y, *args, **kw):
        res = fit_model(model, X, y, *args, **kw)
        calls.append((np.asarray(X), np.asarray(y), predict_probs(res.model, Xtr), res))
        return res

    monkeypatch.setattr(ssl, "fit_model", spy)
    cfg = SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5, relabel=0.8)
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32), cfg,
                    log=None)
    assert len(calls) == 2 and out is calls[1][3]
    first_names, _ = library_pseudo_labels(Xtr, masked, 4, coverage=0.5)
    assert np.array_equal(calls[0][1], first_names[first_names >= 0])
    want = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8)
    assert np.array_equal(calls[1][1], want[want >= 0])
    assert np.array_equal(calls[1][0], Xtr[want >= 0])
    assert np.array_equal(out.labels, want)
    assert len(calls[1][1]) == given.sum() + round(0.8 * (~given).sum())
    assert not np.array_equal(want, first_names)  # a new naming, not round 1's kept
    # relabel_rounds = 2: a third training, named by the second network's blend
    calls.clear()
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
                    SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                              relabel=0.8, relabel_rounds=2), log=None)
    assert len(calls) == 3 and out is calls[2][3]
    third = blend_pseudo_labels(Xtr, masked, calls[1][2], coverage=0.8)
    assert np.array_equal(calls[2][1], third[third >= 0]) and np.array_equal(out.labels, third)
    # soft_names: the blend round trains its named spectra on soft targets, round 1 does not
    calls.clear()
    soft_kw: list = []

    own_seconds: list = []  # each student's own, before train_ssl adds to it

    def spy_soft(model, X, y, *args, **kw):
        soft_kw.append(kw.get("soft_targets"))
        res = spy(model, X, y, *args, **kw)
        own_seconds.append(res.seconds)
        return res

    monkeypatch.setattr(ssl, "fit_model", spy_soft)
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
                    SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                              relabel=0.8, soft_names=0.5), log=None)
    assert len(calls) == 2 and soft_kw[0] is None
    names, q = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8, return_blend=True)
    keep = names >= 0
    assert np.array_equal(out.labels, names)  # the hard names, for the int8 fine-tune
    assert np.allclose(soft_kw[1], soft_name_targets(names, masked, q, soft=0.5)[keep])
    assert not np.allclose(soft_kw[1], np.eye(4)[names[keep]])  # softer than the names
    assert np.array_equal(soft_kw[1][given[keep]], np.eye(4)[ytr[given]])
    # teachers: the blend round first trains them on the given labels and its names, then
    # distils their mean into its network (0.5 / 0.5, as the default); round 1 has none
    import trainer.train as train_mod

    calls.clear()
    soft_kw.clear()
    own_seconds.clear()
    taught: list = []

    def spy_teachers(X, y, *args, **kw):
        mean, info = train_mod.train_teachers(X, y, *args, **kw)
        taught.append((np.asarray(X), np.asarray(y), args[-1], mean))
        return mean, info

    monkeypatch.setattr(ssl, "train_teachers", spy_teachers)
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
                    SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                              relabel=0.8, teachers=2, distill=0.3), log=None)
    assert len(calls) == 2 and soft_kw[0] is None and len(taught) == 1
    names = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8)
    keep = names >= 0
    X_t, y_t, tc, mean = taught[0]
    assert np.array_equal(X_t, Xtr[keep]) and np.array_equal(y_t, names[keep])
    assert tc.teachers == 2 and tc.distill == 0.3 and mean.shape == (keep.sum(), 4)
    assert np.allclose(soft_kw[1], 0.7 * np.eye(4)[names[keep]] + 0.3 * mean)
    assert len(out.teachers) == 2 and np.array_equal(out.labels, names)
    # the run's seconds count the teachers too: more than the two students' own
    assert out.seconds > sum(own_seconds[-2:])
    # propagate: the blend round names by the blend mixed with label propagation from the
    # given labels over the first network's features (round 1 unchanged)
    import trainer.ssl as ssl_mod
    from trainer.model import features_model

    monkeypatch.setattr(ssl, "train_teachers", train_mod.train_teachers)
    calls.clear()
    spread: list = []

    def spy_propagate(F, y, K, **kw):
        spread.append((np.asarray(F), np.asarray(y), kw))
        return ssl_mod_propagate(F, y, K, **kw)

    ssl_mod_propagate = ssl_mod.propagate_labels
    monkeypatch.setattr(ssl, "fit_model", spy)
    monkeypatch.setattr(ssl, "propagate_labels", spy_propagate)
    train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
              SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                        relabel=0.8), log=None)
    assert spread == []  # without propagate the round names by the blend alone
    calls.clear()
    # library_propagate: the first round's names are the library's mixed with propagation
    train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
              SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                        library_propagate=0.5), log=None)
    assert len(spread) == 1 and np.array_equal(spread[0][1], masked)  # given labels only
    mixed, _ = library_pseudo_labels(Xtr, masked, 4, coverage=0.5, propagate=0.5)
    assert len(calls) == 1 and np.array_equal(calls[0][1], mixed[mixed >= 0])
    spread.clear()
    calls.clear()
    # both rounds propagate (features graph in the second): first over the library's view
    # of the spectra, then over the first network's features, each from the given labels
    from ramanedge.library import match_view

    train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
              SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                        library_propagate=0.5, relabel=0.8, propagate=0.5), log=None)
    assert len(calls) == 2 and len(spread) == 2
    assert np.allclose(spread[0][0], match_view(Xtr, NAMING_LIBRARY))
    feats = np.asarray(features_model(calls[0][3].model).predict(Xtr, verbose=0))
    assert np.allclose(spread[1][0], feats, atol=1e-5)
    assert all(np.array_equal(y_seen, masked) for _, y_seen, _ in spread)
    spread.clear()
    calls.clear()
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
                    SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                              relabel=0.8, propagate=0.5), log=None)
    assert len(calls) == 2 and len(spread) == 1
    F_seen, y_seen, kw = spread[0]
    assert np.array_equal(y_seen, masked)  # the given labels, not round 1's names
    assert kw == {"k": min(ssl.PROPAGATE_K, len(Xtr) - 1), "alpha": ssl.PROPAGATE_ALPHA}
    feats = np.asarray(features_model(calls[0][3].model).predict(Xtr, verbose=0))
    assert np.allclose(F_seen, feats, atol=1e-5)  # the first network's features
    Z = ssl_mod_propagate(feats, masked, 4, k=ssl.PROPAGATE_K, alpha=ssl.PROPAGATE_ALPHA)
    want = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8, propagated=Z,
                               propagate=0.5)
    assert np.array_equal(out.labels, want) and np.array_equal(calls[1][1], want[want >= 0])
    # propagate_graph "joint": one propagation over the unit features and the unit library
    # view side by side, still from the given labels only
    spread.clear()
    calls.clear()
    out = train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
                    SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                              relabel=0.8, propagate=0.5, propagate_graph="joint"), log=None)
    assert len(calls) == 2 and len(spread) == 1
    F_seen, y_seen, _ = spread[0]
    feats = np.asarray(features_model(calls[0][3].model).predict(Xtr, verbose=0))
    view = match_view(Xtr, NAMING_LIBRARY)
    assert F_seen.shape == (len(Xtr), feats.shape[1] + view.shape[1])
    assert np.allclose(F_seen[:, :feats.shape[1]],
                       feats / np.linalg.norm(feats, axis=1, keepdims=True), atol=1e-5)
    assert np.allclose(F_seen[:, feats.shape[1]:], view, atol=1e-6)
    assert np.array_equal(y_seen, masked)
    Z = ssl_mod_propagate(F_seen, masked, 4, k=ssl.PROPAGATE_K, alpha=ssl.PROPAGATE_ALPHA)
    want = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8, propagated=Z,
                               propagate=0.5)
    assert np.array_equal(out.labels, want)
    # shipped_match: the first round's library names and the blend round (its match and the
    # joint graph's library view) use the rover's shipped match of 2026-12-06 (without the
    # lag prior the rover's answer added on 2026-12-08) instead of NAMING_LIBRARY
    from ramanedge.library import LibraryConfig
    from trainer.ssl import SHIPPED_NAMING_LIBRARY

    assert replace(LibraryConfig(), lag_penalty=0.0) == SHIPPED_NAMING_LIBRARY

    seen_cfg: list = []

    def spying(fn):
        def spy_fn(*a, **kw):
            seen_cfg.append((fn.__name__, kw.get("config")))
            return fn(*a, **kw)
        return spy_fn

    monkeypatch.setattr(ssl, "library_pseudo_labels", spying(library_pseudo_labels))
    monkeypatch.setattr(ssl, "blend_pseudo_labels", spying(blend_pseudo_labels))
    spread.clear()
    calls.clear()
    train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
              SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                        relabel=0.8, propagate=0.5, propagate_graph="joint",
                        shipped_match=True), log=None)
    assert seen_cfg == [("library_pseudo_labels", SHIPPED_NAMING_LIBRARY),
                        ("blend_pseudo_labels", SHIPPED_NAMING_LIBRARY)]
    assert np.allclose(spread[0][0][:, feats.shape[1]:],
                       match_view(Xtr, SHIPPED_NAMING_LIBRARY), atol=1e-6)
    shipped_first = library_pseudo_labels(Xtr, masked, 4, coverage=0.5,
                                          config=SHIPPED_NAMING_LIBRARY)[0]
    assert np.array_equal(calls[0][1], shipped_first[shipped_first >= 0])
    seen_cfg.clear()  # without it: NAMING_LIBRARY (passed as such or as the default None)
    train_ssl(Xtr, masked, Xva, yva, 4, TINY, PlainTC(epochs=1, batch_size=32),
              SSLConfig(method="none", labelled_fraction=0.1, library_labels=0.5,
                        relabel=0.8), log=None)
    assert [c or NAMING_LIBRARY for _, c in seen_cfg] == [NAMING_LIBRARY] * 2
    # the match the recipe was measured with (the shipped one before 2026-12-06)
    assert replace(LibraryConfig(), power=1.0, weight=0.3, lag_penalty=0.0) == NAMING_LIBRARY
    # "library": one propagation over the library's view; "both": the mean of the features'
    # and the view's propagations (blend_round_names on the first network, no training)
    first = calls[0][3].model
    for graph, seen_shapes in (("library", [view.shape]),
                               ("both", [feats.shape, view.shape])):
        spread.clear()
        y_g, q_g = ssl.blend_round_names(first, Xtr, masked, 4, coverage=0.8, propagate=0.5,
                                         graph=graph)
        assert [F.shape for F, _, _ in spread] == seen_shapes
        assert all(np.array_equal(y_seen, masked) for _, y_seen, _ in spread)
        Zs = [ssl_mod_propagate(F, masked, 4, k=ssl.PROPAGATE_K, alpha=ssl.PROPAGATE_ALPHA)
              for F, _, _ in spread]
        want = blend_pseudo_labels(Xtr, masked, calls[0][2], coverage=0.8,
                                   propagated=np.mean(Zs, axis=0), propagate=0.5)
        assert np.array_equal(y_g, want)
    with pytest.raises(ValueError, match="graph must be one of"):
        ssl.blend_round_names(first, Xtr, masked, 4, coverage=0.8, propagate=0.5, graph="x")
    with pytest.raises(ValueError, match="propagate_graph must be one of features, library"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, propagate=0.5, propagate_graph="knn")
    with pytest.raises(ValueError, match="set propagate too"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, propagate_graph="joint")
    with pytest.raises(ValueError, match="propagate joins the blend round"):
        SSLConfig(labelled_fraction=0.1, library_labels=0.5, propagate=0.5)
    with pytest.raises(ValueError, match="teachers distil the blend round"):
        SSLConfig(labelled_fraction=0.1, library_labels=0.5, teachers=3)
    with pytest.raises(ValueError, match="use one"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, teachers=3, soft_names=0.5)
    with pytest.raises(ValueError, match="train for nothing"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, teachers=3, distill=0.0)
    with pytest.raises(ValueError, match="distill weighs the teachers"):
        SSLConfig(labelled_fraction=0.1, relabel=0.5, distill=0.3)
    with pytest.raises(ValueError, match="second naming round"):
        SSLConfig(method="sgan", labelled_fraction=0.1, relabel=0.5)
    with pytest.raises(ValueError, match="relabel_rounds counts the blend naming rounds"):
        SSLConfig(labelled_fraction=0.1, library_labels=0.5, relabel_rounds=2)


# ------------------------------------------------------------------ no label leak

@pytest.mark.slow
@pytest.mark.realdata
def test_hidden_labels_never_reach_training(real) -> None:
    """Changing the labels of the unlabelled part changes nothing (SGAN uses all spectra)."""
    ds, split = real
    keep = np.isin(np.asarray(ds.labels)[ds.y], REAL_MINERALS[:3])
    sub = keep & (split == "train")
    va = keep & (split == "val")
    remap = {c: i for i, c in enumerate(np.unique(ds.y[keep]))}
    y = np.array([remap[c] for c in ds.y[sub]])
    yv = np.array([remap[c] for c in ds.y[va]])
    mask = labelled_fraction_mask(y, specimen_groups(ds)[sub], 0.3, seed=0)
    y_other = y.copy()
    rng = np.random.default_rng(1)
    y_other[~mask] = rng.integers(0, 3, size=(~mask).sum())  # different hidden labels
    assert not np.array_equal(y, y_other)
    tc = PlainTC(epochs=1, batch_size=32, monitor="val_loss")
    cfg = SSLConfig(method="sgan", labelled_fraction=0.3, sgan_epochs=1)
    w = []
    for labels in (y, y_other):
        ym = hide_labels(labels, mask)
        assert np.all(ym[~mask] == UNLABELLED)
        res = train_ssl(ds.X[sub], ym, ds.X[va], yv, 3, TINY, tc, cfg, log=None)
        w.append(res.model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*w, strict=True))


@pytest.mark.realdata
def test_hidden_labels_never_reach_library_labels(real) -> None:
    """With library labels, changing the hidden labels changes neither the names nor the
    trained weights: the library is built from the labelled part only."""
    ds, split = real
    keep = np.isin(np.asarray(ds.labels)[ds.y], REAL_MINERALS)
    sub, va = keep & (split == "train"), keep & (split == "val")
    remap = {c: i for i, c in enumerate(np.unique(ds.y[keep]))}
    y = np.array([remap[c] for c in ds.y[sub]])
    yv = np.array([remap[c] for c in ds.y[va]])
    mask = labelled_fraction_mask(y, specimen_groups(ds)[sub], 0.3, seed=0)
    y_other = y.copy()
    y_other[~mask] = (y[~mask] + 1) % 5  # every hidden label different
    tc = PlainTC(epochs=1, batch_size=32, monitor="val_loss")
    cfg = SSLConfig(method="none", labelled_fraction=0.3, library_labels=0.5)
    w, names = [], []
    for labels in (y, y_other):
        ym = hide_labels(labels, mask)
        names.append(library_pseudo_labels(ds.X[sub], ym, 5, coverage=0.5)[0])
        res = train_ssl(ds.X[sub], ym, ds.X[va], yv, 5, TINY, tc, cfg, log=None)
        w.append(res.model.get_weights())
    assert np.array_equal(*names) and (names[0] >= 0).sum() > mask.sum()
    assert all(np.array_equal(a, b) for a, b in zip(*w, strict=True))


@pytest.mark.realdata
def test_ssl_train_run_passes_only_masked_labels(real, tmp_path, monkeypatch,
                                                 shared_data_root) -> None:
    """ssl_train_run hands train_ssl -1 for every unlabelled spectrum; val labels untouched."""
    import trainer.ssl as ssl
    from tests.conftest import REPO
    from trainer.run import DataConfig

    seen = {}

    class Stop(Exception):
        pass

    def spy(X, y_masked, X_val, y_val, n_classes, *a, **k):
        seen.update(X=X, y=y_masked, X_val=X_val, y_val=y_val, K=n_classes)
        raise Stop

    monkeypatch.setattr(ssl, "train_ssl", spy)
    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    with pytest.raises(Stop):
        ssl.ssl_train_run(tmp_path / "r", data, TINY, PAPER_TRAIN,
                          SSLConfig(method="sgan", labelled_fraction=0.2), log=None)
    assert not (tmp_path / "r").exists()
    y = seen["y"]
    assert seen["K"] == 5 and (y == UNLABELLED).any() and (y >= 0).any()
    assert set(np.unique(y)) <= {UNLABELLED, 0, 1, 2, 3, 4}
    assert len(seen["X_val"]) == len(seen["y_val"]) and (seen["y_val"] >= 0).all()


# ------------------------------------------------------------------ augmentations

def test_raman_views_are_max_normalised_and_differ() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(1392)
    X = np.stack([np.exp(-0.5 * ((t - c) / 6.0) ** 2) + 0.05 for c in (300, 700, 1100)])
    X = (X / X.max(1, keepdims=True)).astype(np.float32)
    v1 = raman_views(X, RamanAugmentConfig(), rng)
    v2 = raman_views(X, RamanAugmentConfig(), rng)
    assert v1.shape == X.shape and v1.dtype == np.float32
    assert np.allclose(v1.max(1), 1.0)
    assert not np.allclose(v1, v2)
    # no transform at all: identity (apart from the global intensity factor, removed by max-norm)
    off = RamanAugmentConfig(shift_cm=0, gain=0, baseline=0, noise_std=0, spikes=0)
    assert np.allclose(raman_views(X, off, rng), X, atol=1e-6)
    # the band stays near its place: argmax moves by at most shift_cm (+ spikes/baseline aside)
    mild = RamanAugmentConfig(shift_cm=5, gain=0, baseline=0, noise_std=0, spikes=0)
    assert np.all(np.abs(raman_views(X, mild, rng).argmax(1) - X.argmax(1)) <= 5)


# ------------------------------------------------------------------ SGAN export

def test_sgan_export_is_softmax_over_first_k_logits() -> None:
    import keras

    from trainer.model import build_model
    from trainer.sgan import export_k_class

    keras.utils.set_random_seed(0)
    base = build_model(3, TINY)
    logits = keras.layers.Dense(4, name="logits_k1")(base.get_layer("dropout").output)
    disc = keras.Model(base.input, logits)
    X = np.random.default_rng(0).random((5, 1392)).astype(np.float32)
    lg = np.asarray(disc(X, training=False))
    model = export_k_class(base, disc.get_layer("logits_k1"), 3)
    e = np.exp(lg[:, :3] - lg[:, :3].max(1, keepdims=True))
    assert np.allclose(np.asarray(model(X, training=False)), e / e.sum(1, keepdims=True),
                       atol=1e-5)
    assert model.get_layer("probs").output.shape[-1] == 3
    assert model.get_layer("features") is not None


# ------------------------------------------------------------------ run folders that quantise

def _quantize(run_dir, tmp_path):
    from quantize.export import QuantizeConfig, export_artifact, select_calibration
    from trainer.run import load_run

    run = load_run(run_dir)
    Xtr, ytr = run.subset("train")
    Xva, _ = run.subset("val")
    Xte, yte = run.subset("test")
    res = export_artifact(run.model, labels=run.labels, model_config=run.model_config,
                          calib_X=Xtr[select_calibration(ytr, 30, seed=0)], val_X=Xva,
                          test_X=Xte, test_y=yte, out_dir=tmp_path / "artifact",
                          training_meta={"dataset": "rruff-raw", "split_sha256":
                                         run.config["split_sha256"], "run": str(run_dir)},
                          config=QuantizeConfig(calib_size=30, allow_accuracy_drop=True))
    assert (tmp_path / "artifact" / "model.tflite").is_file()
    return run, res


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("method", ["contrastive", "sgan"])
def test_tiny_ssl_run_on_real_spectra_quantizes(method, tmp_path, shared_data_root) -> None:
    from tests.conftest import REPO
    from trainer.run import DataConfig
    from trainer.ssl import ssl_train_run

    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    lines: list[str] = []
    cfg = SSLConfig(method=method, labelled_fraction=0.3, pretrain_epochs=1, sgan_epochs=1,
                    pretrain_batch=32)
    out = ssl_train_run(tmp_path / "run", data, TINY, PlainTC(epochs=1, batch_size=16),
                        cfg, log=lines.append)
    assert any(("pretrain" if method == "contrastive" else "sgan") in s for s in lines)
    conf = json.loads((out / "config.json").read_text())
    assert conf["ssl"]["method"] == method and conf["ssl"]["labelled_fraction"] == 0.3
    assert 0 < conf["ssl"]["n_labelled"] < conf["data"]["n_train"]
    labelled = (out / "labelled.csv").read_text().splitlines()
    assert labelled[0] == "path,labelled" and len(labelled) == conf["data"]["n_train"] + 1
    assert sum(s.endswith(",1") for s in labelled) == conf["ssl"]["n_labelled"]
    run, _ = _quantize(out, tmp_path)
    assert run.labels == sorted(REAL_MINERALS)
    assert [layer.name for layer in run.model.layers][-1] == "probs"
    assert run.model.output_shape[-1] == 5


@pytest.mark.slow
@pytest.mark.realdata
def test_library_labels_train_and_export_from_the_labelled_part_only(tmp_path, monkeypatch,
                                                                     shared_data_root) -> None:
    """``SSLConfig.library_labels``: the fraction of unlabelled training spectra the library
    names is trained on as labelled; ``ramanedge quantize`` of the few-label run builds the
    spectral library and the exemplars from the spectra whose labels the run was given."""
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.library import LibraryConfig
    from tests.conftest import REPO
    from trainer.run import DataConfig, load_run
    from trainer.ssl import ssl_train_run

    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    cfg = SSLConfig(method="none", labelled_fraction=0.3, library_labels=0.5)
    out = ssl_train_run(tmp_path / "run", data, TINY, PlainTC(epochs=1, batch_size=16), cfg,
                        log=None)
    conf = json.loads((out / "config.json").read_text())
    assert conf["ssl"]["library_labels"] == 0.5
    n_lab, n_unlab = conf["ssl"]["n_labelled"], conf["ssl"]["n_unlabelled"]
    run = load_run(out)
    given = run.labelled_mask()
    Xtr, ytr = run.subset("train")
    y = ytr[given]
    assert len(y) == n_lab < len(ytr)
    flags = [ln.endswith(",1") for ln in (out / "labelled.csv").read_text().splitlines()[1:]]
    assert np.array_equal(given, np.array(flags))
    import quantize.export as qexport
    import ramanedge.splits as splits

    drawn = {}
    real_draw = splits.select_calibration

    def draw(y_cal, size, *, seed=0):
        drawn["y"] = np.asarray(y_cal)
        return real_draw(y_cal, size, seed=seed)

    monkeypatch.setattr(splits, "select_calibration", draw)
    assert qexport.calibration_indices is splits.calibration_indices
    res = quantize_run(out, tmp_path / "artifact", config=QuantizeConfig(
        calib_size=30, allow_accuracy_drop=True, library=LibraryConfig(),
        exemplars_per_class=2))
    # the int8 calibration draw is stratified by the given labels, the rest one group
    assert np.array_equal(drawn["y"], np.where(np.array(flags), ytr, -1))
    lib = np.load(tmp_path / "artifact" / "library.npz")
    assert len(lib["y"]) == n_lab and sorted(set(lib["y"].tolist())) == sorted(set(y.tolist()))
    assert res.manifest is not None and n_unlab > 0
    # the unlabelled spectra reach the trainer only through the library's names
    import trainer.ssl as ssl

    seen = {}

    def spy(model, X, y, *args, **kw):
        seen.update(y=y, unlabelled=kw["unlabelled"])
        raise RuntimeError("stop")

    masked = np.where(np.array(flags), ytr, UNLABELLED)
    Xva, yva = run.subset("val")
    monkeypatch.setattr(ssl, "fit_model", spy)
    with pytest.raises(RuntimeError, match="stop"):
        train_ssl(Xtr, masked, Xva, yva, 5, TINY, PlainTC(epochs=1), cfg, log=None)
    want, _ = library_pseudo_labels(Xtr, masked, 5, coverage=0.5)
    assert np.array_equal(seen["y"], want[want >= 0])
    assert len(seen["y"]) == n_lab + round(0.5 * n_unlab)
    assert len(seen["unlabelled"]) == n_unlab - round(0.5 * n_unlab)
    # a labelled.csv that no longer lists the split's training spectra is refused
    from trainer.run import RunError

    table = (out / "labelled.csv").read_text().splitlines()
    (out / "labelled.csv").write_text("\n".join(table[:-1]) + "\n")
    with pytest.raises(RunError, match="labelled.csv does not mark each"):
        load_run(out, load_model=False).labelled_mask()


@pytest.mark.slow
@pytest.mark.realdata
def test_few_label_flight_run_is_fine_tuned_int8_aware_on_its_own_labels(
        tmp_path, monkeypatch, shared_data_root) -> None:
    """A few-label flight run ends with the int8-aware fine-tune, as a fully labelled one
    does: on the labelled and library-named spectra only (never a hidden label), its grids
    calibrated on the very draw ``ramanedge quantize`` makes, so the default export passes
    the gate without ``--allow-accuracy-drop``."""
    import quantize.export as qexport
    import ramanedge.splits as splits
    import trainer.qat as qat
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.splits import calibration_indices
    from tests.conftest import REPO
    from tests.test_qat import SMALL
    from trainer.run import DataConfig, load_run
    from trainer.ssl import ssl_train_run

    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    seen: dict = {}
    real_qat = qat.quantization_aware_finetune

    def spy(model, X, y, *args, **kw):
        seen.update(X=np.asarray(X), y=np.asarray(y), **kw)
        return real_qat(model, X, y, *args, **kw)

    monkeypatch.setattr(qat, "quantization_aware_finetune", spy)
    # a draw smaller than the 86 training spectra, so that its strata matter
    monkeypatch.setattr(splits, "DEFAULT_CALIB_SIZE", 30)
    cfg = SSLConfig(method="none", labelled_fraction=0.3, library_labels=0.5,
                    by_specimen=True)
    out = ssl_train_run(tmp_path / "run", data, SMALL,
                        PlainTC(epochs=3, batch_size=16, qat_epochs=2), cfg, log=None)
    conf = json.loads((out / "config.json").read_text())
    assert conf["model"]["act_quant"] and conf["qat"]["epochs"] >= 1
    assert conf["train"]["qat_epochs"] == 2 and (out / "model_float.keras").is_file()
    run = load_run(out)
    given = run.labelled_mask()
    Xtr, ytr = run.subset("train")
    masked = np.where(given, ytr, UNLABELLED)
    specimens = specimen_groups(run.dataset)[run.split == "train"]
    named, _ = library_pseudo_labels(Xtr, masked, 5, coverage=0.5, groups=specimens)
    assert not np.array_equal(named, library_pseudo_labels(Xtr, masked, 5, coverage=0.5)[0])
    # fine-tuned on the given labels and the library's names (per specimen), nothing else
    assert np.array_equal(seen["y"], named[named >= 0])
    assert np.array_equal(seen["X"], Xtr[named >= 0])
    assert len(seen["y"]) < len(ytr) and seen["epoch_samples"] == len(ytr)
    idx = calibration_indices(ytr, given, 30)
    assert len(idx) == 30 < len(ytr) and np.array_equal(seen["calibration"], Xtr[idx])
    # stratified by the given labels: not the draw of the names or of every hidden label
    assert not np.array_equal(idx, calibration_indices(named, None, 30))
    assert not np.array_equal(idx, calibration_indices(ytr, None, 30))
    exported = {}
    real_idx = qexport.calibration_indices

    def idx_spy(y, g, size, *, seed=0):
        exported["idx"] = real_idx(y, g, size, seed=seed)
        return exported["idx"]

    monkeypatch.setattr(qexport, "calibration_indices", idx_spy)
    res = quantize_run(out, tmp_path / "artifact", config=QuantizeConfig(calib_size=30))
    assert np.array_equal(exported["idx"], idx)  # the grids it trained with are shipped
    metrics = res.manifest.data["metrics"]
    assert res.gate_reason is None and metrics["gate"]["passed"]
    assert not metrics["gate"]["allow_accuracy_drop"] and metrics["head"]["agreement"] >= 0.99


def test_int8_finetune_refuses_labels_of_another_length(synthetic_data) -> None:
    from tests.test_qat import SMALL
    from trainer.run import int8_finetune
    from trainer.train import TrainResult

    split = np.asarray(synthetic_data.split)
    n_train = int((split == "train").sum())
    result = TrainResult(model=None, history={}, best_epoch=1, epochs_run=1, seconds=0.0)
    with pytest.raises(ValueError, match=f"per training spectrum \\({n_train}\\)"):
        int8_finetune(result, synthetic_data, split, SMALL, PlainTC(qat_epochs=1),
                      labels=np.zeros(n_train - 1, dtype=int),
                      given=np.ones(n_train - 1, dtype=bool), log=None)
    for kw in ({"labels": np.zeros(n_train, dtype=int)}, {"given": np.ones(n_train, bool)}):
        with pytest.raises(ValueError, match="labels and given go together"):
            int8_finetune(result, synthetic_data, split, SMALL, PlainTC(qat_epochs=1), **kw,
                          log=None)


def test_cli_rejects_bad_labelled_fraction(tmp_path, capsys, shared_data_root) -> None:
    from ramanedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(shared_data_root), "--labelled-fraction", "0",
              "--ssl", "sgan", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error:") and "labelled fraction" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.realdata
def test_cli_train_passes_ssl_options_through(tmp_path, monkeypatch, shared_data_root) -> None:
    """``ramanedge train --labelled-fraction F --ssl M`` reaches ssl_train_run unchanged."""
    import trainer.ssl as ssl
    from ramanedge.cli import main

    seen = {}

    def spy(out, data, mc, tc, config, *, overwrite=False, log=None, **kw):
        seen.update(out=out, data=data, mc=mc, tc=tc, config=config, **kw)

    monkeypatch.setattr(ssl, "ssl_train_run", spy)
    main(["train", "--data", str(shared_data_root), "--dense-units", "16", "--epochs", "3",
          "--seed", "5", "--labelled-fraction", "0.2", "--ssl", "contrastive",
          "--out", str(tmp_path / "r")])
    cfg = seen["config"]
    assert cfg.method == "contrastive" and cfg.labelled_fraction == 0.2 and cfg.label_seed == 5
    assert seen["mc"].dense_units == 16 and seen["tc"].epochs == 3
    assert Path(seen["out"]) == tmp_path / "r"
    assert seen["pretrained"] is None and seen["config"].pseudo is None
    assert not seen["config"].by_specimen  # nothing is named: not recorded
    assert not seen["config"].shipped_match

    # --backbone DIR --pseudo-label: the pretrained weights, their record and the pseudo-labels
    from trainer.contrastive import backbone_layers
    from trainer.model import build_model
    from trainer.pretrain import save_backbone

    mc = seen["mc"]
    weights = {la.name: la.get_weights() for la in backbone_layers(build_model(2, mc))}
    save_backbone(tmp_path / "pre", weights, meta={"model": mc.to_dict(), "excluded_ids": ["X"]})
    seen.clear()
    main(["train", "--data", str(shared_data_root), "--dense-units", "16", "--epochs", "3",
          "--labelled-fraction", "0.2", "--backbone", str(tmp_path / "pre"), "--pseudo-label",
          "--library-labels", "0.6", "--relabel", "1", "--out", str(tmp_path / "r2")])
    assert seen["config"].method == "pretrained" and seen["config"].pseudo is not None
    assert seen["config"].library_labels == 0.6 and seen["config"].relabel == 1.0
    assert seen["config"].to_dict()["by_specimen"]  # the CLI names per specimen by default
    assert seen["config"].propagate == 0.5  # and both rounds propagate by default
    assert seen["config"].library_propagate == 0.5
    assert seen["config"].propagate_graph == "joint"  # the second round: features + view
    assert seen["config"].shipped_match  # it names with the rover's shipped match
    assert set(seen["pretrained"]) == set(weights)
    assert seen["pretrained_meta"]["excluded_ids"] == ["X"]
    seen.clear()
    main(["train", "--data", str(shared_data_root), "--labelled-fraction", "0.2",
          "--library-labels", "0.6", "--names-per-spectrum", "--out", str(tmp_path / "r3")])
    assert seen["config"].library_labels == 0.6 and not seen["config"].by_specimen
    assert seen["config"].propagate == 0.0  # no second round: nothing to propagate into
    assert seen["config"].propagate_graph == "features"
    assert seen["config"].library_propagate == 0.5  # the first round propagates
    seen.clear()
    main(["train", "--data", str(shared_data_root), "--labelled-fraction", "0.2",
          "--library-labels", "0.6", "--relabel", "1", "--propagate", "0",
          "--out", str(tmp_path / "r4")])
    assert seen["config"].relabel == 1.0 and seen["config"].propagate == 0.0
    assert seen["config"].library_propagate == 0.0  # --propagate 0: off in both rounds
    assert seen["config"].propagate_graph == "features"
    seen.clear()
    main(["train", "--data", str(shared_data_root), "--labelled-fraction", "0.2",
          "--relabel", "1", "--propagate", "0.3", "--out", str(tmp_path / "r5")])
    assert seen["config"].propagate == 0.3 and seen["config"].library_propagate == 0.0
    assert seen["config"].propagate_graph == "joint"  # a second round propagates: joint


@pytest.mark.parametrize(("args", "msg"), [
    (["--library-labels", "0.5"], "--library-labels labels the unlabelled training spectra"),
    (["--library-labels", "1.5", "--labelled-fraction", "0.1"],
     "--library-labels takes a fraction in [0, 1]"),
    (["--library-labels", "0.5", "--labelled-fraction", "0.1", "--ssl", "sgan"],
     "library labels apply to none, contrastive and pretrained, not sgan"),
    (["--relabel", "1"], "--relabel labels the unlabelled training spectra"),
    (["--relabel", "1.5", "--labelled-fraction", "0.1"], "--relabel takes a fraction in [0, 1]"),
    (["--names-per-spectrum", "--labelled-fraction", "0.1"],
     "--names-per-spectrum changes how --library-labels and --relabel name spectra"),
    (["--propagate", "0.5", "--labelled-fraction", "0.1"],
     "--propagate mixes label propagation into the naming rounds: give --library-labels or "
     "--relabel too"),
    (["--propagate", "1.5", "--labelled-fraction", "0.1", "--relabel", "1"],
     "--propagate takes a weight in [0, 1]"),
    (["--relabel", "0.5", "--labelled-fraction", "0.1", "--ssl", "sgan"],
     "second naming round (relabel) applies to none, contrastive and pretrained, not sgan"),
])
def test_cli_refuses_bad_library_labels(args, msg, tmp_path, capsys, shared_data_root) -> None:
    """A bad ``--library-labels`` or ``--relabel`` ends in one line before any data is read
    or trained."""
    from ramanedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(shared_data_root), *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error:") and msg in err, err
    assert len(err.strip().splitlines()) == 1
    assert ("takes a fraction" in err) == ("takes a fraction" in msg), err  # the right hint
    assert not (tmp_path / "r").exists()


def test_ssl_config_refuses_what_its_pretraining_would_refuse() -> None:
    """SSLConfig's pretraining settings take trainer.pretrain.PretrainConfig's bounds (asked,
    not copied): a value PretrainConfig refuses is refused before any data is read."""
    from trainer.pretrain import PretrainConfig

    pairs = {"pretrain_lr": "learning_rate", "temperature": "temperature",
             "projection_dim": "projection_dim"}
    for ssl_name, pre_name in pairs.items():
        hi = range_of(PretrainConfig, pre_name)[1]
        assert range_of(SSLConfig, ssl_name) == range_of(PretrainConfig, pre_name)
        with pytest.raises(ValueError, match=f"ssl {ssl_name} must be in"):
            SSLConfig(**{ssl_name: hi * 2})
        with pytest.raises(ValueError, match=f"{pre_name} must be in"):
            PretrainConfig(**{pre_name: hi * 2})
    assert SSLConfig(pretrain_epochs=0).pretrain_epochs == 0  # 0 = no pretraining
    with pytest.raises(ValueError, match="pretrain_epochs"):
        SSLConfig(pretrain_epochs=range_of(PretrainConfig, "epochs")[1] + 1)
