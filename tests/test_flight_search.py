"""The architecture search driver's summary (benchmarks.flight_search): paired gains."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from benchmarks.flight_search import main, paired_gain, summary_table


def _row(name: str, split_seed: int, seed: int, v0: float, v15: float, v30: float) -> dict:
    return {"candidate": name, "split": "grouped", "split_seed": split_seed, "seed": seed,
            "params": 1000, "macs": 2e6, "train_s": 10.0, "val_0": v0, "val_15": v15,
            "val_30": v30, "test_0": 0.5, "test_15": 0.5, "test_30": 0.5}


ROWS = [_row("ref", 0, 0, 0.80, 0.70, 0.60), _row("ref", 1, 0, 0.60, 0.50, 0.40),
        _row("new", 0, 0, 0.82, 0.73, 0.60), _row("new", 1, 0, 0.64, 0.50, 0.49),
        _row("new", 2, 0, 0.99, 0.99, 0.99)]  # split 2 has no reference row: not paired


def test_paired_gain_pairs_split_and_seed() -> None:
    assert paired_gain(ROWS, "new", "ref", lambda r: r["val_0"]) == pytest.approx([2.0, 4.0])
    assert paired_gain(ROWS, "new", "ref", lambda r: r["val_30"]) == pytest.approx([0.0, 9.0])
    table = summary_table(ROWS, "ref")
    new = next(line for line in table.splitlines() if line.startswith("| new "))
    assert "+3.0 ± 1.4 (2)" in new            # val @0: gains 2 and 4 points
    assert "+3.0 ± 1.9 (2)" in new            # val mean: (2+3+0)/3 and (4+0+9)/3 points
    assert "gain" not in summary_table(ROWS)   # no reference, no gain columns


def test_summary_refuses_an_unknown_reference_and_a_bad_file(tmp_path) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ok = CliRunner().invoke(main, ["--summary", str(f), "--reference", "ref"])
    assert ok.exit_code == 0 and "val @0 gain vs ref" in ok.output
    res = CliRunner().invoke(main, ["--summary", str(f), "--reference", "nope"])
    assert res.exit_code == 2 and "no rows" in res.output
    f.write_text("not json\n")
    res = CliRunner().invoke(main, ["--summary", str(f)])
    assert res.exit_code == 1 and "not a JSON-lines file" in res.output
    f.write_text("".join(json.dumps(r) + "\n" for r in [*ROWS, ROWS[0]]))  # a run twice
    res = CliRunner().invoke(main, ["--summary", str(f), "--reference", "ref"])
    assert res.exit_code == 1 and "more than one row" in res.output
    res = CliRunner().invoke(main, ["--reference", "ref"])
    assert res.exit_code == 2 and "goes with --summary" in res.output


def test_measured_candidates_keep_the_model_they_were_measured_with() -> None:
    """The search's candidates were measured before early pooling became the default: they
    stay late-pool (the one candidate that screened early pooling excepted), and so do the
    flight_eval recipes named after runs of the former default."""
    from benchmarks.flight_eval import RECIPES
    from benchmarks.flight_search import CANDIDATES

    early = {n for n, (mc, _) in CANDIDATES.items() if mc.early_pool}
    assert early == {"screen-early-pool"}
    for name in ("flight-v1", "flight-v1-ptq", "flight-v2", "flight-oe", "flight-k11",
                 "flight-p3x4", "flight-fast"):
        assert not RECIPES[name][0].early_pool, name
    assert RECIPES["flight-early-pool"][0].early_pool and RECIPES["flight"][0].early_pool
    # the training-seed draws of the default: the same model and recipe, another seed
    from dataclasses import replace

    from trainer.train import TrainConfig

    for seed in (1, 2):
        mc, tc = RECIPES[f"flight-early-pool-s{seed}"]
        assert mc == RECIPES["flight-early-pool"][0] and tc == replace(TrainConfig(), seed=seed,
                                                                      ema=0.0)
    # every model measured before the stride-2 first conv (2026-12-07) keeps its first conv
    # at every point: the search's candidates and every recipe but the default's and the
    # stride recipes' own
    from trainer.model import FLIGHT_FULL_POSITIONS, FLIGHT_HALF_POSITIONS, FLIGHT_MODEL

    assert all(mc.stem_stride == 1 for mc, _ in CANDIDATES.values())
    strided = {n for n, (mc, _) in RECIPES.items() if mc.stem_stride != 1}
    # rule (R3)'s bases and rule (E)'s (the same path with a moving average of the weights)
    ch2 = {f"flight-stem4-ch2{t}" for t in ("", "-s1", "-s2", "-ema", "-ema-s1", "-ema-s2")}
    assert strided == {"flight", "flight-ptq", "flight-stem2", "flight-stem2-s1", "flight-stem4",
                       "flight-stem4-s1", "flight-stem4-s2", "flight-wide4", "flight-stem4-refit",
                       "flight-stem4-refit-h3", "flight-stem4-refit-h2",
                       *ch2, *{f"{b}-refit" for b in ch2}}
    # rule (W)'s wider candidate: the default's positions with wider blocks; the refits of
    # the default's runs refit the default's model (REFIT_OF), one with a third held out
    from benchmarks.flight_eval import REFIT_HOLDOUT, REFIT_OF

    wide = RECIPES["flight-wide4"][0]
    assert replace(wide, filters=FLIGHT_MODEL.filters, dense_units=FLIGHT_MODEL.dense_units) \
        == FLIGHT_MODEL and wide.filters == (32, 64, 96, 128, 160) and wide.dense_units == 176
    for name in ("flight-stem4-refit", "flight-stem4-refit-h3", "flight-stem4-refit-h2"):
        assert REFIT_OF[name] == "flight-stem4" and RECIPES[name] == RECIPES["flight-stem4"]
    # rule (R3): the default's model and recipe, one per training seed, choosing on half of
    # the validation specimens, and their refits holding out that half
    from benchmarks.flight_eval import CALIBRATION_HOLDOUT

    halves = dict.fromkeys(ch2, 1 / 2)
    assert halves == CALIBRATION_HOLDOUT
    for b in ch2:
        seed = int(b[-1]) if b.endswith(("-s1", "-s2")) else 0
        # rule (E)'s own recipes average the weights
        ema = 0.99 if "-ema" in b else 0.0
        assert RECIPES[b] == (FLIGHT_MODEL, replace(TrainConfig(), seed=seed, ema=ema))
        assert REFIT_OF[f"{b}-refit"] == b and RECIPES[f"{b}-refit"] == RECIPES[b]
    # ... and no other recipe does (each was measured without it)
    assert all(tc.ema == 0.0 for n, (_, tc) in RECIPES.items() if "-ema" not in n)
    assert all(tc.ema == 0.99 for n, (_, tc) in RECIPES.items() if "-ema" in n)
    holdouts = {"flight-stem4-refit-h3": 1 / 3, "flight-stem4-refit-h2": 1 / 2,
                **{f"{b}-refit": 1 / 2 for b in ch2}}
    assert holdouts == REFIT_HOLDOUT
    assert RECIPES["flight-stem4"][0].stem_stride == 4
    assert RECIPES["flight-stem2"][0].stem_stride == 2
    assert RECIPES["flight-stem2"][0] == RECIPES["flight-stem2-s1"][0] == FLIGHT_HALF_POSITIONS
    assert RECIPES["flight-stem4"][0] == RECIPES["flight-stem4-s1"][0] == FLIGHT_MODEL
    for seed in (1, 2):
        mc, tc = RECIPES[f"flight-stem4-s{seed}"]
        assert mc == FLIGHT_MODEL and tc == replace(TrainConfig(), seed=seed, ema=0.0)
    assert RECIPES["flight-stem2-s1"][1] == replace(TrainConfig(), seed=1, ema=0.0)
    assert RECIPES["flight-early-pool"][0] == FLIGHT_FULL_POSITIONS


def test_seed_lists_and_a_missing_evaluation_end_with_one_line(tmp_path) -> None:
    from benchmarks.flight_eval import main as eval_main

    res = CliRunner().invoke(main, ["--split-seeds", "0,one", "--candidates", "flight"])
    assert res.exit_code == 2 and "--split-seeds must be comma-separated whole numbers" in \
        res.output
    res = CliRunner().invoke(eval_main, ["--grouped", "0,x", "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "--grouped must be" in res.output
    assert not (tmp_path / "e").exists()  # refused before anything was written
    res = CliRunner().invoke(eval_main, ["--summary", "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "no evaluation rows" in res.output


def test_validation_shifts_are_added_to_the_rows_that_lack_them(tmp_path, monkeypatch) -> None:
    """--val-shifts fills val_int8_0/15/30 from each split's folder, keeps every other field
    and row, leaves rows that have them alone, and writes nothing when a folder is gone."""
    import json

    import numpy as np

    import benchmarks.flight_eval as fe
    import trainer.run

    out = tmp_path / "e"
    rows = [{"recipe": "flight", "split": "grouped", "split_seed": 0, "int8_0": 0.7},
            {"recipe": "flight", "split": "grouped", "split_seed": 1, "int8_0": 0.6,
             "val_int8_0": 0.5, "val_int8_15": 0.4, "val_int8_30": 0.3}]
    out.mkdir()
    (out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "flight-grouped0" / "model").mkdir(parents=True)
    (out / "flight-grouped0" / "run").mkdir()
    (out / "flight-grouped0" / "run" / "split.csv").write_text("path,part\n")

    class Run:
        def subset(self, part):
            assert part == "val"
            return np.zeros((3, 4), np.float32), np.zeros(3, int)

    seen = []
    monkeypatch.setattr(trainer.run, "load_run", lambda path, load_model: Run())
    monkeypatch.setattr(fe, "rover_shift_top1", lambda art, X, y: seen.append(art) or
                        {"0": 0.9, "15": 0.8, "30": 0.7})
    assert fe.backfill_val_shifts(out, log=lambda _m: None) == 1
    got = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert got[0] == {**rows[0], "val_int8_0": 0.9, "val_int8_15": 0.8, "val_int8_30": 0.7}
    assert got[1] == rows[1] and seen == [out / "flight-grouped0" / "model"]
    assert fe.backfill_val_shifts(out, log=lambda _m: None) == 0  # nothing left to add
    # a row whose folder is gone: one clean error, the file as it was
    before = (out / "eval.jsonl").read_text()
    (out / "eval.jsonl").write_text(before + json.dumps({**rows[0], "split_seed": 7}) + "\n")
    before = (out / "eval.jsonl").read_text()
    res = CliRunner().invoke(fe.main, ["--val-shifts", "--out", str(out)])
    assert res.exit_code == 1 and "flight-grouped7" in res.output and "Traceback" not in \
        res.output
    assert (out / "eval.jsonl").read_text() == before
    res = CliRunner().invoke(fe.main, ["--val-shifts", "--out", str(tmp_path / "none")])
    assert res.exit_code == 1 and "no evaluation rows" in res.output


def test_teacher_runs_are_the_teachers_a_run_trains_inside(monkeypatch) -> None:
    """flight_eval's teacher-run recipes (flight-kd-m2) start with the three teachers the
    default trains inside a run: train_teachers calls train_model with exactly those
    configs, up to fields that do nothing without negatives or a run (outlier exposure and
    the int8-aware step), so the added paper m = 2 teacher is the one difference."""
    from dataclasses import replace

    import numpy as np

    import trainer.train as ttrain
    from benchmarks.flight_eval import PAPER_M2_K15, RECIPES, TEACHER_RUNS, flight_teachers

    seen = []

    class Res:
        model, epochs_run, best_epoch, seconds = None, 1, 1, 0.0
        history = {"lr": [1e-3]}

    monkeypatch.setattr(ttrain, "train_model", lambda *a, **kw: seen.append((a[5], a[6], kw))
                        or Res())
    monkeypatch.setattr(ttrain, "predict_probs", lambda m, X: np.full((len(X), 2), 0.5))
    mc, tc = RECIPES["flight-early-pool"]
    X, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    ttrain.train_teachers(X, y, X, y, 2, mc, tc, log=None)
    want = flight_teachers(tc, mc)
    assert len(seen) == len(want) == 3
    for (m, t, kw), (wm, wt) in zip(seen, want, strict=True):
        assert "negatives" not in kw and m == wm
        assert replace(t, outlier_exposure=0.0, qat_epochs=0) == wt
    runs = TEACHER_RUNS["flight-kd-m2"]
    assert runs[:3] == want and runs[3][0] == PAPER_M2_K15 and len(runs) == 4
    assert RECIPES["flight-kd-m2"][0] == mc and RECIPES["flight-kd-m2"][1].teachers == 0


def test_latency_probe_times_each_model_once() -> None:
    """A model listed under two names (the default, and the name it was measured by before
    it became the default) is timed once, under its first name."""
    from benchmarks.latency_probe import CANDIDATES, REFERENCE, distinct

    names = distinct(list(CANDIDATES))
    configs = [CANDIDATES[n] for n in names]
    assert len(set(configs)) == len(configs) == len(set(CANDIDATES.values()))
    assert names[0] == REFERENCE and "flight (default)" in names
    assert "flight first conv stride 4, pool 2 x 3" not in names  # the default since 2026-12-07
