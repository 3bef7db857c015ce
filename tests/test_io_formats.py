"""User-facing readers (CSV/TXT/.npy, read_spectrum dispatch) and the data sources
(folders, zip archives with members at the root, tar archives) without unpacking to disk."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ramanedge.errors import DataError, SpectrumError
from ramanedge.io import iter_spectrum_files, read_rruff, read_spectrum, source_fingerprint
from ramanedge.io.columns import parse_columns, parse_npy

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/rruff"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"RRUFF data not found at {DATA}")
ORI = DATA / "excellent_oriented_subset"


def _synthetic(n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(150.0, 1700.0, n)
    y = 100 + 900 * np.exp(-0.5 * ((x - 465.0) / 5.0) ** 2)
    return x, y


# --- two-column text -------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [",", "\t", " ", "   ", ";", ", "])
@pytest.mark.parametrize("header", ["", "wavenumber,intensity\n", "# my rover spectrum\n"])
def test_two_column_text_separators_and_header(tmp_path, sep, header):
    x, y = _synthetic()
    body = "".join(f"{a:.6f}{sep}{b:.6e}\n" for a, b in zip(x, y, strict=True))
    p = tmp_path / "s.csv"
    p.write_text(header + body)
    s = read_spectrum(p)
    np.testing.assert_allclose(s.x, x, atol=1e-6)
    np.testing.assert_allclose(s.y, y, rtol=1e-6)
    assert s.mineral is None and s.rruff_id is None and s.path == str(p)


def test_two_column_crlf_txt_extension(tmp_path):
    x, y = _synthetic(50)
    p = tmp_path / "s.txt"
    p.write_bytes("".join(f"{a} {b}\r\n" for a, b in zip(x, y, strict=True)).encode())
    assert len(read_spectrum(p)) == 50


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"1.0\n2.0\n3.0\n", "one numeric column"),
        (b"hello world\nthis is not a spectrum\n", "no numeric rows"),
        (b"100, 1\n200, nan\n300, 3\n", "NaN or infinite"),
        (b"100, 1\n200, inf\n", "NaN or infinite"),
        (b"100, 5\n", "at least 2 points"),
        (b"100, 1\n200\n300, 3\n", "single number"),
    ],
)
def test_two_column_errors(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(SpectrumError, match=match):
        read_spectrum(p)


def test_random_text_with_few_numbers_is_refused():
    text = ("lorem ipsum dolor\n" * 40 + "1 2\n3 4\n").encode()
    with pytest.raises(SpectrumError, match="non-numeric"):
        parse_columns(text, "x.txt")


def test_binary_files_are_refused(tmp_path):
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(SpectrumError, match="PNG"):
        read_spectrum(png)
    blob = tmp_path / "blob.csv"
    blob.write_bytes(b"1,2\n\x00\x01\x02" * 10)
    with pytest.raises(SpectrumError, match="binary"):
        read_spectrum(blob)


def test_missing_file_is_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_spectrum(tmp_path / "nope.csv")


# --- .npy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["N2", "2N"])
def test_npy_layouts(tmp_path, layout):
    x, y = _synthetic()
    arr = np.stack([x, y], axis=1 if layout == "N2" else 0).astype(np.float32)
    p = tmp_path / "s.npy"
    np.save(p, arr)
    s = read_spectrum(p)
    np.testing.assert_allclose(s.x, x.astype(np.float32))
    np.testing.assert_allclose(s.y, y.astype(np.float32))


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.arange(10.0), r"shape \(N, 2\) or \(2, N\)"),
        (np.zeros((3, 4)), r"shape \(N, 2\) or \(2, N\)"),
        (np.array([[1.0, 2.0], [np.nan, 3.0]]), "NaN"),
        (np.array(["a", "b"]), "numeric"),
    ],
)
def test_npy_errors(tmp_path, arr, match):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    with pytest.raises(SpectrumError, match=match):
        read_spectrum(p)


def test_npy_object_arrays_are_not_unpickled(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(SpectrumError):
        parse_npy(buf.getvalue(), "obj.npy")
    p = tmp_path / "fake.npy"
    p.write_text("100, 1\n200, 2\n")
    with pytest.raises(SpectrumError, match="numpy header"):
        read_spectrum(p)


@needs_data
def test_read_spectrum_dispatches_rruff_content_whatever_the_name(tmp_path):
    src = sorted((ORI / "raw").glob("*.txt"))[0]
    p = tmp_path / "renamed.csv"
    p.write_bytes(src.read_bytes())
    s = read_spectrum(p)
    ref = read_rruff(src)
    assert s.mineral == ref.mineral and s.rruff_id == ref.rruff_id
    np.testing.assert_array_equal(s.y, ref.y)


# --- sources ----------------------------------------------------------------------------------


@needs_data
def test_folder_source_is_recursive_and_relative():
    files = list(iter_spectrum_files(ORI))
    assert len(files) == 384
    assert all(f.path.startswith(("raw/", "processed/")) for f in files)
    raw_only = [f.path for f in iter_spectrum_files(ORI / "raw")]
    assert raw_only == sorted(p.name for p in (ORI / "raw").glob("*.txt"))
    assert [f.path for f in files if f.path.startswith("raw/")] == [f"raw/{p}" for p in raw_only]
    picked = list(iter_spectrum_files(ORI, accept=lambda p: "Albite" in p))
    assert picked and all("Albite" in f.path for f in picked)


@needs_data
def test_zip_with_members_at_root_from_real_files(tmp_path):
    """Like the official rruff.info zips: members at the zip root, read without extracting."""
    srcs = sorted((ORI / "raw").glob("*.txt"))[:6] + sorted((ORI / "processed").glob("*.txt"))[:2]
    zpath = tmp_path / "excellent_oriented.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in srcs:
            zf.writestr(p.name, p.read_bytes())
        zf.writestr("readme.md", "not a spectrum")
    before = sorted(q.name for q in tmp_path.iterdir())
    got = {f.path: f.data for f in iter_spectrum_files(zpath)}
    assert sorted(q.name for q in tmp_path.iterdir()) == before  # nothing unpacked
    assert set(got) == {f"excellent_oriented.zip/{p.name}" for p in srcs}
    for p in srcs:
        assert got[f"excellent_oriented.zip/{p.name}"] == p.read_bytes()
    # inside a data folder, the zip's own relative path prefixes its members
    sub = tmp_path / "root"
    sub.mkdir()
    (sub / "sets").mkdir()
    zpath.rename(sub / "sets" / "LR-Raman.zip")
    paths = [f.path for f in iter_spectrum_files(sub)]
    assert paths == [f"sets/LR-Raman.zip/{p.name}" for p in sorted(srcs, key=lambda q: q.name)]


@needs_data
def test_tar_members_keep_their_member_names(tmp_path):
    srcs = sorted((ORI / "raw").glob("*.txt"))[:3]
    tpath = tmp_path / "pack.tar.xz"
    with tarfile.open(tpath, "w:xz") as tf:
        for p in srcs:
            tf.add(p, arcname=f"excellent_oriented_subset/raw/{p.name}")
    got = [f.path for f in iter_spectrum_files(tmp_path)]
    assert got == [f"excellent_oriented_subset/raw/{p.name}" for p in srcs]


def test_bad_archives_are_reported_not_fatal(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    (tmp_path / "broken.tar.xz").write_bytes(b"\xfd7zXZ\x00 truncated")
    x, y = _synthetic(20)
    (tmp_path / "good.txt").write_text("".join(f"{a},{b}\n" for a, b in zip(x, y, strict=True)))
    problems: list[tuple[str, str]] = []
    files = iter_spectrum_files(tmp_path, on_error=lambda p, r: problems.append((p, r)))
    got = [f.path for f in files]
    assert got == ["good.txt"]
    assert {p for p, _ in problems} == {"broken.zip", "broken.tar.xz"}
    assert all(r for _, r in problems)


def test_missing_and_unsupported_roots(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(iter_spectrum_files(tmp_path / "nope"))
    odd = tmp_path / "image.png"
    odd.write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="unsupported"):
        list(iter_spectrum_files(odd))


def test_fingerprint_changes_when_a_source_changes(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("1,2\n3,4\n")
    (tmp_path / ".hidden.txt").write_text("1,2\n")
    (tmp_path / "notes.md").write_text("x")
    fp1 = source_fingerprint(tmp_path)
    assert [r[0] for r in fp1] == ["a.txt"]
    p.write_text("1,2\n3,4\n5,6\n")
    assert source_fingerprint(tmp_path) != fp1


def test_decimal_commas_are_read_as_decimal_points() -> None:
    """A spreadsheet export with decimal commas ("150,37;14,379", or tab-separated) was read
    as x = 150, y = 37 (the decimals taken for the second column); a comma-separated file of
    plain numbers keeps its meaning."""
    from ramanedge.io.columns import parse_columns

    semi = parse_columns("Wellenzahl;Intensität\n150,37;14,379\n151,5;15\n152,75;16,25\n"
                         .encode())
    assert semi.x.tolist() == [150.37, 151.5, 152.75] and semi.y.tolist() == [14.379, 15, 16.25]
    tab = parse_columns(b"150,37\t14,379\n151,5\t15\n")
    assert tab.x.tolist() == [150.37, 151.5] and tab.y.tolist() == [14.379, 15.0]
    plain = parse_columns(b"150,37\n151,38\n152,39\n")  # comma-separated integers
    assert plain.x.tolist() == [150, 151, 152] and plain.y.tolist() == [37, 38, 39]
    spaced = parse_columns(b"150.5, 37.25\n151.5, 38\n")  # decimal points: commas separate
    assert spaced.x.tolist() == [150.5, 151.5] and spaced.y.tolist() == [37.25, 38.0]
    blanks = parse_columns(b"150,37 14,379\n151,5 15,1\n")  # a decimal comma in every field
    assert blanks.x.tolist() == [150.37, 151.5] and blanks.y.tolist() == [14.379, 15.1]
    # files read before decimal commas were known keep their reading
    for text in (b"150 , 37\n151 , 38\n", b"150 ,37\n151 ,38\n", b"150,37 5\n151,38 6\n",
                 b"150, 37\n151, 38\n"):
        s = parse_columns(text)
        assert s.x.tolist() == [150, 151] and s.y.tolist() == [37, 38], text
    assert parse_columns(b"1e3, 5\n2e3, 6\n").x.tolist() == [1000, 2000]
