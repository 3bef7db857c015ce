"""The accuracy / size / compute / latency frontier: the paper's m sweep vs the flight family.

Reads the multi-split rover-path evaluations (:mod:`benchmarks.flight_eval`, ``eval.jsonl``),
the paper family's pooling sweep (``docs/benchmarks.json``, written by ``make bench``), the
k-NN baseline there and the SVM figures of ``docs/parts/results_training.md``; measures the
int8 latency of the flight artifact against the paper m = 6 artifact *in one run*
(interleaved, 1 thread, quantise + invoke + dequantise, same test spectra); writes
``docs/frontier.json`` and the plot ``docs/img/frontier.png`` and prints the markdown table
that ``docs/results.md`` carries.

    python -m benchmarks.frontier --eval runs/flight/eval
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import REPO, int8_call, interleaved, mean_sd_pct, stats_ms
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


def build(eval_dir: Path, bench_json: Path) -> dict:
    """Collect every row of the frontier (and measure the latency pair)."""
    from edge_runtime.artifact import load_artifact
    from trainer.run import load_run

    rows = [json.loads(line) for line in (eval_dir / "eval.jsonl").read_text().splitlines()
            if line]
    out: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "rows": []}
    flight_art = eval_dir / "flight-grouped0" / "model"
    paper_art = eval_dir / "paper-m6-grouped0" / "model"
    latency = {}
    if flight_art.is_dir() and paper_art.is_dir():
        run = load_run(eval_dir / "flight-grouped0" / "run", load_model=False)
        X, _ = run.subset("test")
        latency = measure_latency({"flight": flight_art, "paper-m6": paper_art}, X)
        out["latency"] = latency
        out["latency_ratio_flight_to_m6"] = (latency["flight"]["median"]
                                             / latency["paper-m6"]["median"])
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == recipe and r["split"] == "grouped"]
        if not rs:
            continue
        plural = "s" if len(rs) > 1 else ""
        row = {"model": recipe, "source": f"{len(rs)} grouped split{plural}, int8 rover path",
               "int8_bytes": rs[0]["tflite_bytes"], "macs": rs[0]["macs"],
               "params": rs[0]["params"]}
        for s in ("0", "15", "30"):
            row[f"top1_{s}"], row[f"sd_{s}"] = mean_sd_pct(rs, f"int8_{s}")
        if recipe in latency:
            row["latency_ms"] = latency[recipe]["median"]
        art = eval_dir / f"{recipe}-grouped0" / "model"
        if art.is_dir():
            row["ops"] = load_artifact(art).manifest.data["model"].get("ops")
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
    """Top-1 at 0 / 15 / 30 cm-1 against int8 bytes (log scale), one marker per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["rows"] if "int8_bytes" in r]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s, marker in (("0", "o"), ("15", "s"), ("30", "^")):
        paper = [r for r in rows if r["model"].startswith("paper m=")]
        ax.scatter([r["int8_bytes"] for r in paper], [r[f"top1_{s}"] for r in paper],
                   marker=marker, color="tab:gray", alpha=0.7,
                   label=f"paper m/n sweep @{s}")
        new = [r for r in rows if not r["model"].startswith("paper m=")]
        ax.scatter([r["int8_bytes"] for r in new], [r[f"top1_{s}"] for r in new],
                   marker=marker, color="tab:red", s=70,
                   label=f"flight / paper-m6, multi-split eval @{s}")
        for r in new:
            ax.annotate(r["model"], (r["int8_bytes"], r[f"top1_{s}"]), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model.tflite bytes (int8)")
    ax.set_ylabel("grouped test top-1 % (int8)")
    ax.set_title("Accuracy at 0 / ±15 / ±30 cm⁻¹ shift vs model size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command()
@click.option("--eval", "eval_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/flight/eval"), show_default=True)
@click.option("--bench-json", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "docs" / "benchmarks.json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=REPO / "docs" / "frontier.json", show_default=True)
def main(eval_dir: Path, bench_json: Path, out: Path) -> None:
    """Build the frontier table, its JSON and its plot."""
    res = build(eval_dir, bench_json)
    out.write_text(json.dumps(res, indent=2) + "\n")
    plot(res, REPO / "docs" / "img" / "frontier.png")
    click.echo(table(res))
    if "latency_ratio_flight_to_m6" in res:
        click.echo(f"int8 latency flight / paper m=6 (same run): "
                   f"{res['latency_ratio_flight_to_m6']:.2f}x")


if __name__ == "__main__":
    main()
