"""The accuracy / size / compute / latency frontier: the paper's m sweep vs the flight family.

Reads the multi-split rover-path evaluations (:mod:`benchmarks.flight_eval`, ``eval.jsonl``),
the paper family's pooling sweep (``docs/benchmarks.json``, written by ``make bench``), the
k-NN baseline there and the SVM figures of ``docs/parts/results_training.md``; measures the
int8 latency of the flight artifact against the paper m = 6 artifact *in one run*
(interleaved, 1 thread, quantise + invoke + dequantise, same test spectra); writes
``docs/frontier.json`` and the plot ``docs/img/frontier.png`` and prints the markdown table
that ``docs/results.md`` carries.

    python -m benchmarks.frontier --eval runs/flight/eval

``--eval`` is repeatable and ``--recipes`` picks and orders the rows, so evaluations written
at different times (the default's, the paper m=6 model's, rejected candidates') share one
table and one interleaved latency run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    REPO,
    int8_call,
    interleaved,
    mean_sd_pct,
    one_line_errors,
    stats_ms,
)
from ramanedge.machine import machine_info

#: SVM on raw spectra, grouped split 0 (docs/parts/results_training.md; top-1 % at 0/15/30)
SVM_RAW = {"0": 56.8, "15": 32.4, "30": 12.1}


def measure_latency(artifacts: dict[str, Path], X: np.ndarray, *, n_items: int = 200,
                    rounds: int = 5, warmup: int = 20) -> dict[str, dict[str, float]]:
    """Median int8 latency (ms) of each artifact's rover call, interleaved in one run."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.interpreter import make_interpreter

    methods = {}
    for name, folder in artifacts.items():
        art = load_artifact(folder)
        it = make_interpreter(art.model_path, num_threads=1)
        methods[name] = int8_call(it, X, art.input_q, art.features_q)
    times = interleaved(methods, min(n_items, len(X)), rounds=rounds, warmup=warmup)
    return {k: stats_ms(v) for k, v in times.items()}


def _recipe_rows(eval_dirs: list[Path], recipes: list[str] | None
                 ) -> dict[str, tuple[Path, list[dict]]]:
    """recipe -> (the folder its rows come from, its grouped rows), in ``recipes`` order (or
    the folders' order); a recipe found in several folders comes from the first of them."""
    found: dict[str, tuple[Path, list[dict]]] = {}
    for d in eval_dirs:
        path = d / "eval.jsonl"
        if not path.is_file():
            raise click.UsageError(f"{path} does not exist: --eval takes a folder written by "
                                   "benchmarks.flight_eval")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        for r in rows:
            if r["split"] == "grouped" and r["recipe"] not in found:
                found[r["recipe"]] = (d, [x for x in rows if x["recipe"] == r["recipe"]
                                          and x["split"] == "grouped"])
    if recipes is None:
        return found
    missing = [r for r in recipes if r not in found]
    if missing:
        raise click.UsageError(f"no grouped rows of recipe {missing[0]!r} in "
                               f"{', '.join(map(str, eval_dirs))}; found: {', '.join(found)}")
    return {r: found[r] for r in recipes}


def build(eval_dirs: Path | list[Path], bench_json: Path, *, recipes: list[str] | None = None,
          flight_recipe: str = "flight", labels: dict[str, str] | None = None) -> dict:
    """Collect every row of the frontier and measure the int8 latency of every recipe's
    split-0 artifact in one interleaved run (``latency_ratio_flight_to_m6``: the
    ``flight_recipe`` artifact against ``paper-m6``'s). ``labels``: display names."""
    from edge_runtime.artifact import load_artifact
    from trainer.run import load_run

    dirs = [eval_dirs] if isinstance(eval_dirs, Path) else list(eval_dirs)
    found = _recipe_rows(dirs, recipes)
    labels = labels or {}
    out: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(),
                 "eval": [str(d) for d in dirs], "rows": []}
    arts = {recipe: d / f"{recipe}-grouped0" / "model" for recipe, (d, _) in found.items()}
    arts = {k: v for k, v in arts.items() if v.is_dir()}
    latency = {}
    if flight_recipe in arts and "paper-m6" in arts:
        d = found[flight_recipe][0]
        run = load_run(d / f"{flight_recipe}-grouped0" / "run", load_model=False)
        X, _ = run.subset("test")
        latency = measure_latency(arts, X)
        out["latency"] = latency
        ref = latency["paper-m6"]["median"]
        out["latency_ratio_flight_to_m6"] = latency[flight_recipe]["median"] / ref
        out["latency_ratios_to_m6"] = {k: v["median"] / ref for k, v in latency.items()}
    for recipe, (_d, rs) in found.items():
        plural = "s" if len(rs) > 1 else ""
        row = {"model": labels.get(recipe, recipe), "recipe": recipe,
               "source": f"{len(rs)} grouped split{plural}, int8 rover path",
               "int8_bytes": rs[0]["tflite_bytes"], "macs": rs[0]["macs"],
               "params": rs[0]["params"]}
        for s in ("0", "15", "30"):
            row[f"top1_{s}"], row[f"sd_{s}"] = mean_sd_pct(rs, f"int8_{s}")
        if recipe in latency:
            row["latency_ms"] = latency[recipe]["median"]
        if recipe in arts:
            row["ops"] = load_artifact(arts[recipe]).manifest.data["model"].get("ops")
        out["rows"].append(row)
    if bench_json.is_file():
        from trainer.model import ModelConfig, count_macs

        bench = json.loads(bench_json.read_text())
        date = bench.get("meta", {}).get("machine", {}).get("date", "")[:10]
        for p in (bench.get("sweep") or {}).get("rows", []):
            if p.get("status") != "ok" or "int8" not in p:
                continue
            cfg = ModelConfig(arch="paper", pool_size=int(p["m"]), pool_layers=int(p["n"]))
            out["rows"].append({
                "model": f"paper m={p['m']} n={p['n']}",
                "source": f"grouped split 0, int8 (make bench {date})",
                "int8_bytes": p["int8_bytes"], "params": p["params"],
                "macs": count_macs(cfg, 97),
                **{f"top1_{s}": 100 * p["int8"][s]["top1"] for s in ("0", "15", "30")},
                "latency_ms_bench": p["latency_ms"]["median"],
            })
        knn = bench.get("knn") or {}
        if knn.get("shifts"):
            out["rows"].append({"model": "k-NN (1, cosine) on raw",
                                "source": f"grouped split 0 (make bench {date})",
                                **{f"top1_{s}": 100 * knn["shifts"][s]["top1"]
                                   for s in ("0", "15", "30")}})
    out["rows"].append({"model": "SVM on raw", "source": "grouped split 0 (results_training.md)",
                        **{f"top1_{s}": v for s, v in SVM_RAW.items()}})
    return out


def table(res: dict) -> str:
    """The markdown frontier table."""
    lines = ["| model | top-1 @0 | @±15 | @±30 | model.tflite B | weights | MACs | int8 ms "
             "| source |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        def acc(s: str, r=r) -> str:
            if f"top1_{s}" not in r:
                return "-"
            sd = r.get(f"sd_{s}")
            return f"{r[f'top1_{s}']:.1f}" + (f" ± {sd:.1f}" if sd is not None else "")

        lat = r.get("latency_ms", r.get("latency_ms_bench"))
        size = f"{r['int8_bytes']:,}" if "int8_bytes" in r else "-"
        weights = f"{r['params']:,}" if "params" in r else "-"
        macs = f"{r['macs'] / 1e6:.2f} M" if "macs" in r else "-"
        ms = f"{lat:.3f}" if lat is not None else "-"
        lines.append(f"| {r['model']} | {acc('0')} | {acc('15')} | {acc('30')} | {size} | "
                     f"{weights} | {macs} | {ms} | {r['source']} |")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Top-1 at 0 / 15 / 30 cm-1 against int8 bytes (log scale, left) and, for the rows whose
    latency was measured in this run, against int8 latency (right). The multi-split rows
    are numbered; the numbers are listed under the plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["rows"] if "int8_bytes" in r]
    new = [r for r in rows if "recipe" in r]  # the multi-split evaluations
    paper = [r for r in rows if "recipe" not in r]
    timed = [r for r in new if "latency_ms" in r]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 5.2), width_ratios=(3, 2))
    for s, marker in (("0", "o"), ("15", "s"), ("30", "^")):
        ax.scatter([r["int8_bytes"] for r in paper], [r[f"top1_{s}"] for r in paper],
                   marker=marker, color="tab:gray", alpha=0.6, label=f"paper m/n sweep @{s}")
        ax.scatter([r["int8_bytes"] for r in new], [r[f"top1_{s}"] for r in new],
                   marker=marker, color="tab:red", s=60, alpha=0.8,
                   label=f"multi-split rover-path eval @{s}")
        bx.scatter([r["latency_ms"] for r in timed], [r[f"top1_{s}"] for r in timed],
                   marker=marker, color="tab:red", s=60, alpha=0.8, label=f"@{s}")
    for i, r in enumerate(new, start=1):
        ax.annotate(str(i), (r["int8_bytes"], r["top1_0"]), fontsize=8,
                    xytext=(5 + 8 * (i % 3), 3), textcoords="offset points")
        if r in timed:
            bx.annotate(str(i), (r["latency_ms"], r["top1_0"]), fontsize=8,
                        xytext=(4, 3 + 5 * (i % 3)), textcoords="offset points")
    if "paper-m6" in res.get("latency", {}):
        bx.axvline(res["latency"]["paper-m6"]["median"], color="gray", ls=":", lw=1)
        bx.text(res["latency"]["paper-m6"]["median"], 5, " paper m=6\n (latency target)",
                fontsize=7, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("model.tflite bytes (int8)")
    ax.set_ylabel("grouped test top-1 % (int8)")
    ax.set_title("Top-1 at 0 / ±15 / ±30 cm⁻¹ vs size")
    bx.set_xlabel("int8 call, ms (one interleaved run, 1 thread)")
    bx.set_title("... vs latency (multi-split rows)")
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.set_ylim(0, 90)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    bx.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.01, "   ".join(f"{i} = {r['model']}" for i, r in enumerate(new, start=1)),
             fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command()
@one_line_errors
@click.option("--eval", "eval_dirs", type=click.Path(file_okay=False, path_type=Path),
              multiple=True, default=(Path("runs/flight/eval"),), show_default=True,
              help="a benchmarks.flight_eval folder (repeatable; a recipe in several comes "
                   "from the first)")
@click.option("--recipes", default=None,
              help="comma-separated recipes to show, in this order (default: all found); "
                   "RECIPE=LABEL names a row")
@click.option("--flight-recipe", default="flight", show_default=True,
              help="the recipe whose latency ratio to paper-m6 is the headline")
@click.option("--bench-json", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "docs" / "benchmarks.json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "docs" / "frontier.json", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "docs" / "img" / "frontier.png", show_default=True)
def main(eval_dirs: tuple[Path, ...], recipes: str | None, flight_recipe: str,
         bench_json: Path, out: Path, plot_path: Path) -> None:
    """Build the frontier table, its JSON and its plot."""
    from benchmarks.common import comma_list

    names, labels = None, {}
    if recipes is not None:
        names = []
        for item in comma_list(recipes, "--recipes", str):
            name, _, label = item.partition("=")
            names.append(name)
            if label:
                labels[name] = label
    res = build(list(eval_dirs), bench_json, recipes=names, flight_recipe=flight_recipe,
                labels=labels)
    out.write_text(json.dumps(res, indent=2) + "\n")
    plot(res, plot_path)
    click.echo(table(res))
    for name, ratio in res.get("latency_ratios_to_m6", {}).items():
        click.echo(f"int8 latency {name} / paper m=6 (same run): {ratio:.2f}x")


if __name__ == "__main__":
    main()
