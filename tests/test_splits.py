"""Splits: grouping by specimen, stratification, reproducibility, the split CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ramanedge.dataset import Dataset, build_dataset
from ramanedge.errors import DataError
from ramanedge.grid import GRID
from ramanedge.splits import (
    complete_split,
    make_split,
    read_split_csv,
    split_counts,
    split_sha256,
    write_split_csv,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/rruff"
CACHE = REPO / ".cache" / "ramanedge"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"RRUFF data not found at {DATA}")


def _toy(groups_per_label: list[int], spectra_per_group: int = 2) -> Dataset:
    y, sids, paths = [], [], []
    for lab, g in enumerate(groups_per_label):
        for k in range(g):
            for s in range(spectra_per_group):
                y.append(lab)
                sids.append(f"R{lab:02d}{k:04d}")
                paths.append(f"raw/m{lab}_g{k}_s{s}.txt")
    n = len(y)
    return Dataset(
        X=np.zeros((n, GRID.size), np.float32), y=np.array(y, np.int64),
        labels=[f"m{i}" for i in range(len(groups_per_label))], paths=paths,
        sample_ids=sids, lasers=np.full(n, 532.0), name="toy", root="/toy",
    )


def _no_group_leak(ds: Dataset, split: np.ndarray) -> None:
    sid = np.array(ds.sample_ids)
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert not set(sid[split == a]) & set(sid[split == b]), (a, b)


def test_grouped_rule_for_few_groups():
    ds = _toy([1, 2, 3, 4, 20])
    split = make_split(ds, "grouped", seed=0)
    _no_group_leak(ds, split)
    per = {lab: Counter(split[ds.y == lab].tolist()) for lab in range(5)}
    assert per[0] == {"train": 2}  # one specimen: train only
    assert per[1] == {"train": 2, "test": 2}  # 2 groups: 1 test, 1 train
    assert per[2] == {"train": 2, "val": 2, "test": 2}
    assert per[3] == {"train": 4, "val": 2, "test": 2}
    assert per[4]["test"] == 2 * 3 and per[4]["val"] == 2 * 3 and per[4]["train"] == 2 * 14


def test_reproducible_and_seed_dependent():
    ds = _toy([10] * 6)
    a, b = make_split(ds, seed=3), make_split(ds, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make_split(ds, seed=4))
    assert split_sha256(ds, a) == split_sha256(ds, b) != split_sha256(ds, make_split(ds, seed=4))


def test_random_split_is_per_spectrum():
    ds = _toy([10] * 5, spectra_per_group=2)
    split = make_split(ds, "random", seed=0)
    for lab in range(5):
        c = Counter(split[ds.y == lab].tolist())
        assert c["test"] == 3 and c["val"] >= 1 and c["train"] >= 10
    with pytest.raises(DataError, match="unknown split kind"):
        make_split(ds, "by-laser")


def test_split_csv_roundtrip_and_errors(tmp_path):
    ds = _toy([3, 5])
    split = make_split(ds)
    f = tmp_path / "split.csv"
    sha = write_split_csv(f, ds, split)
    assert f.read_text().splitlines()[0] == "path,split"
    back = read_split_csv(f, ds)
    assert np.array_equal(back, split) and sha == split_sha256(ds, back)
    # order of rows does not matter for the hash
    lines = f.read_text().splitlines()
    f2 = tmp_path / "shuffled.csv"
    f2.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    assert split_sha256(ds, read_split_csv(f2, ds)) == sha

    def bad(text: str, match: str, **kw: bool) -> None:
        p = tmp_path / "bad.csv"
        p.write_text(text)
        with pytest.raises(DataError, match=match) as e:
            read_split_csv(p, ds, **kw)
        assert "\n" not in str(e.value)

    body = "\n".join(lines[1:])
    bad("file,part\n" + body, "lacks column")
    bad(lines[0] + "\nraw/unknown.txt,train\n" + body, "not in the data set")
    bad(lines[0] + "\n" + body.replace(",test", ",holdout", 1), "train, val or test")
    bad(lines[0] + "\n" + "\n".join(lines[1:-1]), "does not assign 1", require_all=True)
    bad(lines[0] + "\n", "assigns no spectrum")
    bad(lines[0] + "\n" + body + "\n" + lines[1], "appears twice")
    bad("", "lacks column")
    with pytest.raises(DataError, match="not found"):
        read_split_csv(tmp_path / "nope.csv", ds)
    partial = tmp_path / "partial.csv"
    partial.write_text(lines[0] + "\n" + lines[1] + "\n")
    got = read_split_csv(partial, ds)
    assert (got != "").sum() == 1


def test_subset_split_without_val_is_completed_grouped_and_seeded(tmp_path):
    """Issue 13.2: a published split names a subset and has no val. The unnamed spectra stay
    unused, val is carved from train by specimen, and the CSV/hash cover what is used."""
    ds = _toy([6, 6, 3, 1], spectra_per_group=2)
    full = make_split(ds, seed=3)
    named = np.flatnonzero(ds.y != 2)  # the file leaves mineral m2 out ...
    sub = np.full(len(ds), "", dtype="<U5")
    sub[named] = np.where(full[named] == "test", "test", "train")  # ... and has no val
    f = tmp_path / "paper.csv"
    write_split_csv(f, ds, sub)
    assert len(f.read_text().splitlines()) == 1 + named.size  # only what it names
    split, notes = complete_split(ds, read_split_csv(f, ds), seed=7)
    assert np.all(split[ds.y == 2] == "")
    assert np.array_equal(split == "test", sub == "test")  # test untouched
    was_train = sub == "train"
    assert set(split[was_train].tolist()) == {"train", "val"}
    _no_group_leak(ds, np.where(split == "", "train", split))
    for lab in (0, 1):  # 5 train specimens each -> 1 val specimen (15 %, at least one)
        vals = {sid for sid, v, y in zip(ds.sample_ids, split, ds.y, strict=True)
                if v == "val" and y == lab}
        assert len(vals) == 1
    assert "val" not in set(split[ds.y == 3].tolist())  # one specimen: stays train
    assert len(notes) == 2
    assert notes[0] == (f"the split file assigns {named.size} of the data set's {len(ds)} "
                        f"spectra; the other {len(ds) - named.size} are not used")
    assert "no val part: carved 4 of its" in notes[1] and "seed 7" in notes[1]
    again, _ = complete_split(ds, read_split_csv(f, ds), seed=7)
    assert np.array_equal(again, split)  # seeded
    # a file with a val part is kept as it is; a full split's hash is unchanged by the rule
    same, notes2 = complete_split(ds, full)
    assert np.array_equal(same, full) and notes2 == []


@needs_data
@pytest.mark.realdata
def test_grouped_split_on_real_rruff_raw():
    ds = build_dataset(DATA, "rruff-raw", cache_dir=CACHE)
    split = make_split(ds, "grouped", seed=0)
    _no_group_leak(ds, split)
    c = split_counts(split)
    assert sum(c.values()) == len(ds)
    # stratified: every mineral (all have >= 2 specimens here) has train and test spectra
    groups = {lab: len({s for s, y in zip(ds.sample_ids, ds.y, strict=True) if y == lab})
              for lab in range(len(ds.labels))}
    for lab in range(len(ds.labels)):
        parts = set(split[ds.y == lab].tolist())
        assert "train" in parts
        if groups[lab] >= 2:
            assert "test" in parts
        if groups[lab] >= 3:
            assert "val" in parts
    # overall fractions near the target (more test than 15 % because of the >= 1 rule)
    assert 0.15 <= c["test"] / len(ds) <= 0.25
    assert 0.10 <= c["val"] / len(ds) <= 0.22
    assert np.array_equal(split, make_split(ds, "grouped", seed=0))
    # the random split does leak specimens, which is why grouped is the default
    rnd = make_split(ds, "random", seed=0)
    sid = np.array(ds.sample_ids)
    assert set(sid[rnd == "train"]) & set(sid[rnd == "test"])


def test_unknown_halves_split_by_mineral_with_a_fixed_seed() -> None:
    from ramanedge.splits import unknown_halves

    names = [f"m{i:03d}" for i in range(101)]
    h = unknown_halves(names[::-1] + names[:5])  # order and repeats do not matter
    assert h == unknown_halves(names)
    assert not set(h["negatives"]) & set(h["evaluation"])
    assert sorted(h["negatives"] + h["evaluation"]) == names
    assert len(h["negatives"]) == 50 and h["negatives"] == sorted(h["negatives"])
    assert unknown_halves(names, seed=1) != h
    with pytest.raises(DataError, match="at least 2 unknown minerals"):
        unknown_halves(["only"])


def test_unknown_evaluation_names_the_half_and_its_specimens() -> None:
    """The evaluation half by name (as unknown_halves gives it) and exactly the specimens
    of those minerals; known minerals and the negatives half contribute no id."""
    from ramanedge.splits import unknown_evaluation, unknown_halves

    held = _toy([1, 2, 3, 1, 2, 1])
    held.sample_ids[-1] = ""  # a spectrum without a specimen id contributes no id
    names, ids = unknown_evaluation(held, known=["m0"])
    assert "" not in ids
    assert names == unknown_halves(held.labels, known=["m0"])["evaluation"]
    assert "m0" not in names
    want = {sid for sid, y in zip(held.sample_ids, held.y, strict=True)
            if held.labels[y] in names}
    assert ids == want and ids
    neg = set(unknown_halves(held.labels, known=["m0"])["negatives"])
    assert not {sid for sid, y in zip(held.sample_ids, held.y, strict=True)
                if held.labels[y] in neg} & ids
