"""The nearest-exemplar blend probe (``benchmarks.knn_blend``, issue 11): its class
similarity, the two ends of the blend and the leave-one-split-out choice."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.knn_blend import blend, class_similarity, leave_one_out, variants


def test_class_similarity_is_the_best_cosine_per_class() -> None:
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank_y = np.array([0, 1, 1])
    F = np.array([[2.0, 0.0], [0.0, 3.0], [3.0, 4.0]])
    S = class_similarity(F, bank, bank_y, 3)
    np.testing.assert_allclose(S[:, :2], [[1.0, 0.6], [0.0, 1.0], [0.6, 1.0]], atol=1e-12)
    assert np.all(S[:, 2] == -1.0)  # a class without exemplars is never the nearest


def test_blend_ends_are_the_head_and_the_nearest_exemplar() -> None:
    P = np.array([[0.7, 0.3], [0.2, 0.8]])
    S = np.array([[0.1, 0.9], [0.9, 0.1]])
    assert blend(P, S, 0.0, 0.0) is P
    np.testing.assert_array_equal(blend(P, S, 1.0, 0.0).argmax(1), [1, 0])
    q = blend(P, S, 0.3, 0.05)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert (0.0, 0.0) in variants() and (1.0, 0.0) in variants()
    assert all(t > 0 for w, t in variants() if 0 < w < 1)


def test_leave_one_split_out_never_chooses_on_the_judged_split() -> None:
    """Split "0" (two training seeds) strongly favours variant a on its own validation,
    splits 1 and 2 mildly favour b: split 0's choice is b, made on the others, and its delta
    is b's on split 0; counting split 0's other seed among the "others" would pick a. The
    1-NN variant (reported only) is never picked, however good."""
    def run(split, a, b):
        s = {"w=0,T=0": 0.5, "a": a, "b": b, "w=1,T=0": 0.99}
        return {"run": f"r/{split}", "split": split,
                "scores": {"val_0": s, "test_0": dict(s)}}
    runs = [run("0", 1.0, 0.0), run("0", 1.0, 0.0), run("1", 0.5, 0.6), run("2", 0.5, 0.6)]
    out = leave_one_out(runs)
    assert [x["pick"] for x in out[:2]] == ["b", "b"]
    assert out[0]["d_val_0"] == pytest.approx(-50.0)
    assert out[2]["pick"] == "a"  # split 0 (twice) outweighs split 2 for split 1


def test_library_probe_keeps_its_two_rules_candidates_apart() -> None:
    """``benchmarks.library_match``: rule (A) chooses among the plain library's blends only,
    rule (A') among the lagged library's blends and its 1-NN; neither ever picks the plain
    1-NN or the shipped head, and each judges the pick on the held-out split."""
    from benchmarks.library_match import leave_one_out as lib_loo

    def run(split, lag_nn):
        v = {"shipped": 0.5, "h=25,1-NN": 0.99, "h=25,w=0.3,T=0.02": 0.6,
             "h=25,R=30,1-NN": lag_nn, "h=25,R=30,w=0.3,T=0.02": 0.7}
        return {"run": f"r/{split}", "split": split,
                "answer": {"val_0": v, "test_0": dict(v)}}
    runs = [run("0", 0.9), run("1", 0.9), run("2", 0.1)]
    plain = lib_loo(runs, lagged=False)
    lagged = lib_loo(runs, lagged=True)
    assert {x["pick"] for x in plain} == {"h=25,w=0.3,T=0.02"}
    assert plain[0]["d_val_0"] == pytest.approx(10.0)
    # split 0's others hold the lagged 1-NN at 0.9 and 0.1 (mean 0.5 < the blend's 0.7), as
    # do split 1's; split 2's others at 0.9 and 0.9: the 1-NN
    assert [x["pick"] for x in lagged] == ["h=25,R=30,w=0.3,T=0.02"] * 2 + ["h=25,R=30,1-NN"]
    assert lagged[2]["d_val_0"] == pytest.approx(-40.0)  # judged on split 2's own 0.1


def test_library_eval_pool_choice_leaves_both_seeds_of_the_judged_split_out() -> None:
    """``benchmarks.library_eval --pool``: split 0's two training seeds favour variant a on
    their own validation, splits 1 and 2 favour b; split 0 is judged with b (chosen on the
    others only), and its delta is b's against the shipped blend on split 0."""
    from benchmarks.library_eval import SHIFTS, pool_report

    def run(a, b):
        v = {"shipped": 0.5, "a": a, "b": b}
        return {f"{p}_{s}": dict(v) for p in ("val", "test") for s in SHIFTS}
    res = {"fep-grouped0": run(1.0, 0.4), "fep-s1-grouped0": run(1.0, 0.4),
           "fep-grouped1": run(0.5, 0.6), "fep-grouped2": run(0.5, 0.6)}
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")
            for line in pool_report(res).splitlines()[2:-2]}
    assert rows["fep-grouped0"][1] == rows["fep-s1-grouped0"][1] == "b"
    assert rows["fep-grouped0"][2] == "-10.00"  # b (0.4) against the shipped 0.5
    assert rows["fep-grouped1"][1] == "a"  # split 0, twice, outweighs split 2


def test_library_eval_config_changes_are_checked_in_one_line() -> None:
    import click

    from benchmarks.library_eval import parse_changes
    from ramanedge.errors import ModelError

    assert parse_changes("bin_width=4, step=4,reach=32") == {"bin_width": 4, "step": 4,
                                                            "reach": 32}
    assert parse_changes("window_norm=false") == {"window_norm": False}
    assert parse_changes("") == {}
    with pytest.raises(click.UsageError, match="KEY one of half_width"):
        parse_changes("bins=4")
    with pytest.raises(click.UsageError, match="must be a number or true/false"):
        parse_changes("weight=high")
    with pytest.raises(ModelError, match="multiples of bin_width"):
        parse_changes("bin_width=4,step=3,reach=30")


def test_library_eval_probes_refuse_an_out_folder_without_exports(tmp_path) -> None:
    from click.testing import CliRunner

    from benchmarks.library_eval import main

    for flag in ("--pool", "--coarse", "--candidates=5", "--shift-average"):
        res = CliRunner().invoke(main, ["--eval", "runs/x:flight", "--out", str(tmp_path),
                                        flag])
        assert res.exit_code == 2, res.output
        assert "no flight-grouped<N> folders in" in res.output, res.output
    res = CliRunner().invoke(main, ["--eval", "flight", "--out", str(tmp_path), "--pool"])
    assert res.exit_code == 2 and "expected FOLDER:RECIPE" in res.output
    res = CliRunner().invoke(main, ["--eval", "runs/x:flight", "--out", str(tmp_path),
                                    "--pool", "--shift-average"])
    assert res.exit_code == 2 and "separate probes: give one of them" in res.output


def test_library_eval_resumes_only_the_library_it_was_asked_for(tmp_path) -> None:
    """An OUT whose row was exported with the training spectra alone (rows from before
    ``--library-spectra`` carry no key) resumes with ``--library-spectra train`` and refuses
    the default train+val in one line; a row of the other config is refused too."""
    import json

    from click.testing import CliRunner

    from benchmarks.library_eval import main
    from ramanedge.library import LibraryConfig

    for sub in ("run", "model"):
        (tmp_path / "E" / "rec-grouped0" / sub).mkdir(parents=True)
    out = tmp_path / "OUT"
    out.mkdir()
    row = {"recipe": "rec+library", "split": "grouped", "split_seed": 0,
           "library_config": LibraryConfig().to_dict()}
    (out / "eval.jsonl").write_text(json.dumps(row) + "\n")
    args = ["--eval", f"{tmp_path / 'E'}:rec", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--library-spectra train, not train+val" in res.output
    assert CliRunner().invoke(main, [*args, "--library-spectra", "train"]).exit_code == 0
    (out / "eval.jsonl").write_text(json.dumps({**row, "library_parts": ["train", "val"]})
                                    + "\n")
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, [*args, "--config", "weight=0.3"])
    assert res.exit_code == 2 and "another library config" in res.output


def test_shift_average_averages_the_answers_to_the_shifted_spectra() -> None:
    """``benchmarks.library_eval --shift-average``: a "network" that answers the position of
    the spectrum's peak (one-hot over the grid) averaged over shifts -2, 0, +2 puts a third
    of the probability 2 points either side of the peak and at it; a peak at the last point
    leaves the grid in the +2 copy (edge-padded, not wrapped around: the flat copy's answer
    is 0, a wrapped one's would be 1); a positive shift moves the peak up the grid."""
    from benchmarks.library_eval import shift_averaged

    def peak(X):
        return np.eye(X.shape[1])[np.argmax(X, axis=1)]

    X = np.zeros((2, 20))
    X[0, 10] = X[1, 19] = 1.0
    Q = shift_averaged(peak, (-2, 0, 2))(X)
    assert Q[0] == pytest.approx(np.isin(np.arange(20), (8, 10, 12)) / 3)
    assert Q[1] == pytest.approx(np.isin(np.arange(20), (0, 17, 19)) / 3)
    assert shift_averaged(peak, (0, 3))(X)[0] == pytest.approx(
        np.isin(np.arange(20), (10, 13)) / 2)
    assert shift_averaged(peak, (0,))(X) == pytest.approx(peak(X))


def test_match_variants_top_mean() -> None:
    """``benchmarks.library_eval --variants``: ``class_top_mean`` scores a class by the mean
    of its ``top`` best columns (all it has when it has fewer; -1 without any)."""
    from benchmarks.library_eval import class_top_mean

    C = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    y = np.array([0, 0, 0, 2])
    S1 = class_top_mean(C, y, 4, 1)
    np.testing.assert_allclose(S1, [[0.9, -1, 0.3, -1], [0.8, -1, 0.6, -1]])
    S2 = class_top_mean(C, y, 4, 2)
    np.testing.assert_allclose(S2, [[0.7, -1, 0.3, -1], [0.6, -1, 0.6, -1]])


def test_variant_report_chooses_on_the_other_runs_validation() -> None:
    """The held-out choice of each run reads only the other runs' validation at 0: r2's
    own validation prefers the reference, the other two runs' the variant, so r2 gets
    the variant and its loss; the deltas are each run's own (validation and test),
    against the reference."""
    from benchmarks.library_eval import SHIFTS, variant_report

    def run(ref, good, test_good):
        out = {}
        for part in ("val", "test"):
            for s in SHIFTS:
                out[f"{part}_{s}"] = {"ref": ref, "good": good if part == "val"
                                      else test_good}
        return out

    res = {"r0": run(0.80, 0.82, 0.79), "r1": run(0.70, 0.71, 0.72),
           "r2": run(0.75, 0.745, 0.75)}
    table = variant_report(res, "ref")
    lines = table.splitlines()
    assert lines[2].startswith("| r0 | good | +2.00") and "-1.00" in lines[2]
    assert lines[3].startswith("| r1 | good | +1.00") and "+2.00" in lines[3]
    assert lines[4].startswith("| r2 | good | -0.50")
    assert "| higher / lower | | 2 / 1" in table


def test_variant_report_by_split_leaves_the_runs_own_split_out() -> None:
    """``by_split``: a run's choice reads the runs of the *other* splits only (training
    seeds of one split share its held-out validation spectra). a-grouped0's twin on split 0
    prefers the variant; the other split prefers the reference: by split, both split-0 runs
    keep the reference (delta 0); run by run, each would take its twin's choice."""
    from benchmarks.library_eval import SHIFTS, variant_report

    def run(ref, good):
        return {f"{part}_{s}": {"ref": ref, "good": good}
                for part in ("val", "test") for s in SHIFTS}

    res = {"a-grouped0": run(0.80, 0.90), "b-grouped0": run(0.80, 0.90),
           "a-grouped1": run(0.80, 0.75)}
    by_split = variant_report(res, "ref", by_split=True).splitlines()
    assert by_split[2].startswith("| a-grouped0 | ref | +0.00")
    assert by_split[3].startswith("| a-grouped1 | good | -5.00")  # split 0 prefers good
    run_by_run = variant_report(res, "ref").splitlines()
    assert run_by_run[2].startswith("| a-grouped0 | good | +10.00")


def test_probe_folders_read_one_kind_of_split(tmp_path) -> None:
    """The probes score the ``RECIPE-groupedN`` (default) or the ``RECIPE-randomN`` folders
    of the recipe asked for, never both at once (a run's held-out choice reads the other
    runs of its kind), nor another recipe that starts with its name; a run's split is its
    kind and seed, so grouped 0 and random 0 are different splits."""
    from click.testing import CliRunner

    from benchmarks.library_eval import _split_of, main, probe_folders, split_folders

    for name in ("flight-grouped0", "flight-random3", "flight-refit-grouped0", "flight-x",
                 "flight-grouped", "other-grouped1"):
        (tmp_path / name).mkdir()
    assert [p.name for p in probe_folders(tmp_path, "flight")] == ["flight-grouped0"]
    assert [p.name for p in probe_folders(tmp_path, "flight", "random")] == ["flight-random3"]
    assert [p.name for p in split_folders(tmp_path, "flight")] == ["flight-grouped0",
                                                                   "flight-random3"]
    assert [p.name for p in probe_folders(tmp_path, "flight-refit")] == [
        "flight-refit-grouped0"]
    res = CliRunner().invoke(main, ["--eval", "runs/x:flight-refit", "--out", str(tmp_path),
                                    "--pool", "--split", "random"])
    assert res.exit_code == 2 and "no flight-refit-random<N> folders in" in res.output
    assert _split_of("flight-stem4-ch2-s1-refit-grouped3") == "grouped3"
    assert _split_of("flight-stem4-random0") == "random0" != _split_of("flight-grouped0")


def test_library_eval_shipped_answers_count_sets_and_flags() -> None:
    """``benchmarks.library_eval.shipped_answers``: coverage is the share of sets that hold
    the true name, the size their mean length, the flag share the unknown answers."""
    from types import SimpleNamespace

    from benchmarks.library_eval import shipped_answers

    answers = iter([(("a",), False), (("b", "a"), True), (("b",), False), (("c", "b", "a"), False)])

    class Fake:
        labels = ("a", "b", "c")

        def classify_grid(self, x):
            s, u = next(answers)
            return SimpleNamespace(set=s, unknown=u)

    got = shipped_answers(Fake(), np.zeros((4, 3)), np.array([0, 0, 0, 2]))
    assert got == {"test_set_coverage": 0.75, "test_set_size": 1.75, "test_known_flagged": 0.25}
    answers = iter([(None, True)])
    assert shipped_answers(Fake(), np.zeros((1, 3)), np.array([1])) == {
        "test_set_coverage": None, "test_set_size": None, "test_known_flagged": 1.0}
    # unseen spectra: their flagged share, and the AUROC of the unknown score against the
    # known ones (here every unseen score above every known one but a tie)
    answers = iter([(("a",), False, 0.1), (("a",), False, 0.5), (("a",), False, 0.5),
                    (("a",), True, 0.9)])

    class Scored(Fake):
        def classify_grid(self, x):
            s, u, score = next(answers)
            return SimpleNamespace(set=s, unknown=u, unknown_score=score)

    got = shipped_answers(Scored(), np.zeros((2, 3)), np.array([0, 0]),
                          unseen=np.zeros((2, 3)))
    assert got["unseen_flagged"] == 0.5 and got["test_known_flagged"] == 0.0
    assert got["unknown_auroc"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
