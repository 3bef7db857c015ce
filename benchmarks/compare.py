"""Compare benchmark figures across machines (the per-board reference files).

Every full ``ramanedge bench`` writes ``benchmarks/reference/BOARD.json`` (BOARD names the
architecture, core count and CPU model). ``python -m benchmarks.compare`` prints the headline
figures of every reference file side by side; ``python -m benchmarks.compare MINE.json``
adds yours (a reference file, or the ``docs/benchmarks.json`` a bench run writes), with the
ratio to each reference, so you can tell whether your machine behaves like ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent / "reference"

#: (row label, function of a reference dict -> number or None, unit)
ROWS: tuple[tuple[str, Any, str], ...] = (
    ("int8 model, 1 thread, median", lambda r: _lat(r, "1", "int8_model"), "ms"),
    ("int8 model, 2 threads, median", lambda r: _lat(r, "2", "int8_model"), "ms"),
    ("classify_grid (top-k + unknown), 1 thread", lambda r: _lat(r, "1", "int8_classify"), "ms"),
    ("cold start (spawn -> first result)", lambda r: _num(r.get("cold_start_s"),
                                                          "spawn_to_first_s"), "s"),
    ("peak RSS, `ramanedge classify`", lambda r: _num((r.get("peak_rss_mib") or {}).get(
        "classify_cli"), "max"), "MiB"),
    ("serial replay latency, lowest baud", lambda r: _serial(r), "ms"),
)


def _num(v: Any, key: str) -> float | None:
    """A number, or ``v[key]`` when the figure is stored with its details."""
    return v.get(key) if isinstance(v, dict) else v


def _lat(r: dict[str, Any], threads: str, method: str) -> float | None:
    return ((r.get("latency_ms") or {}).get(threads) or {}).get(method, {}).get("median")


def _serial(r: dict[str, Any]) -> float | None:
    rows = sorted(r.get("serial") or [], key=lambda s: s.get("baud") or 0)
    if not rows:
        return None
    return _num(rows[0].get("latency_ms"), "p50")


def as_reference(d: dict[str, Any]) -> dict[str, Any]:
    """A reference dict from a reference file or a full ``docs/benchmarks.json``."""
    if "latency_ms" in d:
        return d
    from benchmarks.suite import reference

    return reference(d)


def table(refs: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one column per machine (CPU, model and date in the header rows)."""
    names = list(refs)
    out = ["| figure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    meta = {n: refs[n].get("meta") or {} for n in names}
    out.append("| CPU | " + " | ".join(str((meta[n].get("machine") or {}).get("cpu", "?"))
                                       for n in names) + " |")
    out.append("| date | " + " | ".join(str((meta[n].get("machine") or {}).get("date", "?"))[:10]
                                        for n in names) + " |")
    out.append("| model | " + " | ".join(str(meta[n].get("model_summary", "?"))[:60]
                                         for n in names) + " |")
    for label, fn, unit in ROWS:
        vals = [fn(refs[n]) for n in names]
        out.append(f"| {label} ({unit}) | " + " | ".join(
            "-" if v is None else f"{v:.3g}" for v in vals) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    """Print the comparison table (and return it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mine", nargs="*", type=Path,
                    help="your bench JSON (docs/benchmarks.json or a reference file)")
    a = ap.parse_args(argv)
    refs = {p.stem: json.loads(p.read_text()) for p in sorted(REFERENCE.glob("*.json"))}
    for p in a.mine:
        refs[f"yours: {p.name}"] = as_reference(json.loads(p.read_text()))
    text = table(refs)
    print(text)
    return text


if __name__ == "__main__":
    main()
