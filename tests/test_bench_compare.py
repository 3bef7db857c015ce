"""Per-machine reference files: board names carry the CPU, and the comparison reads them."""

from __future__ import annotations

import json

import pytest

from benchmarks import common, compare


@pytest.mark.parametrize(("cpu", "slug"), [
    ("Intel(R) Xeon(R) Processor", "intel-xeon"),
    ("AMD EPYC 7B13", "amd-epyc-7b13"),
    ("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", "intel-core-i7-8650u"),
    ("Cortex-A72", "cortex-a72"),
])
def test_board_name_names_the_cpu(monkeypatch, cpu, slug):
    monkeypatch.setattr(common, "cpu_model", lambda: cpu)
    assert common.board_name().endswith(f"core-{slug}")


def test_compare_puts_every_reference_and_yours_side_by_side(tmp_path, capsys):
    refs = sorted(compare.REFERENCE.glob("*.json"))
    assert refs, "benchmarks/reference/ holds no reference file"
    mine = json.loads(refs[0].read_text())
    mine["latency_ms"]["1"]["int8_model"]["median"] = 0.5
    mine["meta"]["machine"]["cpu"] = "Test CPU 9000"
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(mine))
    text = compare.main([str(p)])
    header = text.splitlines()[0]
    assert all(r.stem in header for r in refs) and "yours: mine.json" in header
    row = next(ln for ln in text.splitlines() if ln.startswith("| int8 model, 1 thread"))
    assert row.rstrip(" |").endswith("0.5")
    assert "Test CPU 9000" in text and capsys.readouterr().out.strip() == text
