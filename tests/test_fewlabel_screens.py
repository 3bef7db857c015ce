"""``benchmarks.fewlabel_screens``: the few-label screens judge the shipped namers, and the
end-to-end table pairs its arms from the artifacts' manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.fewlabel_screens import cli, names_right


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_names_right_counts_only_the_spectra_a_round_named() -> None:
    given = np.array([0, -1, -1, -1, 1, -1])
    named = np.array([0, 2, -1, 1, 1, 0])  # spectrum 2 left unnamed, 0 and 4 were given
    truth = np.array([9, 2, 5, 0, 9, 0])  # the given ones' truth must not count
    assert names_right(named, given, truth) == (3, pytest.approx(2 / 3))
    assert names_right(given, given, truth) == (0, None)


def _one_error_line(output: str) -> str:
    """The one line a refused command printed (click's usage lines aside), no traceback."""
    lines = [x for x in output.strip().splitlines()
             if x.startswith(("Error:", "error:"))]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_screen_options_are_refused_in_one_line(tmp_path: Path) -> None:
    r = _invoke("names", "--propagate", "0,1.5", "--data", tmp_path / "nowhere")
    assert r.exit_code == 2
    assert "--propagate takes comma-separated numbers in [0, 1]" in _one_error_line(r.output)
    r = _invoke("names", "--coverages", "0,0.6")
    assert r.exit_code == 2 and "a coverage of 0 names nothing" in _one_error_line(r.output)
    r = _invoke("names", "--round", "second", "--coverages", "0.6,0.7")
    assert r.exit_code == 2 and "one --coverages" in r.output
    r = _invoke("names", "--graph", "library")  # the first round has no network graph
    assert r.exit_code == 2 and "--graph applies to --round second" in r.output
    r = _invoke("names", "--round", "second", "--graph", "features,nearest")
    assert r.exit_code == 2 and "(features, library, both, joint)" in r.output
    r = _invoke("e2e", "--arm", "a", str(tmp_path / "none-*"))
    assert r.exit_code == 1 and "no artifact folder matches" in _one_error_line(r.output)
    r = _invoke("e2e", "--arm", "a", "x", "--arm", "a", "y")
    assert r.exit_code == 2 and "each --arm NAME once" in r.output


def _fake_pair(root: Path, arm: str, ss: int, seed: int, top1: float, net: float,
               split_hash: str = "h") -> None:
    """A run folder's config.json and an artifact's manifest.json, only the fields read."""
    run = root / f"{arm}-ss{ss}-s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "data": {"split_seed": ss}, "train": {"seed": seed},
        "ssl": {"labelled_fraction": 0.1}, "split_sha256": split_hash}))
    art = root / f"{arm}-ss{ss}-s{seed}-art"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({
        "training": {"run": run.name, "split_sha256": "h"},
        "metrics": {"gate": {"passed": True}, "head": {"agreement": 1.0, "drop_points": 0.0,
                                                       "top1": net},
                    "float": {"top1": net}, "library": {"test_top1": top1, "val_top1": 0.7},
                    "n_test": 100}}))


def test_e2e_pairs_each_arm_with_the_first_on_split_seed_and_seed(tmp_path: Path) -> None:
    for ss, seed, base, recipe in ((0, 0, 0.60, 0.70), (0, 1, 0.62, 0.64), (1, 0, 0.50, 0.50)):
        _fake_pair(tmp_path, "base", ss, seed, base, base - 0.02)
        _fake_pair(tmp_path, "recipe", ss, seed, recipe, recipe - 0.01)
    out = tmp_path / "rows.jsonl"
    r = _invoke("e2e", "--arm", "base", str(tmp_path / "base-*-art"), "--arm", "recipe",
                str(tmp_path / "recipe-*-art"), "--out", out)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["recipe"], x["split_seed"], x["seed"]) for x in rows][:3] == [
        ("base", 0, 0), ("base", 0, 1), ("base", 1, 0)]
    line = next(x for x in r.output.splitlines() if x.startswith("| recipe |"))
    # answer vs answer: +10, +2, 0 points; vs the base network (2 points lower): +12, +4, +2
    assert "+4.00 ± 5.29 (2 of 3)" in line and "+6.00 ± 5.29 (3 of 3)" in line
    _fake_pair(tmp_path / "other", "recipe", 0, 0, 0.7, 0.7, split_hash="another")
    r = _invoke("e2e", "--arm", "x", str(tmp_path / "other" / "*-art"))
    assert r.exit_code == 1 and "exported from another split" in _one_error_line(r.output)
    # an artifact exported without a library: refused in one line, not a KeyError
    _fake_pair(tmp_path / "nolib", "plain", 0, 0, 0.7, 0.7)
    man = tmp_path / "nolib" / "plain-ss0-s0-art" / "manifest.json"
    m = json.loads(man.read_text())
    del m["metrics"]["library"]
    man.write_text(json.dumps(m))
    r = _invoke("e2e", "--arm", "x", str(tmp_path / "nolib" / "*-art"))
    assert r.exit_code == 1 and "holds no spectral library" in _one_error_line(r.output)


@pytest.mark.realdata
def test_first_round_screen_scores_the_shipped_library_names(shared_data_root: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "names.jsonl"
    r = _invoke("names", "--data", shared_data_root, "--split-seeds", "0", "--seeds", "0",
                "--coverages", "0.6", "--propagate", "0,0.5", "--out", out)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["propagate"] for x in rows] == [0.0, 0.5]
    n = rows[0]["n_unlabelled"]
    assert all(x["n_named"] == int(np.floor(0.6 * n + 0.5)) for x in rows)
    # the measured effect (docs/parts/ssl.md): propagation names more of them right
    assert rows[1]["names_right"] > rows[0]["names_right"] > 0.5
    assert "| first | library | 0.6 | 0.5 | " in r.output


@pytest.mark.slow
@pytest.mark.realdata
def test_second_round_screen_calls_the_namer_that_trains(shared_data_root: Path,
                                                         monkeypatch, tmp_path: Path) -> None:
    import trainer.ssl

    calls: list[dict] = []
    namer = trainer.ssl.blend_round_names

    def spy(model, X, given, K, **kw):
        calls.append({"given": given.copy(), **kw})
        return namer(model, X, given, K, **kw)

    monkeypatch.setattr(trainer.ssl, "blend_round_names", spy)
    r = _invoke("names", "--round", "second", "--data", shared_data_root, "--split-seeds", "0",
                "--seeds", "0", "--propagate", "0,0.5", "--schedule", "bench", "--epochs", "1",
                "--out", tmp_path / "names.jsonl")
    assert r.exit_code == 0, r.output
    assert [c["propagate"] for c in calls] == [0.0, 0.5]
    assert all(c["coverage"] == 1.0 and c["groups"] is not None for c in calls)
    # only the given labels reach the namer (not the first round's names, which label 60 %
    # of the rest): -1 on every unlabelled spectrum
    rows = [json.loads(x) for x in (tmp_path / "names.jsonl").read_text().splitlines()]
    given = calls[0]["given"]
    assert all(np.array_equal(c["given"], given) for c in calls)
    assert int((given == -1).sum()) == rows[0]["n_unlabelled"] > 0.7 * len(given)
    assert all(x["n_named"] == x["n_unlabelled"] and 0 < x["first_names_right"] < 1
               for x in rows)
    assert "| second | features | 0.6 | 0.5 | " in r.output
