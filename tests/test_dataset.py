"""Data sets: rruff-raw on the real data (checked against manifest.csv), the cache, held-out
minerals, and synthetic RRUFF-format folders/zips for the edge cases."""

from __future__ import annotations

import csv
import os
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ramanedge.dataset as dsmod
from ramanedge.dataset import build_dataset, load_heldout, remove_baseline
from ramanedge.errors import DataError
from ramanedge.grid import GRID

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/rruff"
CACHE = REPO / ".cache" / "ramanedge"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"RRUFF data not found at {DATA}")


# --- synthetic RRUFF-format files -------------------------------------------------------------


def _rruff_text(name: str, rid: str, laser: str, kind: str, x0: float = 100.0,
                x1: float = 2000.0, peak: float = 500.0, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    x = np.arange(x0, x1, 1.9)
    y = 200 + 0.05 * x + 1000 * np.exp(-0.5 * ((x - peak) / 6) ** 2) + rng.normal(0, 2, x.size)
    head = (f"##NAMES={name}\n##RRUFFID={rid}\n##FILETYPE=Raman {kind}\n"
            f"##RAMAN WAVELENGTH={laser}\n")
    return head + "".join(f"{a:.4f}, {b:.4f}\n" for a, b in zip(x, y, strict=True)) + "##END=\n"


def _fname(name: str, rid: str, laser: str, kind: str, n: int) -> str:
    k = "Raw" if kind == "RAW" else "Processed"
    return f"{name}__{rid}__Broad_Scan__{laser}__0__unoriented__Raman_Data_{k}__{n:04x}.txt"


def _make_root(root: Path) -> dict[str, int]:
    """A small LR-like folder: 3 minerals with 4/3/1 samples x 2 lasers, plus bad files."""
    raw = root / "LR-Raman" / "raw"
    raw.mkdir(parents=True)
    n = 0
    plan = {"Alphaite": 4, "Betaite-(Y)": 3, "Gammaite": 1}
    for m_i, (mineral, n_samples) in enumerate(plan.items()):
        for s in range(n_samples):
            rid = f"R{m_i}{s:05d}"
            for laser in ("532", "785"):
                n += 1
                (raw / _fname(mineral, rid, laser, "RAW", n)).write_text(
                    _rruff_text(mineral, rid, laser, "RAW", peak=400 + 300 * m_i, seed=n))
    # a spelling variant of Betaite-(Y) (quirk 12) -> merged under the majority spelling
    n += 1
    (raw / _fname("BetaiteY", "R100000", "532", "RAW", n)).write_text(
        _rruff_text("BetaiteY", "R100000", "532", "RAW", peak=700, seed=n))
    # non-mineral, partial coverage, processed, junk
    n += 1
    (raw / _fname("Aspirin", "D200001", "532", "RAW", n)).write_text(
        _rruff_text("Aspirin", "XD200001", "532", "RAW", seed=n))
    n += 1
    (raw / _fname("Alphaite", "R000099", "532", "RAW", n)).write_text(
        _rruff_text("Alphaite", "R000099", "532", "RAW", x0=300, seed=n))
    proc = root / "LR-Raman" / "processed"
    proc.mkdir()
    n += 1
    (proc / _fname("Alphaite", "R000000", "532", "Processed", n)).write_text(
        _rruff_text("Alphaite", "R000000", "532", "Processed", seed=n))
    n += 1
    (raw / _fname("Alphaite", "R000098", "532", "RAW", n)).write_text("##NAMES=Alphaite\nnothing")
    return {"Alphaite": 8, "Betaite-(Y)": 7, "Gammaite": 2}


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _make_root(root)
    return root


def test_synthetic_build_filters_and_counts(synth, tmp_path):
    msgs: list[str] = []
    ds = build_dataset(synth, min_spectra=1, cache_dir=tmp_path / "c", progress=msgs.append)
    assert ds.labels == ["Alphaite", "Betaite-(Y)", "Gammaite"]
    assert ds.counts() == {"Alphaite": 8, "Betaite-(Y)": 7, "Gammaite": 2}
    assert ds.X.shape == (17, 1392) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_allclose(ds.X.max(axis=1), 1.0, rtol=1e-6)
    assert ds.skipped["non_mineral"] == 1
    assert ds.skipped["no_coverage"] == 1
    assert ds.skipped["unreadable"] == 1
    assert ds.skipped["other_set_or_kind"] == 1  # the processed file
    assert any("nothing" in r or "no data rows" in r for _, r in ds.problems)
    assert all(p.startswith("LR-Raman/raw/") for p in ds.paths)
    assert set(np.unique(ds.lasers)) == {532.0, 785.0}
    # each class's peak lands where the generator put it
    for lab, peak in (("Alphaite", 400), ("Betaite-(Y)", 700), ("Gammaite", 1000)):
        rows = ds.X[ds.y == ds.labels.index(lab)]
        assert np.all(np.abs(GRID[np.argmax(rows, axis=1)] - peak) <= 2)
    assert any("parsing" in m for m in msgs)


def test_min_spectra_and_minerals_filters(synth, tmp_path):
    c = tmp_path / "c"
    ds = build_dataset(synth, min_spectra=7, cache_dir=c)
    assert ds.labels == ["Alphaite", "Betaite-(Y)"]
    assert ds.dropped_minerals == {"Gammaite": 2}
    assert ds.skipped["too_few_spectra"] == 2
    one = build_dataset(synth, min_spectra=1, minerals=["betaite (y)"], cache_dir=c)
    assert one.labels == ["Betaite-(Y)"] and len(one) == 7
    with pytest.raises(DataError, match="not in rruff-raw"):
        build_dataset(synth, minerals=["Quartz"], min_spectra=1, cache_dir=c)
    with pytest.raises(DataError, match="fewer than min_spectra"):
        build_dataset(synth, minerals=["Gammaite"], min_spectra=3, cache_dir=c)
    with pytest.raises(DataError, match=">= 50 spectra"):
        build_dataset(synth, min_spectra=50, cache_dir=c)
    with pytest.raises(DataError, match="min_spectra"):
        build_dataset(synth, min_spectra=0, cache_dir=c)


def test_heldout_is_the_complement(synth, tmp_path):
    c = tmp_path / "c"
    ds = build_dataset(synth, min_spectra=7, cache_dir=c)
    held = load_heldout(synth, min_spectra=7, cache_dir=c)
    assert held.labels == ["Gammaite"] and len(held) == 2
    assert not set(held.paths) & set(ds.paths)
    with pytest.raises(DataError, match="nothing is held out"):
        load_heldout(synth, min_spectra=1, cache_dir=c)


def test_cache_is_reused_and_invalidated(synth, tmp_path, monkeypatch):
    c = tmp_path / "c"
    ds1 = build_dataset(synth, min_spectra=1, cache_dir=c)
    assert len(list(c.glob("broadscan-raw-*.npz"))) == 1 and len(list(c.glob("*.json"))) == 1

    def boom(*a, **k):
        raise AssertionError("parsed again although the cache is valid")

    monkeypatch.setattr(dsmod, "_parse_pool", boom)
    ds2 = build_dataset(synth, min_spectra=3, cache_dir=c)  # other options: same cache
    keep = np.array(["Gammaite" not in p for p in ds1.paths])
    assert ds2.paths == [p for p, k in zip(ds1.paths, keep, strict=True) if k]
    np.testing.assert_array_equal(ds2.X, ds1.X[keep])
    monkeypatch.undo()
    # touching a source file changes the key -> parsed again
    f = next((synth / "LR-Raman" / "raw").glob("Gammaite*"))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    msgs: list[str] = []
    build_dataset(synth, min_spectra=1, cache_dir=c, progress=msgs.append)
    assert any(m.startswith("parsing") for m in msgs)
    # the stale entry of the same data set and root was pruned
    assert len(list(c.glob("broadscan-raw-*.npz"))) == 1 and len(list(c.glob("*.json"))) == 1
    # a corrupt cache file is ignored, not fatal
    for p in c.glob("*.npz"):
        p.write_bytes(b"garbage")
    ds3 = build_dataset(synth, min_spectra=1, cache_dir=c)
    np.testing.assert_array_equal(ds3.X, ds1.X)


def test_build_from_zip_with_members_at_root(synth, tmp_path):
    z = tmp_path / "LR-Raman.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((synth / "LR-Raman" / "raw").glob("*.txt")):
            zf.write(p, arcname=p.name)
    ds = build_dataset(z, min_spectra=1, cache_dir=tmp_path / "c")
    assert len(ds) == 17
    assert all(p.startswith("LR-Raman.zip/") for p in ds.paths)


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_dataset(tmp_path / "missing", cache_dir=tmp_path / "c")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(DataError, match="no spectrum files"):
        build_dataset(empty, cache_dir=tmp_path / "c")
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(b"\xfd7zXZ\x00 not really")
    with pytest.raises(DataError, match="no spectrum files.*broken.tar.xz"):
        build_dataset(broken, cache_dir=tmp_path / "c")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="no spectrum files"):
        build_dataset(tmp_path / "emptydir", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="unknown data set"):
        build_dataset(tmp_path, "rruff-nope", cache_dir=tmp_path / "c")


def test_subset_keeps_labels(synth, tmp_path):
    ds = build_dataset(synth, min_spectra=1, cache_dir=tmp_path / "c")
    sub = ds.subset(ds.y == 1)
    assert sub.labels == ds.labels and set(sub.y.tolist()) == {1} and len(sub) == 7
    idx = ds.subset(np.array([0, 2]))
    assert idx.paths == [ds.paths[0], ds.paths[2]]
    with pytest.raises(DataError):
        ds.subset(np.ones(3, dtype=bool))


def test_remove_baseline_recovers_peaks():
    t = np.linspace(0, 1, 1392)
    peaks = 0.8 * np.exp(-0.5 * ((t - 0.3) / 0.004) ** 2) + np.exp(-0.5 * ((t - 0.7) / 0.006) ** 2)
    background = 3 + 2 * t - 1.5 * t**2 + 0.7 * t**3
    out = remove_baseline(background + peaks)
    assert np.abs(out - peaks).max() < 0.08
    assert abs(np.median(out)) < 0.02


# --- real data ---------------------------------------------------------------------------------


def _expected_rruff_raw(min_spectra: int = 8) -> dict[str, dict[str, str]]:
    """rruff-raw recomputed independently from manifest.csv."""
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["set"] == "LR-Raman" and r["kind"] == "raw"]
    ok = [r for r in rows
          if not r["rruff_id"].startswith(("D", "XD")) and not r["filename_id"].startswith("D")
          and float(r["x_min"]) <= 200 and float(r["x_max"]) >= 1591]
    c = Counter(r["mineral"] for r in ok)
    return {r["path"]: r for r in ok if c[r["mineral"]] >= min_spectra}


@pytest.fixture(scope="module")
def rruff_raw():
    t0 = time.perf_counter()
    ds = build_dataset(DATA, "rruff-raw", cache_dir=CACHE)
    print(f"\nrruff-raw build: {time.perf_counter() - t0:.2f} s (cache {CACHE})")
    return ds


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_rruff_raw_matches_manifest(rruff_raw):
    ds = rruff_raw
    exp = _expected_rruff_raw(8)
    assert set(ds.paths) == set(exp)
    assert len(ds) == len(exp)
    assert ds.labels == sorted({r["mineral"] for r in exp.values()})
    for i, p in enumerate(ds.paths):
        r = exp[p]
        assert ds.labels[ds.y[i]] == r["mineral"]
        assert ds.sample_ids[i] == r["rruff_id"]
        assert ds.lasers[i] == float(r["laser_nm"])
    assert ds.X.shape == (len(exp), 1392) and ds.X.dtype == np.float32
    assert np.isfinite(ds.X).all()
    np.testing.assert_allclose(ds.X.max(axis=1), 1.0, rtol=1e-6)
    assert min(ds.counts().values()) >= 8
    assert ds.skipped["non_mineral"] == 1
    assert ds.skipped["no_coverage"] == 6565 - 6290
    # identical rows (quirk 14-like: one spectrum filed under two lasers, e.g. Fluorite
    # R060548 532 = 780) always belong to one specimen, so a grouped split keeps them together
    groups: dict[bytes, set[str]] = {}
    for row, sid in zip(ds.X, ds.sample_ids, strict=True):
        groups.setdefault(row.tobytes(), set()).add(sid)
    assert all(len(sids) == 1 for sids in groups.values())
    assert len(groups) >= len(ds) - 5


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_rruff_raw_warm_load_reads_no_archive(rruff_raw, monkeypatch):
    """A warm build comes from the cache: no archive is opened or parsed again (how long
    that takes is a benchmark figure, not asserted here)."""
    import ramanedge.dataset as dsmod

    def no_reading(*a, **k):
        raise AssertionError("a warm build read the archives again")

    monkeypatch.setattr(dsmod, "iter_spectrum_files", no_reading)
    monkeypatch.setattr(dsmod, "parse_rruff", no_reading)
    ds = build_dataset(DATA, "rruff-raw", cache_dir=CACHE)
    monkeypatch.undo()
    np.testing.assert_array_equal(ds.X, rruff_raw.X)
    everything = build_dataset(DATA, "rruff-raw", min_spectra=1, cache_dir=CACHE)
    held = load_heldout(DATA, "rruff-raw", cache_dir=CACHE)
    assert len(everything) == len(ds) + len(held)
    assert not set(held.labels) & set(ds.labels)
    assert set(held.paths) | set(ds.paths) == set(everything.paths)


@needs_data
@pytest.mark.realdata
@pytest.mark.slow
def test_rruff_clean_same_spectra_baseline_removed(rruff_raw):
    clean = build_dataset(DATA, "rruff-clean", cache_dir=CACHE)
    assert clean.paths == rruff_raw.paths and clean.labels == rruff_raw.labels
    assert np.array_equal(clean.y, rruff_raw.y)
    np.testing.assert_allclose(clean.X.max(axis=1), 1.0, rtol=1e-6)
    # the fluorescence background is gone: typical level falls far below the raw one
    assert np.median(np.median(clean.X, axis=1)) < 0.5 * np.median(np.median(rruff_raw.X, axis=1))
