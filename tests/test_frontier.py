"""The frontier table gathers rows from several evaluation folders (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest


def _row(recipe: str, seed: int, top1: float) -> dict:
    return {"recipe": recipe, "split": "grouped", "split_seed": seed, "int8_0": top1,
            "int8_15": top1 - 0.01, "int8_30": top1 - 0.1, "tflite_bytes": 1000,
            "macs": 10, "params": 5}


def _folder(path: Path, rows: list[dict]) -> Path:
    path.mkdir()
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_come_from_the_first_folder_in_the_order_asked(tmp_path: Path) -> None:
    from benchmarks.frontier import build, table

    new = _folder(tmp_path / "new", [_row("flight", 0, 0.80), _row("flight", 1, 0.70),
                                     {**_row("flight", 0, 0.9), "split": "random"}])
    old = _folder(tmp_path / "old", [_row("flight", 0, 0.10), _row("paper-m6", 0, 0.60)])
    res = build([new, old], tmp_path / "no-bench.json", recipes=["paper-m6", "flight"],
                labels={"flight": "flight (default)"})
    rows = {r["recipe"]: r for r in res["rows"] if "recipe" in r}
    assert [r.get("recipe") for r in res["rows"]][:2] == ["paper-m6", "flight"]
    # the first folder's rows of a recipe, grouped splits only: mean of 80 and 70
    assert rows["flight"]["top1_0"] == pytest.approx(75.0)
    assert rows["flight"]["source"].startswith("2 grouped splits")
    assert rows["paper-m6"]["top1_0"] == pytest.approx(60.0)
    assert "| flight (default) | 75.0 ± 7.1 |" in table(res)
    assert "latency" not in res  # no artifacts to time


def test_a_recipe_that_is_nowhere_is_a_usage_error(tmp_path: Path) -> None:
    from benchmarks.frontier import build

    new = _folder(tmp_path / "new", [_row("flight", 0, 0.8)])
    with pytest.raises(click.UsageError, match="no grouped rows of recipe 'k11'.*found: flight"):
        build([new], tmp_path / "no-bench.json", recipes=["k11"])
    with pytest.raises(click.UsageError, match="does not exist"):
        build([tmp_path / "missing"], tmp_path / "no-bench.json")
