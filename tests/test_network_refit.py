"""The network refit proxy (``benchmarks.network_refit``, issue 11, rule (N+)): the reduced
split and the verdict."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks.network_refit import reduced_split, report


def test_reduced_split_leaves_one_training_specimen_a_mineral_unused_and_nothing_else() -> None:
    ids = ["a", "a", "b", "c", "d", "d", "e", "v", "t", "u"]
    y = np.array([0, 0, 0, 1, 2, 2, 2, 0, 1, 2])
    split = np.array(["train"] * 7 + ["val", "test", ""])
    run = SimpleNamespace(split=split, dataset=SimpleNamespace(sample_ids=ids, y=y))
    out, aside = reduced_split(run)
    assert np.array_equal(out[7:], split[7:])  # validation, test, unused: as they were
    assert not aside[7:].any() and out[3] == "train"  # class 1 has one training specimen
    assert set(np.flatnonzero(out[:7] == "")) == set(np.flatnonzero(aside))
    for k in (0, 2):
        taken = {ids[i] for i in np.flatnonzero(aside) if y[i] == k}
        assert len(taken) == 1
        (sid,) = taken
        assert all(aside[i] for i in range(7) if ids[i] == sid)  # the whole specimen


def test_report_judges_the_blended_validation_gain_only() -> None:
    def run(val_gain, net_gain=0.05, test_gain=0.05):
        r = {}
        for s in (0, 15, 30):
            r[f"val_{s}"] = {"lib|minus1": 0.8, "lib|full": 0.8 + val_gain,
                             "net|minus1": 0.7, "net|full": 0.7 + net_gain}
            r[f"test_{s}"] = {"lib|minus1": 0.8, "lib|full": 0.8 + test_gain,
                              "net|minus1": 0.7, "net|full": 0.7 + test_gain}
        return r
    _, v = report({f"r{i}": run(0.01) for i in range(5)})
    assert v["worth_building"] and v["higher"] == 5 and abs(v["val_gain_0"] - 1.0) < 1e-9
    # the network alone and the test gains never decide
    _, v = report({f"r{i}": run(-0.002) for i in range(5)})
    assert not v["worth_building"] and v["lower"] == 5
    # 3 of 5 higher is not enough, however large the mean
    _, v = report({f"r{i}": run(0.05 if i < 3 else -0.01) for i in range(5)})
    assert not v["worth_building"] and v["higher"] == 3
    # 4 higher and 1 equal, just above and just below +0.5 points
    _, v = report({f"r{i}": run(0.0063 if i < 4 else 0.0) for i in range(5)})
    assert v["worth_building"] and (v["higher"], v["lower"]) == (4, 0)
    assert abs(v["val_gain_0"] - 0.504) < 1e-9
    _, v = report({f"r{i}": run(0.006 if i < 4 else 0.0) for i in range(5)})
    assert not v["worth_building"]  # +0.48


def test_report_with_missing_splits_is_incomplete_whatever_the_gain() -> None:
    r = {}
    for s in (0, 15, 30):
        for part in ("val", "test"):
            r[f"{part}_{s}"] = {"lib|minus1": 0.8, "lib|full": 0.9,
                                "net|minus1": 0.7, "net|full": 0.8}
    table, v = report({f"r{i}": r for i in range(4)}, expected=5)
    assert not v["complete"] and not v["worth_building"] and table.endswith("incomplete")
    assert report({f"r{i}": r for i in range(5)}, expected=5)[1]["worth_building"]


def test_the_reduced_split_file_trains_on_exactly_the_reduced_split(shared_data_root,
                                                                   tmp_path) -> None:
    """Real RRUFF spectra: the split file ``train_reduced`` writes is read back by the
    trainer as the base split minus the held-aside spectra (no part carved, none moved)."""
    from ramanedge.splits import make_split, write_split_csv
    from trainer.run import DataConfig, load_data, make_or_read_split

    ds = load_data(DataConfig(root=str(shared_data_root)))
    base = np.asarray(make_split(ds, kind="grouped", seed=0))
    run = SimpleNamespace(split=base, dataset=ds)
    out, aside = reduced_split(run)
    n_classes_aside = len(set(np.asarray(ds.y)[aside].tolist()))
    assert 0 < n_classes_aside <= len(ds.labels) and aside.sum() < (base == "train").sum() / 3
    write_split_csv(tmp_path / "s.csv", ds, out)
    read = make_or_read_split(ds, DataConfig(root=str(shared_data_root), split_seed=0,
                                             split_file=str(tmp_path / "s.csv")))
    assert np.array_equal(read, out)
    # every mineral keeps training spectra
    assert set(np.asarray(ds.y)[read == "train"].tolist()) == set(range(len(ds.labels)))


def test_a_bad_base_is_one_line_naming_the_option(tmp_path) -> None:
    from click.testing import CliRunner

    from benchmarks.network_refit import main

    res = CliRunner().invoke(main, ["score", "--base", "nope", "--reduced", str(tmp_path)])
    assert res.exit_code == 2 and "--base 'nope': expected FOLDER:RECIPE" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    res = CliRunner().invoke(main, ["score", "--base", f"{tmp_path}:flight-early-pool",
                                    "--reduced", str(tmp_path)])
    assert res.exit_code == 2 and "no flight-early-pool-grouped<seed> folders" in res.output


def _lib_row(seed: int, top1: float, cov: float) -> dict:
    return {"split": "grouped", "split_seed": seed, "int8_0": top1, "int8_15": top1,
            "int8_30": top1, "net_0": top1 - 0.05, "net_15": top1, "net_30": top1,
            "test_set_coverage": cov, "test_set_size": 4.0, "test_known_flagged": 0.05}


def test_built_report_pairs_by_split_and_ships_only_on_gate_and_coverage() -> None:
    """Rule (R): paired test deltas over the splits both rows hold; "may ship" needs the gate
    on every one of >= 5 splits and a mean set coverage of at least 93.5 %."""
    import pytest

    from benchmarks.network_refit import built_report

    base = {s: _lib_row(s, 0.80, 0.96) for s in range(5)}
    refit = {s: _lib_row(s, 0.80 + 0.01 * s, 0.95) for s in range(5)}
    refit[7] = _lib_row(7, 1.0, 1.0)  # no base twin: not paired
    table, res = built_report(base, refit, {s: True for s in range(5)})
    assert res["splits"] == [0, 1, 2, 3, 4]
    assert res["int8_0"]["gain"] == pytest.approx(2.0)
    assert res["int8_0"]["per_split"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert res["test_set_size"]["refit"] == pytest.approx(4.0)  # minerals, not percent
    assert res["verdict"]["may_ship"] and "may ship" in table
    # one gate failed: may not ship, whatever the top-1
    assert not built_report(base, refit, {**{s: True for s in range(5)}, 3: False}
                            )[1]["verdict"]["may_ship"]
    # coverage below the floor: may not ship
    low = {s: _lib_row(s, 0.9, 0.93) for s in range(5)}
    _, res = built_report(base, low, {s: True for s in range(5)})
    assert not res["verdict"]["may_ship"] and not res["verdict"]["coverage_ok"]
    # fewer than 5 splits: never "may ship"
    four = {s: refit[s] for s in range(4)}
    assert not built_report(base, four, {s: True for s in range(4)})[1]["verdict"]["may_ship"]


def _held_row(base0: float, refit0: float, base30: float = 0.7, refit30: float = 0.7,
              n: int = 60) -> dict:
    row = {"n": n}
    for s, (b, r) in ((0, (base0, refit0)), (15, (base0, refit0)), (30, (base30, refit30))):
        row.update({f"lib|base|{s}": b, f"lib|refit|{s}": r,
                    f"net|base|{s}": b - 0.1, f"net|refit|{s}": r - 0.05})
    return row


def test_holdout_report_judges_rule_r_prime_on_the_held_out_answers() -> None:
    """Rule (R') (a)-(b): mean paired gain of the answer at 0 >= +0.5 points with >= 3 of 5
    splits higher, and at 30 >= -1; fewer than 5 splits never hold."""
    import pytest

    from benchmarks.network_refit import holdout_report

    res = {s: _held_row(0.80, 0.80 + 0.005 * s) for s in range(5)}  # +0, +0.5, ... +2.0
    table, v = holdout_report(res)
    assert v["gain_0"] == pytest.approx(1.0) and v["higher"] == 4 and v["lower"] == 0
    assert v["per_split"] == [0.0, 0.5, 1.0, 1.5, 2.0] and v["a_b_hold"]
    assert table.endswith(": hold") and v["spectra"] == [60] * 5
    # the network alone is reported beside it, not judged
    assert "network alone: refit - base, paired | +6.00" in table
    # two higher only: (a) fails although the mean is large
    two = {s: _held_row(0.80, 0.80 + (0.05 if s < 2 else 0.0)) for s in range(5)}
    table, v = holdout_report(two)
    assert not v["a_b_hold"] and table.endswith(": do not hold")
    # (b): a loss of more than a point at 30 fails
    shy = {s: _held_row(0.80, 0.82, 0.70, 0.68) for s in range(5)}
    assert not holdout_report(shy)[1]["a_b_hold"]
    # four splits: never
    assert not holdout_report({s: res[s] for s in range(4)})[1]["a_b_hold"]
    # equal answers whose means differ by float noise count as neither higher nor lower
    noise = {s: _held_row(0.8, 0.7 + 0.1) for s in range(5)}  # 0.8 and 0.7999999999999999
    assert noise[0]["lib|base|0"] != noise[0]["lib|refit|0"]
    v = holdout_report(noise)[1]
    assert v["higher"] == v["lower"] == 0
    assert "same_library" not in v  # rows scored without the base's refit-library answer


def test_holdout_report_judges_the_same_library_comparison_beside_the_rule() -> None:
    """``lib|base+`` (the base network with the refit's library): its own verdict, so a gain
    that the absorbed spectra in the library bring, and the shipped base also has, does not
    count for the refit network."""
    from benchmarks.network_refit import holdout_report

    res = {}
    for s in range(5):
        row = _held_row(0.80, 0.81)  # +1 point with the base's own library on every split
        for k in (0, 15, 30):  # the refit's library lifts the base as much: +0 network gain
            row[f"lib|base+|{k}"] = row[f"lib|refit|{k}"]
        res[s] = row
    table, v = holdout_report(res)
    assert v["a_b_hold"] and v["gain_0"] > 0.99
    same = v["same_library"]
    assert same["gain_0"] == 0.0 and same["higher"] == same["lower"] == 0
    assert not same["a_b_hold"] and table.endswith("do not hold")
    assert "only the network differs: refit - base, paired | +0.00" in table


def test_built_reads_the_split_kind_it_is_given(tmp_path) -> None:
    """``built --split random`` pairs the per-spectrum rows and leaves the grouped ones out
    (and the default, grouped, the other way round)."""
    import json

    from click.testing import CliRunner

    from benchmarks.network_refit import main

    def rows(path, top1_random: float) -> None:
        lines = [_lib_row(s, 0.80, 0.96) for s in range(5)]
        lines += [{**_lib_row(s, top1_random, 0.96), "split": "random"} for s in range(5)]
        path.write_text("".join(json.dumps(r) + "\n" for r in lines))

    rows(tmp_path / "base.jsonl", 0.85)
    rows(tmp_path / "refit.jsonl", 0.88)
    gates = tmp_path / "gates.jsonl"
    gates.write_text("".join(json.dumps({"recipe": "r-refit", "split": "random", "split_seed": s,
                                         "gate_passed_default": True}) + "\n" for s in range(5)))
    common = ["built", "--base", str(tmp_path / "base.jsonl"), "--refit",
              str(tmp_path / "refit.jsonl"), "--gates", str(gates), "--recipe", "r-refit"]
    out = tmp_path / "random.json"
    res = CliRunner().invoke(main, [*common, "--split", "random", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["split"] == "random" and abs(got["int8_0"]["gain"] - 3.0) < 1e-9
    assert got["verdict"]["gate_passed"] == 5
    # grouped: no gain, and no gate rows of that kind (none passed)
    res = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "grouped.json")])
    got = json.loads((tmp_path / "grouped.json").read_text())
    assert res.exit_code == 0 and got["int8_0"]["gain"] == 0.0
    assert got["verdict"]["gate_passed"] == 0
