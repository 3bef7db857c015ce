"""ramanedge.grid: the model grid, resampling, normalisation, axis cleaning, shifts."""

from __future__ import annotations

import numpy as np
import pytest

from ramanedge.errors import CoverageError, SpectrumError
from ramanedge.grid import (
    DEFAULT_GRID,
    GRID,
    CoveragePolicy,
    GridSpec,
    clean_axis,
    covered_span,
    covers,
    normalise_max,
    pad_outside,
    preprocess,
    preprocess_covered,
    resample,
    resample_covered,
    shift_spectra,
)


def test_grid_is_200_plus_k():
    assert GRID.shape == (1392,)
    assert GRID[0] == 200.0 and GRID[-1] == 1591.0
    assert np.all(np.diff(GRID) == 1.0)
    assert DEFAULT_GRID.stop == 1591.0
    assert np.array_equal(DEFAULT_GRID.axis(), GRID)
    assert not GRID.flags.writeable


def test_gridspec_roundtrip_and_validation():
    g = GridSpec(100.0, 2.0, 10)
    assert GridSpec.from_dict(g.to_dict()) == g
    assert g.stop == 118.0
    with pytest.raises(ValueError):
        GridSpec(0.0, 0.0, 10)
    with pytest.raises(ValueError):
        GridSpec(0.0, 1.0, 0)


def test_resample_is_exact_on_a_linear_function():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(150.0, 1700.0, 900))
    x = np.concatenate([[150.0], x, [1700.0]])
    y = 3.5 * x - 20.0
    out = resample(x, y)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 3.5 * GRID - 20.0, rtol=1e-12, atol=1e-9)


def test_resample_exact_at_grid_edges():
    x = np.array([200.0, 1591.0])
    y = np.array([1.0, 2.0])
    out = resample(x, y)
    assert out[0] == 1.0 and out[-1] == 2.0


@pytest.mark.parametrize(("lo", "hi"), [(201.0, 2000.0), (100.0, 1590.5), (300.0, 1200.0)])
def test_resample_refuses_partial_coverage(lo, hi):
    x = np.linspace(lo, hi, 500)
    with pytest.raises(CoverageError, match="200-1591"):
        resample(x, np.ones_like(x))
    assert not covers(x)


def test_nan_and_inf_are_refused():
    x = np.linspace(100, 2000, 100)
    for bad in (np.nan, np.inf, -np.inf):
        y = np.ones_like(x)
        y[10] = bad
        with pytest.raises(SpectrumError, match="NaN or infinite"):
            preprocess(x, y)
    xb = x.copy()
    xb[3] = np.nan
    with pytest.raises(SpectrumError):
        clean_axis(xb, np.ones_like(x))


def test_clean_axis_sorts_and_averages_duplicates():
    x = np.array([3.0, 1.0, 2.0, 2.0, 4.0])
    y = np.array([30.0, 10.0, 20.0, 22.0, 40.0])
    cx, cy = clean_axis(x, y)
    assert np.array_equal(cx, [1.0, 2.0, 3.0, 4.0])
    assert np.array_equal(cy, [10.0, 21.0, 30.0, 40.0])


def test_clean_axis_rejects_bad_shapes():
    with pytest.raises(SpectrumError):
        clean_axis(np.arange(3.0), np.arange(4.0))
    with pytest.raises(SpectrumError):
        clean_axis(np.array([1.0]), np.array([1.0]))
    with pytest.raises(SpectrumError):
        clean_axis(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(SpectrumError, match="distinct"):
        clean_axis(np.array([5.0, 5.0]), np.array([1.0, 2.0]))


def test_normalise_max_per_row():
    X = np.array([[1.0, 4.0, 2.0], [-1.0, 0.5, 0.25]])
    out = normalise_max(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.25, 1.0, 0.5], [-2.0, 1.0, 0.5]])
    with pytest.raises(SpectrumError, match="not positive"):
        normalise_max(np.array([-1.0, -2.0, 0.0]))


def test_preprocess_output():
    x = np.linspace(100, 2000, 3000)
    y = 50 + 1000 * np.exp(-0.5 * ((x - 465.0) / 4.0) ** 2)
    out = preprocess(x, y)
    assert out.shape == (1392,) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0)
    assert GRID[int(np.argmax(out))] == pytest.approx(465.0, abs=1.0)


@pytest.mark.parametrize("s", [-30, -1, 1, 15, 30])
def test_shift_pads_with_edge_values(s):
    X = np.stack([np.arange(1392, dtype=np.float32), np.arange(1392, dtype=np.float32) * 2])
    out = shift_spectra(X, s)
    assert out.shape == X.shape
    if s > 0:
        assert np.array_equal(out[:, s:], X[:, :-s])
        assert np.all(out[:, :s] == X[:, :1])
    else:
        assert np.array_equal(out[:, :s], X[:, -s:])
        assert np.all(out[:, s:] == X[:, -1:])
    assert np.array_equal(shift_spectra(X, 0), X)
    # peaks move to higher wavenumbers for positive shifts
    one = np.zeros(1392)
    one[500] = 1
    assert int(np.argmax(shift_spectra(one, s))) == 500 + s


def test_coverage_policy_validates():
    assert CoveragePolicy() == CoveragePolicy(mode="pad", min_fraction=0.5)
    for bad in ({"mode": "crop"}, {"min_fraction": 1.5}, {"min_fraction": True},
                {"min_fraction": "0.5"}):
        with pytest.raises(ValueError, match="pad, refuse|min_fraction"):
            CoveragePolicy(**bad)


def test_pad_outside_holds_edge_values_per_row():
    X = np.arange(20.0).reshape(2, 10)
    out = pad_outside(X, np.array([2, 0]), np.array([5, 10]))
    assert out[0].tolist() == [2, 2, 2, 3, 4, 4, 4, 4, 4, 4]
    assert out[1].tolist() == X[1].tolist()
    assert pad_outside(X[0], 3, 4).tolist() == [3.0] * 10
    assert X[0, 0] == 0  # a copy
    for lo, hi in ((5, 5), (-1, 4), (0, 11)):
        with pytest.raises(ValueError, match="lo < hi"):
            pad_outside(X, lo, hi)


@pytest.mark.parametrize(("lo", "hi", "first", "last"),
                         [(123.1, 1230.8, 0, 1031), (400.0, 2000.0, 200, 1392),
                          (450.5, 1300.2, 251, 1101)])
def test_partial_spectrum_is_interpolated_inside_and_padded_outside(lo, hi, first, last):
    """The 2019 excellent_unoriented raw range (123-1231 cm-1), a 400 cm-1 long-pass filter
    and both: exact interpolation on the covered grid points, edge hold elsewhere."""
    x = np.linspace(lo, hi, 3000)
    y = 5.0 + 0.01 * x  # linear: interpolation is exact
    g, frac = resample_covered(x, y, coverage=CoveragePolicy())
    assert covered_span(x) == (first, last)
    assert frac == pytest.approx((last - first) / 1392)
    np.testing.assert_allclose(g[first:last], 5.0 + 0.01 * GRID[first:last], rtol=1e-12)
    assert np.all(g[:first] == g[first]) and np.all(g[last:] == g[last - 1])
    with pytest.raises(CoverageError, match="200-1591"):
        resample_covered(x, y)  # the default (data set builds) refuses
    with pytest.raises(CoverageError, match="the minimum is 90%"):
        resample_covered(x, y, coverage=CoveragePolicy(min_fraction=0.9))
    p, f2 = preprocess_covered(x, y, coverage=CoveragePolicy())
    assert f2 == frac and p.max() == 1.0 and p.dtype == np.float32


def test_spectrum_outside_the_grid_is_refused_even_at_zero_minimum():
    x = np.linspace(2290, 3002, 400)  # an OH-region scan (SOURCE.md quirk 9)
    with pytest.raises(CoverageError, match="fewer than 2 points of the model's 200-1591") as e:
        resample_covered(x, np.ones_like(x), coverage=CoveragePolicy(min_fraction=0.0))
    assert "minimum" not in str(e.value)  # not "covers 0%; the minimum is 0%"


def test_a_wild_axis_is_named_in_a_short_message() -> None:
    """An axis of 1e300 cm-1 printed with one decimal was two 300-digit numbers."""
    with pytest.raises(CoverageError) as e:
        resample_covered(np.array([1e300, 2e300]), np.array([1.0, 2.0]))
    assert "1e+300-2e+300 cm-1" in str(e.value) and len(str(e.value)) < 150
    with pytest.raises(CoverageError, match="covers 2000.0-3499.0 cm-1"):
        resample_covered(np.array([2000.0, 3499.0]), np.array([1.0, 2.0]))
