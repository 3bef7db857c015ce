"""The TF-free attribution helpers (issue 17): occlusion on a model with a known answer, band
picking, peak finding and the hit check."""

from __future__ import annotations

import numpy as np
import pytest

from ramanedge.attribution import (
    attributed_bands,
    band_hits,
    chance_hit_rate,
    occlude,
    occlusion_map,
    spectrum_peaks,
)

P = 1392
t = np.arange(P)


def _band(centre: float, width: float = 5.0, height: float = 1.0) -> np.ndarray:
    return height * np.exp(-0.5 * ((t - centre) / width) ** 2)


def test_occlude_draws_the_line_between_the_window_edges() -> None:
    x = (0.1 + 0.001 * t + _band(500)).astype(np.float32)
    y = occlude(x, 490, 510)
    assert np.array_equal(y[:490], x[:490]) and np.array_equal(y[511:], x[511:])
    assert np.allclose(np.diff(y[489:512]), (x[511] - x[489]) / 22, atol=1e-6)
    assert y[500] < 0.7  # the band is gone, the baseline stays
    assert occlude(x, -5, 3)[:4].tolist() == [x[4]] * 4  # the grid edge holds the inside value
    assert occlude(x, P - 3, P + 5)[-3:].tolist() == [x[P - 4]] * 3


def test_occlusion_finds_the_band_a_model_looks_at() -> None:
    """A 'model' whose class-1 probability is the height of the band at 700 (and ignores the
    stronger band at 300): occlusion must light up 700 only."""
    x = (0.1 + _band(300, height=1.0) + _band(700, height=0.5)).astype(np.float32)

    def predict(X: np.ndarray) -> np.ndarray:
        s = X[:, 695:706].max(axis=1)
        return np.stack([1 - s, s], axis=1)

    m = occlusion_map(predict, x, 1, half_width=10, stride=5)
    assert m.shape == (P,) and m.max() == pytest.approx(1.0)
    assert abs(int(np.argmax(m)) - 700) <= 10 and m[250:350].max() == 0.0
    assert attributed_bands(m, 3).tolist()[0] == pytest.approx(700, abs=10)
    assert np.all(occlusion_map(lambda X: np.ones((len(X), 2)) / 2, x, 0) == 0)  # no effect
    with pytest.raises(ValueError, match="stride"):
        occlusion_map(predict, x, 1, stride=0)


def test_attributed_bands_are_separated_and_positive() -> None:
    m = np.zeros(P)
    m[[100, 105, 300, 900]] = [1.0, 0.9, 0.5, 0.2]
    assert attributed_bands(m, 3, min_separation=20).tolist() == [100, 300, 900]
    assert attributed_bands(m, 3, min_separation=3).tolist() == [100, 105, 300]
    assert attributed_bands(np.zeros(P), 3).tolist() == []


def test_spectrum_peaks_rank_by_prominence_over_the_local_baseline() -> None:
    # a tall broad fluorescence hump carries a small band; two sharp bands elsewhere
    x = (2.0 * np.exp(-0.5 * ((t - 600) / 300) ** 2) + _band(600, 4, 0.1) + _band(200, 3, 0.6)
         + _band(1200, 3, 0.3))
    pk = spectrum_peaks(x, 5)
    assert pk[:3].tolist() == [200, 1200, 600]
    assert spectrum_peaks(np.ones(P), 5).size == 0


def test_band_hits_and_chance() -> None:
    peaks = np.array([200, 600])
    assert band_hits(np.array([195, 611, 400]), peaks, 10).tolist() == [True, False, False]
    assert band_hits(np.array([1, 2]), np.array([], dtype=int)).tolist() == [False, False]
    assert chance_hit_rate(peaks, 1000, 10) == pytest.approx(42 / 1000)


def test_the_rover_occlusion_runs_through_the_int8_path(tiny_artifact, synthetic_data) -> None:
    from edge_runtime import Classifier

    clf = Classifier.from_dir(tiny_artifact, use_head_store=False)
    Xte, _ = synthetic_data.part("test")
    x = Xte[0]
    P_batch = clf.predict_proba_batch(Xte[:5])
    assert np.allclose(P_batch, np.stack([clf.predict_proba(r) for r in Xte[:5]]))
    m = clf.occlusion(x)
    assert m.shape == (P,) and m.min() >= 0 and m.max() <= 1
    # the strongest attributed band sits on one of the spectrum's own bands
    assert band_hits(attributed_bands(m, 1), spectrum_peaks(x, 5), 10).all()
    with pytest.raises(Exception, match="not one of"):
        clf.occlusion(x, "nosuchite")
