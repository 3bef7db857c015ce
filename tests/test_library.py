"""The spectral library beside the network (:mod:`ramanedge.library`): its arithmetic on
constructed cases, its place in the artifact contract, the rover's blended answer (and the
prediction sets calibrated on it), and the lag tolerance on real RRUFF spectra."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from ramanedge.errors import ManifestError, ModelError
from ramanedge.library import (
    LibraryConfig,
    SpectralLibrary,
    high_pass,
    lagged_cosine,
    match_view,
    powered,
    softmax_rows,
)

P = 1392
K_GRID = np.arange(P, dtype=np.float64)


def peaks(*centres: float, width: float = 4.0) -> np.ndarray:
    """A spectrum of unit Gaussian bands at ``centres`` (grid points)."""
    return sum(np.exp(-0.5 * ((K_GRID - c) / width) ** 2) for c in centres)


def test_high_pass_removes_a_smooth_background_and_keeps_the_bands() -> None:
    bands = peaks(300, 520, 900)
    background = 3.0 + 2.0 * K_GRID / P + 4.0 * np.exp(-0.5 * ((K_GRID - 700) / 400) ** 2)
    raw_cos = float(bands @ (bands + background)
                    / np.linalg.norm(bands) / np.linalg.norm(bands + background))
    a, b = high_pass(bands, 25), high_pass(bands + background, 25)
    assert raw_cos < 0.5  # the fluorescence dominates the raw spectrum
    assert float(a @ b) > 0.97  # the filtered spectra agree
    assert np.isclose(np.linalg.norm(b), 1.0, atol=1e-5)
    assert np.array_equal(high_pass(np.zeros((2, P)), 25), np.zeros((2, P), np.float32))
    # half_width 0: only scaled
    assert np.allclose(high_pass(bands, 0), bands / np.linalg.norm(bands), atol=1e-6)


def test_lagged_cosine_finds_a_shifted_copy_within_its_reach_only() -> None:
    ref = high_pass(peaks(300, 520, 900)[None], 25)
    moved = high_pass(peaks(324, 544, 924)[None], 25)  # a 24 cm-1 calibration shift
    plain = float(lagged_cosine(moved, ref, 0, 3)[0, 0])
    assert plain < 0.1
    assert float(lagged_cosine(moved, ref, 30, 3)[0, 0]) > 0.99  # lag -24 is tried
    assert float(lagged_cosine(moved, ref, 15, 3)[0, 0]) < 0.5  # not within reach


def _library(n_classes: int = 3) -> tuple[SpectralLibrary, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.stack([peaks(*(rng.uniform(100, 1300, 3)), width=2.0) + rng.uniform(0, 1)
                  for _ in range(7)])
    y = np.array([2, 0, 2, 0, 0, 2, 2])  # class 1 has no library spectra
    # lag_penalty 0: every lag alike, what _brute_force computes
    return SpectralLibrary.build(X, y, n_classes, LibraryConfig(reach=9, step=3, bin_width=1,
                                                          power=1.0, weight=0.3,
                                                          lag_penalty=0.0)), X


def _brute_force(q: np.ndarray, rows: np.ndarray, lag_list: list[int]) -> np.ndarray:
    """The best cosine of ``q`` with each row over ``lag_list``, element by element (the
    query moved by d, zero-filled): independent of the library's own code."""
    best = np.full(len(rows), -np.inf)
    for d in lag_list:
        moved = np.zeros_like(q)
        for j in range(len(q)):
            if 0 <= j - d < len(q):
                moved[j] = q[j - d]
        best = np.maximum(best, rows @ moved)
    return best


def test_similarity_is_each_class_best_lagged_cosine_and_batch_equals_single() -> None:
    lib, X = _library()
    y = np.array([2, 0, 2, 0, 0, 2, 2])
    # queries moved by an on-grid lag (6, tried) and an off-grid one (7, not tried), one
    # with a band near the grid's end, where a wrap-around would show
    Q = np.stack([np.roll(X[0], 6), np.roll(X[3], 7), peaks(40, 700, 1385) + 0.3])
    S = lib.similarity_batch(Q)
    rows = high_pass(X, 25).astype(np.float16).astype(np.float32)  # as stored
    for i, q in enumerate(high_pass(Q, 25)):
        want = _brute_force(q.astype(np.float64), rows.astype(np.float64),
                            list(range(-9, 10, 3)))
        for c in (0, 2):
            assert np.isclose(S[i, c], want[y == c].max(), atol=1e-5)
        assert np.allclose(lib.similarity(Q[i]), S[i], atol=1e-5, rtol=0)
    assert np.all(S[:, 1] == -1.0)  # no spectra of class 1
    assert S[0, 2] > 0.99  # its own spectrum, found at lag 6
    assert S[1, 0] < 0.97  # lag 7 is not tried: only a neighbour lag's partial overlap
    every_lag = SpectralLibrary(lib.spectra, lib.y, 3, replace(lib.config, step=1))
    assert every_lag.similarity(Q[1])[0] > 0.99  # ... which trying every lag finds


def test_the_lag_prior_prefers_a_match_in_place_over_a_better_one_far_away() -> None:
    """``lag_penalty``: each lag's cosine is lowered by ``lambda (d / reach)^2`` first, so a
    mineral whose bands line up only 30 points away loses to one that matches in place
    with a slightly lower cosine; the per-spectrum path, the candidates' path and the batch
    path agree, and a penalty of 0 is the match without the prior."""
    from ramanedge.library import lag_penalties

    q = peaks(300, 520, 900, 1100)
    near = peaks(300, 520, 900, 1100) + 0.5 * peaks(700)  # in place, one extra band
    far = peaks(330, 550, 930, 1130)            # all four bands, 30 points away
    cfg = LibraryConfig(reach=30, step=3, bin_width=1, power=1.0, candidates=0,
                        lag_penalty=0.0)
    X, y = np.stack([near, far]), np.array([0, 1])
    flat = SpectralLibrary.build(X, y, 2, cfg)
    prior = SpectralLibrary.build(X, y, 2, replace(cfg, lag_penalty=0.1))
    s_flat, s_prior = flat.similarity(q), prior.similarity(q)
    assert s_flat[1] > s_flat[0]                # without the prior the far match wins
    assert s_prior[0] > s_prior[1]              # with it the match in place wins
    assert np.isclose(s_prior[0], s_flat[0], atol=1e-6)  # found at lag 0: no cost
    assert np.isclose(s_prior[1], s_flat[1] - 0.1, atol=1e-6)  # found at lag 30: all of it
    assert np.allclose(prior.similarity_batch(q[None])[0], s_prior, atol=1e-6)
    assert np.allclose(prior.similarity(q, classes=np.array([1, 0])), s_prior, atol=1e-6)
    assert LibraryConfig().lag_penalty == 0.1  # the default since rule (Y'')
    assert np.array_equal(lag_penalties(30, 3, 0.0), np.zeros(21, np.float32))
    assert np.isclose(lag_penalties(30, 3, 0.1)[[0, 10, 15]], [0.1, 0.0, 0.025]).all()
    assert np.array_equal(lagged_cosine(high_pass(q[None], 25), flat.spectra, 30, 3, 0.0),
                          lagged_cosine(high_pass(q[None], 25), flat.spectra, 30, 3))
    # a manifest written before the key matches without the prior
    assert LibraryConfig.from_dict({k: v for k, v in replace(cfg, lag_penalty=0.1)
                                    .to_dict().items() if k != "lag_penalty"}).lag_penalty == 0


def test_the_lag_prior_is_taken_off_the_cosine_over_the_covered_part() -> None:
    """A partial spectrum's cosines are over the part it covers (``window_norm``); the lag
    prior comes off those cosines, as the batch path takes it off a whole-grid cosine, not
    off the dot product before it is divided by the window's norm."""
    from ramanedge.grid import pad_outside
    from ramanedge.library import lag_penalties, lags

    ref = peaks(150, 300, 900, 1200)
    cfg = LibraryConfig(reach=30, step=3, bin_width=1, power=1.0, candidates=0,
                        lag_penalty=0.1)
    lib = SpectralLibrary.build(ref[None], np.array([0]), 1, cfg)
    part = pad_outside(np.roll(ref, 15), 600, P)  # bands 15 points off, seen from 600 on
    q = high_pass(part, 25).astype(np.float64)
    row = lib.spectra[0].astype(np.float64)
    cost = lag_penalties(30, 3, 0.1)
    norm = float(np.linalg.norm(row[600:]))
    want = max(float(row @ np.roll(np.pad(q, 30), -d)[30:-30]) / norm - float(c)
               for d, c in zip(lags(30, 3), cost, strict=True))
    got = lib.similarity(part, span=(600, P))[0]
    assert np.isclose(got, want, atol=1e-5)
    flat = SpectralLibrary(lib.spectra, lib.y, 1, replace(cfg, lag_penalty=0.0))
    # the best lag is 15 points off: the prior takes 0.1 * (15 / 30)^2 off the windowed cosine
    assert np.isclose(flat.similarity(part, span=(600, P))[0] - got, 0.025, atol=1e-4)


def test_blend_mixes_the_head_and_the_library_by_the_weight() -> None:
    lib, X = _library()
    p = np.array([0.3, 0.45, 0.25])
    q = lib.blend(p, X[0])
    s = softmax_rows(lib.similarity(X[0]) / lib.config.temperature)
    assert np.allclose(q, 0.7 * p + 0.3 * s)
    assert np.isclose(q.sum(), 1.0)
    assert int(np.argmax(q)) == 2  # its own library spectrum: class 2 beats the head's 1
    assert np.allclose(lib.blend_batch(p[None], X[:1])[0], q)
    none = SpectralLibrary(lib.spectra, lib.y, 3, replace(lib.config, weight=0.0))
    assert np.allclose(none.blend(p, X[0]), p)


def test_the_match_is_made_for_the_heads_most_probable_minerals_only() -> None:
    lib, X = _library()
    full = SpectralLibrary(lib.spectra, lib.y, 3, replace(lib.config, candidates=0))
    one = SpectralLibrary(lib.spectra, lib.y, 3, replace(lib.config, candidates=1))
    x = X[0]  # a class-2 spectrum
    s = full.similarity(x)
    for p, kept in ((np.array([0.5, 0.3, 0.2]), 0), (np.array([0.1, 0.3, 0.6]), 2)):
        assert list(one.candidates_of(p)) == [kept]
        want = np.full(3, -1.0)
        want[kept] = s[kept]
        assert np.allclose(one.similarity(x, one.candidates_of(p)), want, atol=1e-6)
        q = one.blend(p, x)
        assert np.allclose(q, 0.7 * p + 0.3 * softmax_rows(want / 0.02), atol=1e-9)
        # the batch path masks the whole match the same way
        assert np.allclose(one.blend_batch(p[None], x[None])[0], q, atol=1e-6)
    # with the class-2 head answer the library confirms it; with class 0 first it cannot
    # lift class 2 (no share for a non-candidate), which the full match would
    p0 = np.array([0.45, 0.2, 0.35])
    assert int(np.argmax(full.blend(p0, x))) == 2 and int(np.argmax(one.blend(p0, x))) == 0
    assert full.candidates_of(p0) is None
    assert LibraryConfig.from_dict({k: v for k, v in LibraryConfig().to_dict().items()
                                    if k != "candidates"}).candidates == 0


def test_a_partial_spectrum_is_matched_over_the_part_it_covers() -> None:
    from ramanedge.grid import pad_outside

    ref = peaks(150, 300, 900, 1200)  # strong bands on both sides of 600
    lib = SpectralLibrary.build(ref[None], np.array([0]), 1,
                                LibraryConfig(reach=0, step=1, candidates=0, bin_width=1,
                                              power=1.0))
    part = pad_outside(ref, 600, P)  # an instrument that sees only points 600 on
    span = (600, P)
    plain = lib.similarity(part)[0]
    windowed = lib.similarity(part, span=span)[0]
    rows = lib.spectra  # the stored rows
    q = high_pass(part, 25)
    want = float(q @ rows[0]) / float(np.linalg.norm(rows[0, 600:]))
    assert np.isclose(windowed, want, atol=1e-5)
    assert plain < 0.8 < windowed  # the missing bands no longer count against the match
    # a spectrum covering >= window_below of the grid takes the plain path
    assert lib.similarity(part, span=(10, P))[0] == lib.similarity(part)[0]
    off = SpectralLibrary(lib.spectra, lib.y, 1, replace(lib.config, window_norm=False))
    assert off.similarity(part, span=span)[0] == plain
    with pytest.raises(ModelError, match="window_below must be a number in"):
        LibraryConfig(window_below=0.0)


def test_a_coarser_match_sums_bins_and_moves_whole_bins() -> None:
    X = np.stack([peaks(300, 520, 901), peaks(100, 700, 1391) + 0.5])
    cfg = LibraryConfig(bin_width=3, reach=9, step=3, power=1.0, lag_penalty=0.0)
    V = match_view(X, cfg)
    hp = high_pass(X, 25).astype(np.float64)
    want = hp.reshape(2, P // 3, 3).sum(axis=2)
    assert V.shape == (2, P // 3)
    assert np.allclose(V, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    assert np.array_equal(match_view(X, LibraryConfig(bin_width=1, reach=30, step=3, power=1.0)),
                          high_pass(X, 25))  # bin 1: the grid
    # a grid that does not divide: the last bin is padded with zeros
    hp_odd = high_pass(X[:, :1390], 25).astype(np.float64)
    bins = np.concatenate([hp_odd, np.zeros((2, 2))], axis=1).reshape(2, 348, 4).sum(axis=2)
    odd = match_view(X[:, :1390], LibraryConfig(bin_width=4, reach=8, step=4, power=1.0))
    assert np.allclose(odd, bins / np.linalg.norm(bins, axis=1, keepdims=True), atol=1e-6)
    # lags move whole bins: a copy moved by 6 grid points (2 bins) is found, and the single
    # spectrum and batch paths agree; the library holds P / 3 points and fits the grid
    lib = SpectralLibrary.build(X, np.array([0, 1]), 2, cfg)
    assert lib.n_points == P // 3 and lib.fits(P) and not lib.fits(P + 3)
    moved = np.roll(X[0], 6)
    s = lib.similarity(moved)
    assert s[0] > 0.99 > s[1]
    assert lib.similarity(np.roll(X[0], 12))[0] < 0.9  # 4 bins: beyond a reach of 3 bins
    assert np.allclose(lib.similarity_batch(moved[None])[0], s, atol=1e-5, rtol=0)
    assert lib.similarity(moved, span=(0, 600))[0] > 0.5  # the window path reads bins
    assert LibraryConfig.from_dict({k: v for k, v in cfg.to_dict().items()
                                    if k != "bin_width"}).bin_width == 1
    assert LibraryConfig.from_dict(cfg.to_dict()) == cfg
    # the grid length is exact, although 1390 points would fill the same 464 bins
    for cut in (1389, 1390):
        with pytest.raises(ModelError, match=f"spectrum of {cut} points for a library of 1392"):
            lib.similarity(X[0, :cut])
        with pytest.raises(ModelError, match="for a library of 1392 points"):
            lib.similarity_batch(X[:, :cut])
    assert not lib.fits(1390)
    with pytest.raises(ModelError, match="cannot match spectra of 1380 grid points"):
        SpectralLibrary(lib.spectra, lib.y, 2, cfg, grid_points=1380)
    # a grid that does not fill its last bin: a span over all of it is not partial
    short = SpectralLibrary.build(X[:, :1390], np.array([0, 1]), 2,
                                  LibraryConfig(bin_width=4, reach=8, step=4,
                                                window_below=1.0))
    assert short.grid_points == 1390 and short.n_points == 348
    assert np.array_equal(short.similarity(X[0, :1390], span=(0, 1390)),
                          short.similarity(X[0, :1390]))


@pytest.mark.parametrize("kwargs, match", [
    ({"reach": 30, "step": 4}, "reach must be a multiple of its step"),
    ({"weight": 1.5}, "weight must be a number in \\[0, 1\\]"),
    ({"temperature": 0}, "temperature must be a number > 0"),
    ({"step": 0}, "step must be a whole number >= 1"),
    ({"reach": -3}, "reach must be a whole number >= 0"),
    ({"half_width": 2.5}, "half_width must be a whole number"),
    ({"candidates": -1}, "candidates must be a whole number >= 0"),
    ({"bin_width": 0}, "bin_width must be a whole number >= 1"),
    ({"bin_width": 2, "reach": 30, "step": 3}, "must be multiples of bin_width"),
    ({"lag_penalty": -0.1}, "lag_penalty must be a number in \\[0, 1\\]"),
    ({"lag_penalty": float("nan")}, "lag_penalty must be a number in"),
    ({"lag_penalty": True}, "lag_penalty must be a number in"),
])
def test_library_config_refuses_bad_values(kwargs, match) -> None:
    with pytest.raises(ModelError, match=match):
        LibraryConfig(**kwargs)


def test_library_refuses_unusable_arrays() -> None:
    cfg = LibraryConfig()
    good = np.ones((2, P), np.float32)
    with pytest.raises(ModelError, match="class ids must be one integer in 0..2"):
        SpectralLibrary(good, np.array([0, 3]), 3, cfg)
    with pytest.raises(ModelError, match="class ids"):
        SpectralLibrary(good, np.array([0.0, 1.0]), 3, cfg)
    with pytest.raises(ModelError, match="NaN or infinite"):
        SpectralLibrary(np.full((2, P), np.nan, np.float32), np.array([0, 1]), 3, cfg)
    with pytest.raises(ModelError, match="float \\(M, points\\)"):
        SpectralLibrary(np.ones(P, np.float32), np.array([0]), 3, cfg)
    with pytest.raises(ModelError, match="library section lacks temperature"):
        LibraryConfig.from_dict({"half_width": 25, "reach": 30, "step": 3, "weight": 0.3})


# ------------------------------------------------------------------ the artifact and the rover


def _export(model, data, out, **config):
    """``model`` exported on ``data``'s split to ``out`` with ``QuantizeConfig(**config)``."""
    from quantize.export import QuantizeConfig, export_artifact, select_calibration

    Xtr, ytr = data.part("train")
    Xva, yva = data.part("val")
    Xte, yte = data.part("test")
    export_artifact(model, labels=list(data.labels), model_config=model.ramanedge_config,
                    calib_X=Xtr[select_calibration(ytr, 100, seed=0)], val_X=Xva,
                    test_X=Xte, test_y=yte, val_y=yva, train_X=Xtr, train_y=ytr,
                    out_dir=out, training_meta={"dataset": "synthetic", "run": "tests"},
                    config=QuantizeConfig(**config))
    return out


@pytest.fixture(scope="module")
def library_artifact(tmp_path_factory, synthetic_data, tiny_keras_model):
    """``tiny_keras_model`` exported with the spectral library (and exemplars)."""
    return _export(tiny_keras_model, synthetic_data,
                   tmp_path_factory.mktemp("lib") / "tiny-lib", exemplars_per_class=5,
                   library=LibraryConfig())


def test_export_writes_the_library_the_rover_blends_and_sets_calibrated_on_it(
        library_artifact, synthetic_data) -> None:
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.conformal import calibrate_sets
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.manifest import LIBRARY_FILE

    art = load_artifact(library_artifact)
    sec = art.manifest.data["library"]
    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    # the library holds the training and the validation spectra (QuantizeConfig's default)
    assert sec["file"] == LIBRARY_FILE and LIBRARY_FILE in art.manifest.files
    assert sec["rows"] == len(ytr) + len(yva) and sec["parts"] == ["train", "val"]
    assert LibraryConfig.from_dict(sec) == LibraryConfig()
    with np.load(art.library_file, allow_pickle=False) as z:
        assert z["spectra"].dtype == np.float16
        assert z["spectra"].shape == (len(ytr) + len(yva), P // 4)
        assert np.array_equal(np.sort(z["y"]), np.sort(np.concatenate([ytr, yva])))

    clf = Classifier(art, make_interpreter(art.model_path))
    net = Classifier(art, clf.interpreter, library=False)
    assert clf.library is not None and net.library is None
    # the answer is the network's probabilities blended with the library's similarity
    K = len(art.labels)
    lib = SpectralLibrary.build(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]), K,
                                LibraryConfig())
    want = lib.blend_batch(net.predict_proba_batch(Xva), Xva)
    got = clf.predict_proba_batch(Xva)
    assert np.allclose(got, want, atol=1e-6)
    assert not np.allclose(got, net.predict_proba_batch(Xva), atol=1e-3)
    # the per-spectrum path (classify_grid, predict_proba: the device's) blends alike
    single = np.stack([clf.predict_proba(x) for x in Xva])
    assert np.allclose(single, want, rtol=0, atol=1e-6)
    for x, w_ in zip(Xva, want, strict=True):
        one = clf.classify_grid(x)
        assert one.top[0][0] == art.labels[int(np.argmax(w_))]
        assert abs(one.top[0][1] - w_.max()) < 1e-6
    # a library whose labels are moved by one names the library's class when it weighs 0.9:
    # the blend decides the per-spectrum answer, not only the batch one
    moved = SpectralLibrary.build(Xtr, (ytr + 1) % K, K, LibraryConfig(weight=0.9))
    liar = Classifier(art, clf.interpreter, library=moved)
    names = [liar.classify_grid(x).label for x in Xva]
    assert np.mean([n == art.labels[(c + 1) % K] for n, c in zip(names, yva, strict=True)]) \
        > 0.9
    assert Classifier.from_dir(library_artifact, use_head_store=False).library is not None
    # a raw spectrum covering part of the grid: classify_xy hands the covered span on
    from ramanedge.grid import DEFAULT_GRID, covered_span

    axis = DEFAULT_GRID.axis()
    x_raw, y_raw = axis[400:], Xva[0][400:]  # an instrument that starts at 600 cm-1
    grid, frac = clf.preprocess_covered(x_raw, y_raw)
    assert frac < 0.95
    span = covered_span(x_raw, DEFAULT_GRID)
    p_net = net.predict_proba(grid)
    want_xy = clf.library.blend(p_net, grid, span)
    got_xy = clf.classify_xy(x_raw, y_raw)
    assert got_xy.top[0][0] == art.labels[int(np.argmax(want_xy))]
    assert abs(got_xy.top[0][1] - want_xy.max()) < 1e-6
    assert not np.allclose(clf.library.similarity(grid, None, span),  # the span counts
                           clf.library.similarity(grid), atol=1e-4)
    # the prediction sets were calibrated on the blended answer, not the network's, each
    # validation spectrum answered by the training spectra's library (never by itself)
    own = SpectralLibrary.build(Xtr, ytr, K, LibraryConfig())
    cal = own.blend_batch(net.predict_proba_batch(Xva), Xva)
    rule = calibrate_sets(cal, yva, level=art.conformal["level"])
    assert np.isclose(art.conformal["threshold"], rule["threshold"], atol=1e-6)
    assert np.isclose(art.manifest.data["metrics"]["library"]["val_top1"],
                      np.mean(cal.argmax(1) == yva))
    assert np.mean(want.argmax(1) == yva) == 1.0  # what a self-match would have calibrated on
    # a classifier made for the base head again shares the loaded library
    assert clf.with_head(None).library is clf.library


def test_a_head_retrained_on_the_rover_answers_alone(library_artifact, synthetic_data,
                                                     tmp_path) -> None:
    from edge_runtime.artifact import HeadWeights, load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter

    art = load_artifact(library_artifact)
    clf = Classifier(art, make_interpreter(art.model_path))
    head = HeadWeights(art.head.W, art.head.b, art.labels, version="h1")
    retrained = clf.with_head(head)
    assert retrained.library is None
    X, _ = synthetic_data.part("test")
    F = retrained.features_batch(X)
    assert np.allclose(retrained.predict_proba_batch(X), head.probs(F), atol=1e-6)
    assert np.allclose(retrained.predict_proba(X[0]), head.probs(F[:1])[0], atol=1e-6)
    # back to the base head: the library again (the loaded one); turned off: it stays off
    assert retrained.with_head(None).library is not None
    assert clf.with_head(None, library=False).with_head(None).library is None


def test_manifest_refuses_a_bad_library_section(library_artifact, tmp_path) -> None:
    from ramanedge.manifest import MANIFEST_NAME, read_manifest, write_manifest

    for change, match in ((lambda s: s.update(temperature=-1), "temperature must be"),
                          (lambda s: s.update(file="other.npz"), "library.file"),
                          (lambda s: s.pop("reach"), "lacks reach"),
                          (lambda s: s.update(rows=0), "library.rows")):
        d = tmp_path / f"a{len(list(tmp_path.iterdir()))}"
        shutil.copytree(library_artifact, d)
        data = json.loads((d / MANIFEST_NAME).read_text())
        data.pop("manifest_sha256")
        change(data["library"])
        with pytest.raises(ManifestError, match=match):
            write_manifest(d, data)
    read_manifest(library_artifact)  # the original stays valid


def test_a_library_file_that_does_not_fit_is_refused_in_one_line(library_artifact,
                                                                 tmp_path) -> None:
    import io

    from edge_runtime.artifact import load_artifact
    from ramanedge.manifest import MANIFEST_NAME, write_manifest

    d = tmp_path / "a"
    shutil.copytree(library_artifact, d)
    buf = io.BytesIO()
    np.savez(buf, spectra=np.ones((3, 100), np.float16), y=np.zeros(3, np.int32))
    (d / "library.npz").write_bytes(buf.getvalue())
    data = json.loads((d / MANIFEST_NAME).read_text())
    data.pop("manifest_sha256")
    write_manifest(d, data)  # re-hash: the file is "valid" but does not fit the grid
    with pytest.raises(ModelError, match="'spectra' must be \\(M, 348\\)"):
        load_artifact(d).load_library()


def test_a_library_that_does_not_fit_the_model_is_refused(library_artifact) -> None:
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter

    art = load_artifact(library_artifact)
    it = make_interpreter(art.model_path)
    wrong = SpectralLibrary(np.ones((2, P // 4), np.float32), np.array([0, 1]), 2,
                            LibraryConfig())
    with pytest.raises(ModelError, match="spectral library of 2 minerals x 348 points \\(bins "
                                         "of 4\\) for a model of 4 minerals"):
        Classifier(art, it, library=wrong)


def test_max_prob_rule_and_sets_follow_the_answer_with_and_without_the_library(
        tmp_path, synthetic_data, tiny_keras_model) -> None:
    """Exported without exemplars (the max_prob unknown rule): the rule and the sets are
    calibrated on the blended answer; asked for the network alone, the classifier redoes
    both for it from the calibration spectra."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.conformal import calibrate_sets
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.ood import calibrate_unknown
    d = synthetic_data
    Xtr, ytr = d.part("train")
    Xva, yva = d.part("val")
    art = load_artifact(_export(tiny_keras_model, d, tmp_path / "mp",
                                library=LibraryConfig(weight=0.6)))
    assert art.unknown["method"] == "max_prob"
    assert art.manifest.data["library"]["rows"] == len(ytr) + len(yva)
    clf = Classifier(art, make_interpreter(art.model_path))
    net = Classifier(art, clf.interpreter, library=False)
    alone = net.predict_proba_batch(Xva)
    # the validation spectra as the rover would answer them without themselves in its library
    blended = SpectralLibrary.build(Xtr, ytr, len(art.labels),
                                    LibraryConfig(weight=0.6)).blend_batch(alone, Xva)
    tpr = art.unknown["target_tpr"]
    assert np.isclose(art.unknown["threshold"],
                      calibrate_unknown(blended, target_tpr=tpr)["threshold"], atol=1e-6)
    assert not np.isclose(art.unknown["threshold"],
                          calibrate_unknown(alone, target_tpr=tpr)["threshold"], atol=1e-4)
    # the network alone: both redone for it (the calibration spectra are the validation ones)
    assert np.isclose(net.unknown_rule["threshold"],
                      calibrate_unknown(alone, target_tpr=tpr)["threshold"], atol=1e-5)
    level = art.conformal["level"]
    assert np.isclose(net.conformal_rule["threshold"],
                      calibrate_sets(alone, yva, level=level)["threshold"], atol=1e-5)
    assert np.isclose(clf.conformal_rule["threshold"],
                      calibrate_sets(blended, yva, level=level)["threshold"], atol=1e-6)


def test_the_cli_exports_the_library_unless_told_not_to(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    import quantize.export as export
    from quantize.cli import quantize as quantize_cmd
    from ramanedge.errors import DataError

    seen = []

    def fake(run_dir, out, *, config, **_kw):
        seen.append((config.library, config.library_with_validation))
        raise DataError("stop here")

    monkeypatch.setattr(export, "quantize_run", fake)
    for extra in ([], ["--no-library"], ["--library-spectra", "train"],
                  ["--lag-penalty", "0"]):
        CliRunner().invoke(quantize_cmd, [str(tmp_path), "--out", str(tmp_path / "a"), *extra])
    assert seen == [(LibraryConfig(), True), (None, True), (LibraryConfig(), False),
                    (replace(LibraryConfig(), lag_penalty=0.0), True)]
    bad = CliRunner().invoke(quantize_cmd, [str(tmp_path), "--out", str(tmp_path / "a"),
                                            "--library-spectra", "test"])
    assert bad.exit_code == 2 and "'train+val', 'train'" in bad.output
    for extra, message in ((["--lag-penalty", "nan"], "not a finite number"),
                           (["--lag-penalty", "-1"], "0<=x<=1"),
                           (["--lag-penalty", "0.1", "--no-library"], "drop --no-library")):
        bad = CliRunner().invoke(quantize_cmd, [str(tmp_path), "--out", str(tmp_path / "a"),
                                                *extra])
        assert bad.exit_code == 2 and message in bad.output, bad.output
    assert len(seen) == 4  # nothing exported for a bad value


def test_export_without_the_training_split_says_what_the_library_needs(
        synthetic_data, tiny_keras_model, tmp_path) -> None:
    from quantize.export import QuantizeConfig, export_artifact
    from ramanedge.errors import DataError

    d = synthetic_data
    Xva, yva = d.part("val")
    Xte, yte = d.part("test")
    with pytest.raises(DataError, match="spectral library .* needs the training split"):
        export_artifact(tiny_keras_model, labels=list(d.labels),
                        model_config=tiny_keras_model.ramanedge_config, calib_X=Xva,
                        val_X=Xva, test_X=Xte, test_y=yte, out_dir=tmp_path / "x",
                        config=QuantizeConfig(library=LibraryConfig()))
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ real spectra


@pytest.mark.realdata
def test_the_lagged_match_names_shifted_real_spectra_the_plain_match_cannot(
        shared_data_root) -> None:
    from ramanedge.grid import shift_spectra
    from tests.conftest import REPO
    from tests.test_ssl import REAL_MINERALS
    from trainer.run import DataConfig, load_data, make_or_read_split

    data = DataConfig(root=str(shared_data_root), minerals=REAL_MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    ds = load_data(data)
    split = make_or_read_split(ds, data)
    tr, te = split == "train", split != "train"
    n = len(ds.labels)
    lagged = SpectralLibrary.build(ds.X[tr], ds.y[tr], n, LibraryConfig())
    plain = SpectralLibrary.build(ds.X[tr], ds.y[tr], n, LibraryConfig(reach=0))
    for d in (0, 21, -24):  # held-out specimens, unshifted and moved by a calibration error
        X = shift_spectra(ds.X[te], d)
        hit_lag = float(np.mean(lagged.similarity_batch(X).argmax(1) == ds.y[te]))
        hit_plain = float(np.mean(plain.similarity_batch(X).argmax(1) == ds.y[te]))
        assert hit_lag >= 0.8, (d, hit_lag)
        if d:
            assert hit_plain < hit_lag - 0.2, (d, hit_plain, hit_lag)


def test_the_power_is_taken_before_the_match_and_lets_weak_bands_count() -> None:
    """``LibraryConfig.power``: both sides are clipped at 0 and raised to it before the
    high-pass (``match_view`` of ``X`` equals the power-1 view of ``powered(X)``); manifests
    without the key read power 1; a power outside (0, 1] is refused. A library spectrum
    that shares the query's weak bands (class 1) gains on one that shares only its strongest
    band (class 0) as the power falls."""
    X = np.stack([peaks(300, 520, 901) - 0.05, peaks(100, 700, 1391) + 0.5])
    for p in (0.5, 0.25):
        cfg = LibraryConfig(power=p)
        assert np.array_equal(match_view(X, cfg), match_view(powered(X, p),
                                                             replace(cfg, power=1.0)))
    np.testing.assert_allclose(powered(np.array([0.0625, -1.0, 1.0]), 0.25), [0.5, 0.0, 1.0])
    assert powered(X, 1.0) is X  # power 1: not clipped, not cast
    assert LibraryConfig.from_dict({k: v for k, v in LibraryConfig().to_dict().items()
                                    if k != "power"}).power == 1.0
    for bad in (0.0, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ModelError, match="library power must be a number in"):
            LibraryConfig(power=bad)
    query = peaks(400) + 0.1 * peaks(700, 900, 1100)
    lib_y = np.array([0, 1])
    rows = np.stack([peaks(400), 0.1 * peaks(700, 900, 1100) + peaks(200)])
    ratio = {}
    for p in (1.0, 0.25):
        lib = SpectralLibrary.build(rows, lib_y, 2, LibraryConfig(power=p, candidates=0))
        s = lib.similarity(query)
        ratio[p] = s[1] - s[0]
    assert ratio[0.25] > ratio[1.0] + 0.2


def test_training_only_library_changes_the_answer_not_the_calibration(
        library_artifact, synthetic_data, tiny_keras_model, tmp_path) -> None:
    """``library_with_validation=False`` (``--library-spectra train``) stores the training
    spectra alone; the sets and the unknown rule are calibrated on the same validation
    answers either way (each from the library of the training spectra), so only the
    rover's answer changes."""
    from edge_runtime.artifact import load_artifact

    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    out = _export(tiny_keras_model, synthetic_data, tmp_path / "train-only",
                  exemplars_per_class=5, library=LibraryConfig(),
                  library_with_validation=False)
    alone, full = load_artifact(out), load_artifact(library_artifact)
    assert alone.manifest.data["library"]["rows"] == len(ytr)
    assert alone.manifest.data["library"]["parts"] == ["train"]
    assert full.manifest.data["library"]["rows"] == len(ytr) + len(yva)
    assert alone.conformal["threshold"] == full.conformal["threshold"]
    assert alone.unknown == full.unknown
    m_alone, m_full = (a.manifest.data["metrics"]["library"] for a in (alone, full))
    assert m_alone["val_top1"] == m_full["val_top1"]


def test_validation_answers_never_come_from_a_library_holding_them(library_artifact,
                                                                   synthetic_data) -> None:
    """The default export's library holds the validation spectra: the benchmarks answer
    validation with the training spectra's library (what quantize calibrated with), and
    the screens refuse it; an export of the training spectra alone is used as it is."""
    import click

    from benchmarks.common import library_holds_validation, screen_library, validation_answerer
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.conformal import calibrate_sets
    from edge_runtime.interpreter import make_interpreter

    art = load_artifact(library_artifact)
    assert library_holds_validation(art)
    clf = Classifier(art, make_interpreter(art.model_path))
    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    val = validation_answerer(clf, Xtr, ytr)
    assert val.library is not clf.library and len(val.library.y) == len(ytr)
    P = val.predict_proba_batch(Xva)
    rule = calibrate_sets(P, yva, level=art.conformal["level"])
    assert np.isclose(rule["threshold"], art.conformal["threshold"], atol=1e-6)
    with pytest.raises(click.UsageError, match="holds the validation spectra"):
        screen_library(art)
    plain = Classifier(art, clf.interpreter, library=False)
    assert validation_answerer(plain, Xtr, ytr) is plain
