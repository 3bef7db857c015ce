"""``benchmarks.pool_rows``: the multi-split figures the docs quote, pooled from eval rows."""

from __future__ import annotations

import json

import pytest


def _write(path, rows):
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
