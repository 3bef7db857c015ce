"""The int8 cosine bank gives the same unknown scores as the float32 bank it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import ood


@pytest.mark.parametrize("cache_bytes", [0, 2 << 20])  # chunked, and cached float rows
def test_int8_bank_matches_float_bank_exactly_enough(monkeypatch, cache_bytes) -> None:
    monkeypatch.setattr(ood.Int8Bank, "CACHE_BYTES", cache_bytes)
    rng = np.random.default_rng(0)
    codes = rng.integers(-128, 128, size=(300, 64), dtype=np.int8)  # > 2 chunks of 128
    zp, scale = -17, 0.05
    extra = rng.normal(size=(5, 64)).astype(np.float32)
    float_bank = np.concatenate([scale * (codes.astype(np.float32) - zp), extra])
    queries = rng.normal(size=(20, 64)).astype(np.float32)
    queries[3] = float_bank[250] * 2.5  # a stored exemplar, rescaled: distance ~0
    queries[7] = extra[2]  # a taught sample
    want = ood.knn_cosine_score(queries, ood.normalise_rows(float_bank))
    bank = ood.Int8Bank(codes, zp, extra)
    assert len(bank) == 305 and (bank._unit is None) == (cache_bytes == 0)
    got = ood.knn_cosine_score(queries, bank)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got[3] < 1e-5 and got[7] < 1e-5
    # a single query (D,) works like a batch of one
    assert ood.knn_cosine_score(queries[0], bank) == pytest.approx(want[0], abs=1e-5)


def test_int8_bank_rejects_float_codes() -> None:
    with pytest.raises(ValueError, match="int8"):
        ood.Int8Bank(np.zeros((2, 4), dtype=np.float32))


def test_an_empty_bank_matches_nothing() -> None:
    bank = ood.Int8Bank(np.zeros((0, 8), dtype=np.int8))
    assert np.all(np.isinf(bank.max_cosine(np.ones((2, 8), np.float32))))


def test_mahalanobis_scores_grow_away_from_the_known_classes() -> None:
    """The benchmark's (relative) Mahalanobis scores: a class mean scores lowest, and the
    score grows monotonically along a line leaving the known classes."""
    from benchmarks.transfer_experiment import gaussian_scores

    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    y = np.repeat([0, 1], 200)
    F = means[y] + rng.normal(size=(400, 3))
    maha, rel = gaussian_scores(F, y)
    sideways = means[0] + np.outer(np.linspace(0.0, 12.0, 7), [0.0, 1.0, 0.0])
    assert np.all(np.diff(maha(sideways)) > 0)
    # the relative score discounts directions the background shares with the classes; it
    # grows along the class axis, away from both classes
    outward = means[0] + np.outer(np.linspace(2.0, 12.0, 6), [-1.0, 0.0, 0.0])
    assert np.all(np.diff(rel(outward)) > 0)
    for score, far in ((maha, sideways[-1:]), (rel, outward[-1:])):
        assert score(means).max() < score(far)[0]


@pytest.mark.parametrize("cache_bytes", [0, 2 << 20])
@pytest.mark.parametrize("with_extra", [False, True])
def test_the_single_spectrum_distance_is_the_batch_score(monkeypatch, cache_bytes,
                                                         with_extra) -> None:
    """``Int8Bank.distance`` (the classifier's per-spectrum path) equals ``knn_cosine_score``."""
    monkeypatch.setattr(ood.Int8Bank, "CACHE_BYTES", cache_bytes)
    rng = np.random.default_rng(1)
    codes = rng.integers(-128, 128, size=(150, 32), dtype=np.int8)
    extra = rng.normal(size=(4, 32)).astype(np.float32) if with_extra else None
    bank = ood.Int8Bank(codes, -3, extra)
    for f in rng.normal(size=(10, 32)).astype(np.float32):
        assert bank.distance(f) == pytest.approx(float(ood.knn_cosine_score(f, bank)), abs=1e-5)
        # the length knn_logit_norm reads, on either bank path, is the calibration's
        d, length = bank.distance_and_norm(f)
        assert d == bank.distance(f)
        assert length == pytest.approx(float(ood.feature_norms(f)), rel=1e-6)
        assert length == pytest.approx(float(np.linalg.norm(f.astype(np.float64))), rel=1e-6)


def test_the_distance_of_a_zero_vector_and_of_an_empty_bank() -> None:
    bank = ood.Int8Bank(np.ones((3, 4), dtype=np.int8))
    assert bank.distance(np.zeros(4, np.float32)) == pytest.approx(1.0)
    assert ood.Int8Bank(np.zeros((0, 4), dtype=np.int8)).distance(np.ones(4)) == float("inf")


def test_background_parts_grow_with_the_background_logit() -> None:
    """ood_variants' background-class parts on a constructed case: the more a feature row
    points along the unit, the higher log p(background) and the margin; exact values of the
    K + 1 softmax; a run without a unit has neither part."""
    from benchmarks.ood_variants import parts
    from edge_runtime import ood

    rng = np.random.default_rng(0)
    bank = ood.normalise_rows(rng.normal(size=(6, 4)))
    bank_y = np.array([0, 0, 1, 1, 2, 2])
    w = np.array([1.0, 0.0, 0.0, 0.0])
    F = np.array([[t, 1.0, 0.5, 0.2] for t in (-2.0, 0.0, 1.0, 3.0)])
    L = np.tile([0.5, 1.0, -0.5], (4, 1))
    got = parts(F, L, bank, bank_y, (w, -0.5))
    assert np.all(np.diff(got["bg"]) > 0) and np.all(np.diff(got["bgmargin"]) > 0)
    g = F @ w - 0.5
    full = np.concatenate([L, g[:, None]], axis=1)
    assert np.allclose(got["bg"], g - np.log(np.exp(full).sum(axis=1)))
    assert np.allclose(got["bgmargin"], g - 1.0)
    assert "bg" not in parts(F, L, bank, bank_y) and "bgmargin" not in parts(F, L, bank, bank_y)
    # stable at large logits: p(background) -> 1 gives log p -> 0, not inf or nan
    far = parts(F[:1], np.array([[900.0, 1000.0, 0.0]]), bank, bank_y, (w, 1006.0))
    assert np.isfinite(far["bg"][0]) and far["bg"][0] == pytest.approx(-np.log1p(np.exp(-4.0)))


def test_post_hoc_transforms_of_the_shipped_score() -> None:
    """ood_variants' post-hoc variants on a constructed case: the centred distance ignores a
    shift shared by features and bank (CL2N), the power distance of a bank row is 0 and
    grows away from it, and ReAct's clip caps activations above the validation percentile
    (two spectra that differ only above it get the same head part)."""
    from benchmarks.ood_variants import transformed

    rng = np.random.default_rng(1)
    bank = rng.uniform(0.0, 2.0, size=(8, 5))
    big, huge = bank[0].copy(), bank[0].copy()
    big[0], huge[0] = 5.0, 50.0  # both far above every validation activation (< 2)
    F = {"val": rng.uniform(0.0, 2.0, size=(40, 5)), "test": np.vstack([bank[:1], big, huge])}
    Z = {k: {"fnorm": np.zeros(len(v)), "mlogit": np.zeros(len(v)), "d1": np.zeros(len(v))}
         for k, v in F.items()}

    def W(X):
        return np.asarray(X) @ np.eye(5)[:, :3]

    base = transformed(F, bank, W, Z)
    shifted = transformed({k: v + 0.7 for k, v in F.items()}, bank + 0.7, W, Z)
    assert np.allclose(base["shipped, distance centred"]["test"],
                       shifted["shipped, distance centred"]["test"])
    assert not np.allclose(base["shipped, distance power"]["test"],
                           shifted["shipped, distance power"]["test"])
    power = base["shipped, distance power"]["test"]
    assert power[0] == pytest.approx(power.min()) and power[0] < power[1] < power[2]
    for q in (90, 95, 99):
        react = base[f"shipped, mlogit ReAct p{q}"]["test"]
        assert react[1] == pytest.approx(react[2])  # both capped at the same clip value
