"""``benchmarks.pool_rows``: the multi-split figures the docs quote, pooled from eval rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")


def test_pool_rows_picks_by_recipe_pattern_and_split(tmp_path) -> None:
    from click.testing import CliRunner

    from benchmarks.pool_rows import main

    rows = [{"recipe": "a-refit+library", "split": "grouped", "split_seed": s, "int8_0": v,
             "test_set_size": z, "unknown_auroc": 0.9}
            for s, v, z in ((0, 0.80, 2.0), (1, 0.90, 4.0))]
    rows += [{"recipe": "a+library", "split": "grouped", "split_seed": 0, "int8_0": 0.10},
             {"recipe": "a-refit+library", "split": "random", "split_seed": 0, "int8_0": 0.50}]
    f = tmp_path / "eval.jsonl"
    _write(f, rows)
    res = CliRunner().invoke(main, [str(f), "--recipe", "*-refit+library", "--split", "grouped"])
    assert res.exit_code == 0, res.output
    assert "| int8_0 | 85.00 ± 7.07 | 80.00, 90.00 |" in res.output  # percent, ddof=1
    assert "| test_set_size | 3.00 ± 1.41 |" in res.output  # a count, not a percent
    assert "| unknown_auroc | 0.900 ± 0.000 |" in res.output
    res = CliRunner().invoke(main, [str(f), "--recipe", "*-refit+library"])
    assert "| int8_0 | 73.33 ± 20.82 |" in res.output  # both kinds of split: 80, 90, 50


def test_pool_rows_skips_a_figure_some_rows_lack_and_refuses_bad_input(tmp_path) -> None:
    from click.testing import CliRunner

    from benchmarks.pool_rows import main, pooled

    assert set(pooled([{"int8_0": 0.5, "net_0": 0.4}, {"int8_0": 0.7}])) == {"int8_0"}
    assert pooled([{"int8_0": 0.5}])["int8_0"]["sd"] is None
    f = tmp_path / "eval.jsonl"
    _write(f, [{"recipe": "a", "int8_0": 0.5}])
    res = CliRunner().invoke(main, [str(f), "--recipe", "b*"])
    assert res.exit_code == 2 and "no rows with a recipe matching 'b*'" in res.output
    f.write_text('{"recipe": "a"}\nnot json\n')
    res = CliRunner().invoke(main, [str(f)])
    assert res.exit_code == 2 and f"{f}:2 is not a JSON row" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("line", ["[1, 2]", "3"])
def test_pool_rows_refuses_a_row_that_is_not_an_object(tmp_path, line) -> None:
    from click.testing import CliRunner

    from benchmarks.pool_rows import main

    f = tmp_path / "eval.jsonl"
    f.write_text(line + "\n")
    res = CliRunner().invoke(main, [str(f)])
    assert res.exit_code == 2 and f"{f}:1 is not a JSON object" in res.output


def test_pool_rows_pairs_runs_by_split_and_seed_and_refuses_ambiguity(tmp_path) -> None:
    """``--against``: each row minus the reference row of the same split and seed (not of
    the same position in the file); a tie is neither higher nor lower; a side with two rows
    of one split and seed, or a row without a pair, is one error line."""
    from click.testing import CliRunner

    from benchmarks.pool_rows import main

    new, ref = tmp_path / "new.jsonl", tmp_path / "ref.jsonl"
    _write(new, [{"recipe": "n", "split": "grouped", "split_seed": s, "int8_0": v}
                 for s, v in ((0, 0.80), (1, 0.70), (2, 0.60))])
    _write(ref, [{"recipe": "r", "split": "grouped", "split_seed": s, "int8_0": v}
                 for s, v in ((2, 0.50), (1, 0.70), (0, 0.90))]
           + [{"recipe": "other", "split": "grouped", "split_seed": 0, "int8_0": 0.1}])
    res = CliRunner().invoke(main, [str(new), "--against", str(ref), "--against-recipe", "r"])
    assert res.exit_code == 0, res.output
    # 80-90, 70-70, 60-50: mean 0, s.d. 10; one higher, one lower, one tie
    assert "| int8_0 | +0.00 ± 10.00 | 1 / 1 | -10.00, +0.00, +10.00 |" in res.output
    res = CliRunner().invoke(main, [str(new), "--against", str(ref)])
    assert res.exit_code == 2 and "more than one row on grouped split 0" in res.output
    _write(ref, [{"recipe": "r", "split": "grouped", "split_seed": 0, "int8_0": 0.9}])
    res = CliRunner().invoke(main, [str(new), "--against", str(ref)])
    assert res.exit_code == 2 and "no reference row for n on grouped split 1" in res.output


def test_pool_rows_refuses_a_run_exported_twice_and_a_binary_file(tmp_path) -> None:
    from click.testing import CliRunner

    from benchmarks.pool_rows import main

    f = tmp_path / "eval.jsonl"
    _write(f, [{"recipe": "a", "split": "grouped", "split_seed": 0, "int8_0": 0.5}] * 2)
    res = CliRunner().invoke(main, [str(f)])
    assert res.exit_code == 2 and "more than one row of a on grouped split 0" in res.output
    f.write_bytes(b"\xff\xfe\x00bad")
    res = CliRunner().invoke(main, [str(f)])
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output
    assert "Traceback" not in res.output
