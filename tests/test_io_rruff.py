"""The RRUFF reader against every quirk listed in ../shared/data/rruff/SOURCE.md, on real files.

Plain-file folders (excellent_oriented_subset, excellent_unoriented/raw) are read directly.
Members of the two .tar.xz archives are extracted ONCE per session (one sequential pass over
each archive) into a pytest temp folder by the ``members`` fixture.
"""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ramanedge.errors import CoverageError, SpectrumError
from ramanedge.grid import GRID, preprocess, shift_spectra
from ramanedge.io.rruff import (
    decode_text,
    filename_fields,
    kind_from_name,
    normalise_label,
    parse_laser,
    parse_rruff,
    read_rruff,
    strip_rruff_id,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/rruff"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"RRUFF data not found at {DATA}")
pytestmark = [pytest.mark.realdata, needs_data]

ORI = DATA / "excellent_oriented_subset"
UNO = DATA / "excellent_unoriented"
TRONA = UNO / "raw/Trona__R050228__Raman__780__0__unoriented__Raman_Data_RAW__28227.txt"
STELLERITE = UNO / "raw/Stellerite__R060483__Raman__780__0__unoriented__Raman_Data_RAW__38439.txt"
WAKA = UNO / "raw/Wakabayashilite__R060747__Raman__785__0__unoriented__Raman_Data_RAW__14584.txt"
FERRIERITE = UNO / "raw/FerrieriteK__R110200__Raman__780__0__unoriented__Raman_Data_RAW__35999.txt"
ALBITE_ORI = ORI / "raw/Albite__R040068-4__Raman__514__0-000____Raman_Data_RAW__247e13820667a07e92c12825b484.txt"  # noqa: E501

LR = "LR-Raman/raw/"
M = {
    "ws": LR + "Abellaite__R250095__Broad_Scan__532__0__unoriented__Raman_Data_Raw__2a857b1ebb14d8850cb6b675a6df.txt",  # noqa: E501
    "noend": LR + "Afmite__R130082__Broad_Scan__514__0__unoriented__Raman_Data_Raw__5c7d20d1140ce5206105a7a41602.txt",  # noqa: E501
    "mixed": LR + "Leybovite-K__R250035__Broad_Scan__532__0__unoriented__Raman_Data_Raw__9fe644aacf3aea275d8532a5a972.txt",  # noqa: E501
    "cp1252": LR + "Suenoite__R250132__Broad_Scan____0__unoriented__Raman_Data_Raw__f3e99ce74a55f04b71543560908d.txt",  # noqa: E501
    "heflikite": LR + "Heflikite__R250030__Broad_Scan__532__0__unoriented__Raman_Data_Raw__681f2b18cc0a5af300e1a671f267.txt",  # noqa: E501
    "dacostaite": LR + "Dacostaite__R250010__Broad_Scan__633__0__unoriented__Raman_Data_Raw__05da6e0a321e9a50ab6eb2a7053b.txt",  # noqa: E501
    "clino515": LR + "Clino-ferro-suenoite__R250076__Broad_Scan__515__0__unoriented__Raman_Data_Raw__7ddd3c1d5fd1f28fe928079a460d.txt",  # noqa: E501
    "ohonly": LR + "Nannoniite__R250126__Broad_Scan__532__0__unoriented__Raman_Data_Raw__716add22f0cb591f448447336355.txt",  # noqa: E501
    "endlow": LR + "Bustamite__R040014__Broad_Scan__785__0__unoriented__Raman_Data_Raw__7d78f5e3dd5bad4f6e15d4d2d785.txt",  # noqa: E501
    "albite_raw": LR + "Albite__R050402__Broad_Scan__532__0__unoriented__Raman_Data_Raw__1dfa590b4eb120d226f45fc46fe0.txt",  # noqa: E501
    "albite_proc": "LR-Raman/processed/Albite__R050402__Broad_Scan__532__0__unoriented__Raman_Data_Processed__6836f0ef788d889e28ad13ed6677.txt",  # noqa: E501
    "saturated": LR + "Amesite__R070116__Broad_Scan__532__0__unoriented__Raman_Data_Raw__137d59480a89f20a11aaf1ffa1ff.txt",  # noqa: E501
    "aspirin": LR + "Aspirin__D200001__Broad_Scan__532__0__unoriented__Raman_Data_Raw__0c4240b571d949b33aa8e9aa7567.txt",  # noqa: E501
    "laser_nm": LR + "Goldschmidtite__R190009__Broad_Scan__458-5nm__0__unoriented__Raman_Data_Raw__eaf8230063d993d763fc6e05ad6a.txt",  # noqa: E501
    "laser_dash": LR + "Pararaisaite__R250110__Broad_Scan__514-5__0__unoriented__Raman_Data_Raw__61f9de069b9a1d6ad1b6146f728f.txt",  # noqa: E501
    "laser_unknown": LR + "Aspedamite__R130014__Broad_Scan____0__unoriented__Raman_Data_Raw__42affd96251f0fe4cf4aa2de6b3c.txt",  # noqa: E501
    "whelanite": "excellent_unoriented/processed/Whelanite__R050323__Raman__514__0__unoriented__Raman_Data_Processed__10774.txt",  # noqa: E501
    "whelanite_a": "excellent_unoriented/processed/Whelanite__R050323_a__Raman__514__0__unoriented__Raman_Data_Processed__10774.txt",  # noqa: E501
}
ARCHIVES = ("LR-Raman/LR-Raman.tar.xz", "excellent_unoriented/processed.tar.xz")


@pytest.fixture(scope="session")
def manifest() -> dict[str, dict[str, str]]:
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="session")
def members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Extract the needed archive members once (one streaming pass per archive)."""
    out = tmp_path_factory.mktemp("rruff_members")
    wanted = set(M.values())
    for arch in ARCHIVES:
        todo = {w for w in wanted if w.startswith(arch.split("/")[0] + "/")}
        with tarfile.open(DATA / arch, mode="r|xz") as tf:
            for m in tf:
                if not todo:
                    break  # members are sorted: stop decompressing once all are found
                if m.name in todo:
                    todo.discard(m.name)
                    dest = out / m.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    f = tf.extractfile(m)
                    assert f is not None
                    dest.write_bytes(f.read())
    missing = [w for w in wanted if not (out / w).is_file()]
    assert not missing, f"members not found in the archives: {missing}"
    return out


def _read(members: Path, key: str):
    p = members / M[key]
    return parse_rruff(p.read_bytes(), M[key])


def _check_against_manifest(s, row):
    assert len(s) == int(row["n_points"]) or row["x_strictly_increasing"] == "0"
    assert s.x[0] == pytest.approx(float(row["x_min"]))
    assert s.x[-1] == pytest.approx(float(row["x_max"]))
    assert s.y.min() == pytest.approx(float(row["y_min"]))
    assert s.y.max() == pytest.approx(float(row["y_max"]))
    assert s.mineral == row["mineral"]
    assert s.rruff_id == row["rruff_id"]
    assert s.kind == row["kind"]


# --- quirk 1: header split on the first '=' only, new-format keys ------------------------


def test_q01_equals_inside_header_value():
    s = read_rruff(STELLERITE)
    assert s.header["MEASURED CHEMISTRY"].startswith("(Ca_3.93_Na_0.07_)_Σ=4_")
    assert s.header["NAMES"] == "Stellerite"
    a = read_rruff(ALBITE_ORI)
    assert a.header["FILETYPE"] == "Raman RAW"
    assert a.header["RAMAN WAVELENGTH"] == "514"
    assert "PIN_ID" in a.header


# --- quirk 2: separators and E-notation ---------------------------------------------------


def test_q02_comma_and_e_notation(manifest):
    raw = TRONA.read_bytes()
    assert b"0.0000000E+00" in raw
    s = read_rruff(TRONA)
    _check_against_manifest(s, manifest["excellent_unoriented/raw/" + TRONA.name])
    assert s.y[0] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("key", ["ws", "mixed"])
def test_q02_whitespace_and_mixed_separators(members, manifest, key):
    text = (members / M[key]).read_text(encoding="utf-8", errors="replace")
    rows = [ln for ln in text.splitlines() if ln[:1].isdigit()]
    assert manifest[M[key]]["separator"] == key
    if key == "ws":
        assert not any("," in r for r in rows) and any("\t" in r for r in rows)
    s = _read(members, key)
    _check_against_manifest(s, manifest[M[key]])


# --- quirk 3: ##END= optional, blank lines after it ---------------------------------------


def test_q03_end_marker_followed_by_blank_lines():
    text = TRONA.read_bytes().decode()
    assert "##END=" in text and text.rstrip("\r\n") != text
    s = read_rruff(TRONA)
    assert s.header.get("END") == ""


@pytest.mark.slow
def test_q03_missing_end_marker(members, manifest):
    data = (members / M["noend"]).read_bytes()
    assert b"##END" not in data
    s = _read(members, "noend")
    _check_against_manifest(s, manifest[M["noend"]])


# --- quirk 4: CRLF and LF -----------------------------------------------------------------


def test_q04_crlf_and_lf():
    crlf = TRONA.read_bytes()
    lf = ALBITE_ORI.read_bytes()
    assert b"\r\n" in crlf and b"\r" not in lf
    for s in (read_rruff(TRONA), read_rruff(ALBITE_ORI)):
        assert all("\r" not in v for v in s.header.values())
        assert s.mineral in ("Trona", "Albite")


# --- quirk 5: cp1252 fallback --------------------------------------------------------------


@pytest.mark.slow
def test_q05_cp1252_file(members, manifest):
    data = (members / M["cp1252"]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert decode_text(data)[1] == "cp1252"
    s = _read(members, "cp1252")
    assert s.encoding == "cp1252"
    # the header text survives (this file's dash was already mojibake before cp1252 saving)
    assert s.header["LOCALITY"].startswith("Scortico")
    assert s.header["LOCALITY"].endswith("Ravazzone, Apuan Alps, Tuscany, Italy")
    assert s.mineral == "Suenoite" and "\ufffd" not in s.header["NAMES"]
    _check_against_manifest(s, manifest[M["cp1252"]])


# --- quirk 6: repeated header blocks, multi-line values -------------------------------------


def test_q06_repeated_header_and_continuation_lines(manifest):
    text = ALBITE_ORI.read_text(encoding="utf-8")
    assert text.count("##CELL PARAMETERS=") == 2
    first_cell = text.split("##CELL PARAMETERS=")[1].splitlines()[0].strip()
    s = read_rruff(ALBITE_ORI)
    assert s.header["CELL PARAMETERS"] == first_cell  # first copy wins
    assert "(1)" not in s.header["CELL PARAMETERS"]  # the 2nd copy has '8.135(1)'
    # this file lost its ##ORIENTATION= line: the continuation joins the previous key
    assert s.header["PIN_ID"].startswith("M00277 Fiducial mark perpendicular")
    # the repeated block's continuation follows a blank line: not glued onto the laser
    assert s.header["RAMAN WAVELENGTH"] == "514" and s.laser_nm == 514.0
    assert s.n_unparsed == 1
    row = manifest["excellent_oriented_subset/raw/" + ALBITE_ORI.name]
    assert len(s) == int(row["n_points"])
    assert s.rruff_id == "R040068"


def test_q06_all_oriented_files_parse(manifest):
    files = sorted(ORI.glob("*/*.txt"))
    assert len(files) == 384
    repeated = 0
    for p in files:
        s = read_rruff(p)
        row = manifest[p.relative_to(DATA).as_posix()]
        assert len(s) == int(row["n_points"]), p.name
        assert s.kind == row["kind"] and s.laser_nm == 514.0
        repeated += p.read_text(encoding="utf-8").count("##CELL PARAMETERS=") > 1
    assert repeated == 36


# --- quirk 7: junk lines inside the data ---------------------------------------------------


@pytest.mark.slow
def test_q07_unparseable_lines_are_skipped(members, manifest):
    s = _read(members, "cp1252")
    row = manifest[M["cp1252"]]
    assert s.n_unparsed == int(row["unparsed_lines"]) == 59
    assert len(s) == int(row["n_points"])


# --- quirk 8: non-monotonic axes ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("key", ["heflikite", "dacostaite", "clino515"])
def test_q08_non_monotonic_axis_is_sorted(members, manifest, key):
    row = manifest[M[key]]
    assert row["x_strictly_increasing"] == "0"
    text = (members / M[key]).read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]
    s = _read(members, key)
    assert np.all(np.diff(s.x) > 0)
    assert len(s) <= len(rows)
    assert s.x[0] == pytest.approx(float(row["x_min"]))
    assert s.x[-1] == pytest.approx(float(row["x_max"]))
    out = preprocess(s.x, s.y)
    assert np.isfinite(out).all() and out.max() == pytest.approx(1.0)


# --- quirk 9: partial coverage ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("key", ["ohonly", "endlow"])
def test_q09_partial_range_raises_coverage_error(members, key):
    s = _read(members, key)  # reading is fine ...
    with pytest.raises(CoverageError, match="200-1591"):  # ... the grid refuses it
        preprocess(s.x, s.y)


def test_q09_oriented_files_do_not_cover_the_grid():
    s = read_rruff(ALBITE_ORI)
    assert s.x[-1] < 1591
    with pytest.raises(CoverageError):
        preprocess(s.x, s.y)


# --- quirk 10: LR processed = cropped raw; oriented processed = corrected --------------------


@pytest.mark.slow
def test_q10_lr_processed_is_a_cropped_copy_of_raw(members):
    raw, proc = _read(members, "albite_raw"), _read(members, "albite_proc")
    assert raw.kind == "raw" and proc.kind == "processed"
    idx = np.searchsorted(raw.x, proc.x)
    assert np.array_equal(raw.x[idx], proc.x)
    assert np.array_equal(raw.y[idx], proc.y)  # not baseline-corrected at all
    assert len(proc) < len(raw)


def test_q10_oriented_processed_is_baseline_corrected():
    rp = ALBITE_ORI
    pp = ORI / "processed" / rp.name.replace("Raman_Data_RAW", "Raman_Data_Processed")
    candidates = sorted((ORI / "processed").glob("Albite__R040068-4__Raman__514__0-000____*.txt"))
    pp = candidates[0] if not pp.exists() else pp
    raw, proc = read_rruff(rp), read_rruff(pp)
    assert np.array_equal(raw.x, proc.x)
    assert not np.allclose(raw.y, proc.y)
    assert proc.y.min() == pytest.approx(0.0, abs=1e-6) and raw.y.min() > 1000


# --- quirk 11: negative and saturated counts kept ------------------------------------------


@pytest.mark.slow
def test_q11_negative_and_saturated_counts(members, manifest):
    s = _read(members, "saturated")
    row = manifest[M["saturated"]]
    assert s.y.min() == pytest.approx(float(row["y_min"])) and s.y.min() < 0
    assert s.y.max() == pytest.approx(float(row["y_max"])) and s.y.max() > 65535
    out = preprocess(s.x, s.y)
    assert out.max() == pytest.approx(1.0) and np.isfinite(out).all()


def test_q11_negative_counts_plain_file():
    s = read_rruff(WAKA)
    assert s.y.min() < 0
    assert np.isfinite(s.y).all()


# --- quirk 12: labels from ##NAMES, normalised only for merging -------------------------------


def test_q12_label_is_names_not_filename():
    s = read_rruff(FERRIERITE)
    assert filename_fields(str(FERRIERITE))[0] == "FerrieriteK"
    assert s.mineral == s.header["NAMES"] != "FerrieriteK"
    assert normalise_label(s.mineral) == normalise_label("FerrieriteK")
    assert normalise_label("Adamsite-(Y)") == normalise_label("AdamsiteY") == "adamsitey"
    assert normalise_label("Roselite-beta") == normalise_label("roselitebeta")
    assert normalise_label("Albite") != normalise_label("Anorthite")


# --- quirk 13: ids, suffixes, non-minerals ----------------------------------------------------


def test_q13_id_suffixes_are_stripped():
    s = read_rruff(ALBITE_ORI)
    assert filename_fields(str(ALBITE_ORI))[1] == "R040068-4"
    assert s.rruff_id == "R040068"
    assert strip_rruff_id("R050441_a") == "R050441"
    assert strip_rruff_id("X050012.3") == "X050012"
    assert strip_rruff_id("R040063-4") == "R040063"
    assert strip_rruff_id("XD120008") == "XD120008"
    assert strip_rruff_id("altered") is None


def test_q13_filename_id_fallback(tmp_path):
    text = TRONA.read_bytes().replace(b"##RRUFFID=R050228\n", b"")
    assert b"RRUFFID" not in text
    s = parse_rruff(text, "excellent_unoriented/raw/" + TRONA.name)
    assert s.rruff_id == "R050228"


@pytest.mark.slow
def test_q13_non_mineral_ids(members):
    s = _read(members, "aspirin")
    assert s.rruff_id == "XD200001"
    assert filename_fields(M["aspirin"])[1] == "D200001"


# --- quirk 14: byte-identical duplicates share the sample id ----------------------------------


@pytest.mark.slow
def test_q14_exact_duplicates_are_one_sample(members, manifest):
    a, b = _read(members, "whelanite"), _read(members, "whelanite_a")
    assert (members / M["whelanite"]).read_bytes() == (members / M["whelanite_a"]).read_bytes()
    assert manifest[M["whelanite"]]["sha1_duplicates"] == "1"
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    # same group key -> a grouped split can never put the copies on both sides
    assert a.rruff_id == b.rruff_id == "R050323"


# --- quirk 15: laser wavelength --------------------------------------------------------------


def test_q15_parse_laser_values():
    assert parse_laser("532") == 532.0
    assert parse_laser("532 ") == 532.0
    assert parse_laser("514.5") == 514.5
    assert parse_laser("458.5 nm") == 458.5
    assert parse_laser("514-5") == 514.5
    assert parse_laser("458-5nm") == 458.5
    assert parse_laser("") is None and parse_laser("unknown") is None and parse_laser(None) is None


@pytest.mark.slow
def test_q15_laser_from_header_and_file_name(members, manifest):
    assert _read(members, "cp1252").laser_nm == 532.0  # blank in the file name, header wins
    assert _read(members, "laser_nm").laser_nm == 458.5  # header '458.5 nm'
    assert _read(members, "laser_dash").laser_nm == 514.5
    assert _read(members, "laser_unknown").laser_nm is None  # blank name + 'unknown' header
    # without the header line the file name is used
    data = (members / M["laser_dash"]).read_bytes()
    lines = [ln for ln in data.split(b"\n") if not ln.startswith(b"##RAMAN WAVELENGTH")]
    s = parse_rruff(b"\n".join(lines), M["laser_dash"])
    assert "RAMAN WAVELENGTH" not in s.header and s.laser_nm == 514.5
    s = parse_rruff(TRONA.read_bytes(), str(TRONA))
    assert s.laser_nm == 780.0  # 2019 file: no RAMAN WAVELENGTH header, file name only


# --- quirk 16: calibration offsets (LR broad scans a few cm-1 off) ---------------------------


def test_q16_calibration_offset_and_shift_augmentation():
    from ramanedge.dataset import build_dataset

    cache = Path(__file__).resolve().parents[1] / ".cache" / "ramanedge"
    ds = build_dataset(DATA, "rruff-raw", cache_dir=cache)
    q = ds.labels.index("Quartz")
    X = ds.X[ds.y == q]
    assert len(X) >= 8
    window = (GRID >= 400) & (GRID <= 520)
    peaks = GRID[window][np.argmax(X[:, window], axis=1)]
    # the LR quartz main band sits at 463-472 cm-1 instead of 464-465 (SOURCE.md quirk 16)
    assert np.all((peaks >= 460) & (peaks <= 475)), peaks
    assert peaks.max() - peaks.min() >= 2
    shifted = shift_spectra(X, 5)
    peaks5 = GRID[window][np.argmax(shifted[:, window], axis=1)]
    np.testing.assert_array_equal(peaks5, peaks + 5)


# --- kind detection ---------------------------------------------------------------------------


def test_kind_from_header_name_and_folder():
    assert kind_from_name("x/Foo__R1__Broad_Scan__532__0__u__Raman_Data_Raw__ab.txt") == "raw"
    assert kind_from_name("Foo__R1__Raman__532__0__u__Raman_Data_RAW__1.txt") == "raw"
    assert kind_from_name("Foo__R1__Raman__532__0__u__Raman_Data_Processed__1.txt") == "processed"
    assert kind_from_name("data/processed/foo.txt") == "processed"
    assert kind_from_name("data/raw/foo.txt") == "raw"
    assert kind_from_name("foo.txt") is None
    # the ##FILETYPE header wins over a misleading file name
    data = ALBITE_ORI.read_bytes()
    assert parse_rruff(data, "processed/whatever.txt").kind == "raw"
    # 2019 files have no FILETYPE: the file name decides
    assert "FILETYPE" not in read_rruff(TRONA).header and read_rruff(TRONA).kind == "raw"


def test_no_data_rows_is_a_spectrum_error():
    head = b"".join(ln + b"\n" for ln in TRONA.read_bytes().splitlines() if ln.startswith(b"##"))
    with pytest.raises(SpectrumError, match="no data rows"):
        parse_rruff(head, "header_only.txt")
    with pytest.raises(SpectrumError, match="empty"):
        parse_rruff(b"  \r\n", "empty.txt")
