"""Write ``docs/benchmarks.md`` and its plots from the benchmark results (JSON).

:func:`write_report` is pure presentation: every number comes from the results dict that
:mod:`benchmarks.suite` measured (also written next to the Markdown as JSON), so the report
can be regenerated from the JSON alone: ``python -m benchmarks.report docs/benchmarks.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import write_json

METHOD_LABELS = {
    "int8_invoke": "int8 TFLite, invoke only (int8 in/out)",
    "int8_model": "**int8 TFLite model** (quantise + invoke + dequantise)",
    "int8_classify": "int8 `Classifier.classify_grid` (top-k + unknown check + set)",
    "float32_tflite": "float32 TFLite (XNNPACK)",
    "keras_predict_on_batch": "Keras `predict_on_batch`",
    "keras_tf_function": "Keras `tf.function` call",
    "keras_xla": "Keras `tf.function(jit_compile=True)` (XLA)",
    "knn": "k-NN over reference spectra",
    "floor": "floor: one-op int8 TFLite (ADD)",
    "pre_resample": "preprocessing: resample to grid",
    "pre_normalise": "preprocessing: max-normalise",
    "pre_quantise": "preprocessing: quantise to int8",
    "pre_total": "preprocessing: total",
    "total_raw_to_label": "**total: raw spectrum -> label** (`classify_xy`)",
}
MODEL_ORDER = ("int8_invoke", "int8_model", "int8_classify", "float32_tflite",
               "keras_predict_on_batch", "keras_tf_function", "keras_xla", "knn", "floor")
PRE_ORDER = ("pre_resample", "pre_normalise", "pre_quantise", "pre_total",
             "total_raw_to_label")


def _f(v: Any, fmt: str = ".3f", none: str = "-") -> str:
    if v is None:
        return none
    try:
        return format(float(v), fmt)
    except (TypeError, ValueError):
        return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def evaluate_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The four targets of the default int8 model, from one run's measurements."""
    out = []
    lat = (res.get("latency") or {}).get("1") or {}
    meth = lat.get("methods", {})
    ref = meth.get("int8_model", {}).get("median")
    keras = {k: meth[k]["median"] for k in ("keras_predict_on_batch", "keras_tf_function",
                                            "keras_xla") if meth.get(k, {}).get("n")}
    if ref and keras:
        best = min(keras, key=keras.get)
        sp = keras[best] / ref
        out.append({"target": ">= 5x faster than the fastest Keras path (batch 1, 1 thread)",
                    "measured": f"{sp:.1f}x (int8 model {ref:.3f} ms vs {METHOD_LABELS[best]} "
                                f"{keras[best]:.3f} ms)", "value": sp, "ok": sp >= 5.0})
    inv, flo = meth.get("int8_invoke", {}).get("median"), meth.get("floor", {}).get("median")
    if inv and flo:
        r = inv / flo
        out.append({"target": "within 3x of the trivial-model floor (invoke, 1 thread)",
                    "measured": f"{r:.0f}x ({inv * 1e3:.0f} us vs floor {flo * 1e3:.1f} us)",
                    "value": r, "ok": r <= 3.0})
    mem = res.get("memory") or {}
    rss = []
    if mem.get("probe"):
        rss.append(("edge-only script", mem["probe"]["peak_rss_mib"]["max"] * 1.048576))
    if mem.get("classify_cli"):
        rss.append(("`ramanedge classify`", mem["classify_cli"]["peak_rss_mib"]["max"]
                    * 1.048576))
    if rss:
        worst = max(rss, key=lambda t: t[1])
        out.append({"target": "peak RSS <= 60 MB (load + classify 100 spectra, fresh process)",
                    "measured": "; ".join(f"{n} {v:.1f} MB" for n, v in rss)
                    + " (max over runs)", "value": worst[1], "ok": worst[1] <= 60.0})
    if mem.get("probe"):
        cs = mem["probe"]["median"]["spawn_to_first_s"]
        out.append({"target": "cold start <= 1.5 s (spawn -> first result, median)",
                    "measured": f"{cs:.2f} s (import {mem['probe']['median']['import_s']:.2f} "
                                f"+ load {mem['probe']['median']['load_s']:.2f} + first "
                                f"{1e3 * mem['probe']['median']['first_inference_s']:.0f} ms, "
                                "rest = interpreter start-up)",
                    "value": cs, "ok": cs <= 1.5})
    return out


def _latency_table(res: dict[str, Any], order: tuple[str, ...]) -> list[str]:
    lat = res.get("latency") or {}
    threads = sorted(lat, key=int)
    head = "| method | " + " | ".join(
        f"{t} thr median ms | {t} thr p99 ms | {t} thr x int8" for t in threads) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(threads))]
    for k in order:
        cells = []
        present = False
        for t in threads:
            m = lat[t]["methods"].get(k)
            if m and m.get("n"):
                present = True
                cells += [_f(m["median"], ".4f"), _f(m["p99"], ".3f"),
                          _f(lat[t]["ratios"].get(k), ".2f")]
            else:
                cells += ["-", "-", "-"]
        if present:
            lines.append(f"| {METHOD_LABELS.get(k, k)} | " + " | ".join(cells) + " |")
    return lines


def plot_latency(res: dict[str, Any], path: Path) -> None:
    """Horizontal bars of median latency per method (log scale), one colour per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lat = res.get("latency") or {}
    threads = sorted(lat, key=int)
    keys = [k for k in MODEL_ORDER + PRE_ORDER
            if any(lat[t]["methods"].get(k, {}).get("n") for t in threads)]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(keys) + 1.5))
    h = 0.8 / max(1, len(threads))
    for j, t in enumerate(threads):
        vals = [lat[t]["methods"].get(k, {}).get("median", np.nan) for k in keys]
        ax.barh(np.arange(len(keys)) + j * h, vals, height=h, label=f"{t} thread(s)")
    ax.set_yticks(np.arange(len(keys)) + h * (len(threads) - 1) / 2)
    ax.set_yticklabels([METHOD_LABELS.get(k, k).replace("*", "").replace("`", "")
                        for k in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median latency per spectrum, ms (log scale)")
    ax.set_title("batch-1 latency on real test spectra (shared 2-core machine)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], shift_png: Path, trade_png: Path) -> None:
    """Accuracy vs shift (one line per m, one panel per n) and accuracy vs size/latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("int8")]
    if not ok:
        return
    ns = sorted({r["n"] for r in ok})
    shifts = sorted(int(s) for s in ok[0]["int8"])
    cmap = plt.get_cmap("viridis")
    ms = sorted({r["m"] for r in ok})
    colour = {m: cmap(i / max(1, len(ms) - 1)) for i, m in enumerate(ms)}
    fig, axes = plt.subplots(1, len(ns), figsize=(4.6 * len(ns), 3.8), sharey=True,
                             squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        for r in sorted((r for r in ok if r["n"] == n), key=lambda r: r["m"]):
            ax.plot(shifts, [100 * r["int8"][str(s)]["top1"] for s in shifts], "o-",
                    color=colour[r["m"]], label=f"m={r['m']}")
            ax.plot(shifts, [100 * r["float"][str(s)]["top1"] for s in shifts], ":",
                    color=colour[r["m"]], alpha=0.6)
        ax.set_title(f"n = {n} pooling layers")
        ax.set_xlabel("x-shift, cm-1")
        ax.set_xticks(shifts)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test top-1, % (int8 solid, float dotted)")
    fig.tight_layout()
    shift_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(shift_png, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    marker = {1: "s", 2: "^", 3: "o"}
    for r in ok:
        for ax, xv in zip(axes, (r["int8_bytes"] / 1024, r["latency_ms"]["median"]),
                          strict=True):
            for s, alpha in ((0, 1.0), (15, 0.45)):
                ax.scatter(xv, 100 * r["int8"][str(s)]["top1"], color=colour[r["m"]],
                           marker=marker.get(r["n"], "o"), alpha=alpha, s=40)
            ax.annotate(f"m{r['m']}n{r['n']}", (xv, 100 * r["int8"]["0"]["top1"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("int8 model.tflite size, KiB (log)")
    axes[1].set_xlabel("int8 median latency, ms (1 thread)")
    for ax in axes:
        ax.set_ylabel("int8 test top-1, % (solid: shift 0, faded: 15 cm-1)")
        ax.grid(alpha=0.3)
    fig.suptitle("pooling sweep: accuracy vs int8 size and latency (o n=3, ^ n=2, s n=1)")
    fig.tight_layout()
    fig.savefig(trade_png, dpi=110)
    plt.close(fig)


_MEMORY_NOTES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("probe", "rss_phases_mib"),
     "Resident memory inside the probe (median): interpreter start {start:.1f} MiB, after "
     "`import edge_runtime.classify` {after_import:.1f} MiB, after loading the artifact (LiteRT "
     "imported, interpreter made) {after_load:.1f} MiB (high-water {hwm_after_load:.1f} MiB), "
     "at the end {end:.1f} MiB."),
    (("probe_no_unknown",),
     "Same probe without the artifact's unknown-mineral rule (`Classifier(..., unknown=None)`, "
     "{repeats} runs): peak RSS {peak_rss_mib[median]:.1f} MiB (max {peak_rss_mib[max]:.1f}), "
     "cold start {median[spawn_to_first_s]:.3f} s, later spectra "
     "{median[per_spectrum_rest_ms]:.2f} ms each."),
    (("classify_cli",),
     "`{command}` on the same {n_files} files ({n_classified} classified), {repeats} runs: wall "
     "{wall_s_median:.2f} s, peak RSS {peak_rss_mib[median]:.1f} MiB (max "
     "{peak_rss_mib[max]:.1f}) (`os.wait4` of that process)."),
)
"""The sentences under the memory table: where each one's record is in ``res["memory"]`` and
its template (``str.format`` of that record); a record that is absent drops its sentence."""


def _memory_section(mem: dict[str, Any]) -> list[str]:
    """The "Memory and start-up" section: the edge-only probe (a table of its median figures
    and its memory phases), the probe without the unknown rule, and ``ramanedge classify``."""
    L = ["## Memory and start-up (edge-only processes)", ""]
    p = mem.get("probe")
    if p:
        md, rss = p["median"], p["peak_rss_mib"]
        rows = [("cold start: spawn -> first result", f"{md['spawn_to_first_s']:.3f} s"),
                ("of which import `edge_runtime`", f"{md['import_s']:.3f} s"),
                ("of which load artifact + interpreter", f"{md['load_s']:.3f} s"),
                ("of which first read + preprocess + classify",
                 f"{1e3 * md['first_inference_s']:.1f} ms"),
                ("later spectra (read + preprocess + classify)",
                 f"{md['per_spectrum_rest_ms']:.2f} ms each"),
                (f"whole process ({p['n_files']} spectra)", f"{md['process_wall_s']:.2f} s"),
                ("peak RSS after the first result", f"{p['peak_rss_after_first_mib']:.1f} MiB"),
                ("peak RSS (all spectra)", f"{rss['median']:.1f} MiB (max {rss['max']:.1f})")]
        L += [f"`python -m benchmarks.edge_probe` imports only `edge_runtime` (heavy modules "
              f"imported: {p['heavy_modules_imported'] or 'none'}), loads the artifact "
              f"(manifest + sha256 checks + interpreter) and reads, preprocesses and "
              f"classifies {p['n_files']} real spectrum files; {p['repeats']} fresh "
              "processes, file cache warm.", "", "| figure | median |", "|---|---:|"]
        L += [f"| {name} | {value} |" for name, value in rows] + [""]
    for where, template in _MEMORY_NOTES:
        record = mem.get(where[0])
        for key in where[1:]:
            record = (record or {}).get(key)
        if record:
            L += [template.format(**record), ""]
    return L


def render(res: dict[str, Any], extra_sections: tuple[str, ...] = ()) -> str:
    """The Markdown text of the report; ``extra_sections`` (Markdown) go before
    "Reproduce" (the uplink and hardware-profile benches, :data:`COMPANIONS`)."""
    meta = res.get("meta", {})
    mach = meta.get("machine", {})
    L: list[str] = ["# Benchmarks", ""]
    L += [f"Generated by `{meta.get('command', 'ramanedge bench')}` on {mach.get('date')} "
          f"(mode: {meta.get('mode')}, {_f(meta.get('wall_s'), '.0f')} s), "
          f"git `{meta.get('git')}`.", "",
          f"Machine: {mach.get('machine')}, {mach.get('cores')} cores ({mach.get('cpu')}), "
          f"{mach.get('mem_total_mib')} MiB RAM, {mach.get('platform')}, Python "
          f"{mach.get('python')}; load average at start {mach.get('load_average')}. "
          "**The machine is shared with other engineers training models: absolute times are "
          "noisy; medians and ratios measured in the same process (methods interleaved round "
          "by round) are the reliable figures.**", "",
          f"Versions: {', '.join(f'{k} {v}' for k, v in meta.get('versions', {}).items())}.",
          "",
          f"Model: `{meta.get('model')}` (run `{meta.get('run')}`; "
          f"{meta.get('model_summary', '')}). Test spectra: {meta.get('n_test')} of the run's "
          "held-out test split (real RRUFF LR-Raman raw spectra).", ""]
    if meta.get("notes"):
        L += ["Notes:", ""] + [f"- {n}" for n in meta["notes"]] + [""]

    targets = res.get("targets") or []
    if targets:
        L += ["## Targets (default int8 model, one run)", "",
              "| target | measured | met |", "|---|---|---|"]
        for t in targets:
            L.append(f"| {t['target']} | {t['measured']} | {'yes' if t['ok'] else '**no**'} |")
        L.append("")
        for t in targets:
            if not t["ok"] and t.get("why"):
                L.append(f"- **Missed: {t['target']}.** {t['why']}")
        L.append("")

    if res.get("latency"):
        lat1 = res["latency"].get("1", {})
        info = lat1.get("info", {})
        L += ["## Latency (batch 1)", "",
              f"{lat1.get('n_items')} test spectra x {lat1.get('rounds')} rounds per method "
              f"after {lat1.get('warmup')} warm-up calls; every method is called once per "
              "spectrum in turn, rounds interleaved. Ratios are to the int8 model "
              "(quantise + invoke + dequantise) measured in the same process. TensorFlow "
              "intra/inter-op threads and BLAS threads = the thread count. k-NN: "
              f"{info.get('knn', {})}.", ""]
        L += _latency_table(res, MODEL_ORDER) + [""]
        L += ["Preprocessing of the raw spectra (as read from the RRUFF files, median "
              f"{_f(info.get('raw_points_median'), '.0f')} points) and the total:", ""]
        L += _latency_table(res, PRE_ORDER) + [""]
        if res.get("model_macs"):
            mm = res["model_macs"]
            inv = lat1.get("methods", {}).get("int8_invoke", {}).get("median")
            L += [f"The model does {mm['macs'] / 1e6:.2f} M multiply-accumulates per spectrum "
                  f"(conv {mm['conv'] / 1e6:.2f} M, dense {mm['dense'] / 1e6:.2f} M); at the "
                  f"measured int8 invoke time that is "
                  f"{(mm['macs'] / (inv * 1e-3) / 1e9) if inv else float('nan'):.1f} "
                  "GMAC/s on one core.", ""]
        for o in res.get("observations") or []:
            L.append(f"- {o}")
        if res.get("observations"):
            L.append("")
        L += ["![latency](img/bench_latency.png)", ""]

    if res.get("memory"):
        L += _memory_section(res["memory"])

    sz = res.get("sizes")
    if sz:
        L += ["## Sizes", "", f"Artifact `{sz['folder']}`:", "", "| file | bytes | KiB |",
              "|---|---:|---:|"]
        for k, v in sz["files"].items():
            L.append(f"| `{k}` | {v:,} | {v / 1024:.1f} |")
        if sz.get("keras_model_bytes"):
            v = sz["keras_model_bytes"]
            L.append(f"| (`model.keras` of the run, for comparison) | {v:,} | {v / 1024:.1f} |")
        L.append("")
        if sz.get("ratio_float32_to_int8"):
            L += [f"float32 TFLite / int8 TFLite = {sz['ratio_float32_to_int8']:.2f}x. What "
                  f"goes onto the rover (all but the comparison variants): "
                  f"{sz['deploy_bytes'] / 1024:.1f} KiB.", ""]

    acc = res.get("accuracy")
    if acc:
        L += ["## Accuracy: float vs int8", "",
              f"Test split, {acc['n_test']} spectra; accuracy at shift s is the mean of +s and "
              "-s cm-1 (edge-padded); agreement = same top-1 as the Keras model at shift 0.",
              "", "| model | " + " | ".join(f"top-1 @{s} | top-3 @{s}" for s in acc["shifts"])
              + " | agreement |", "|---|" + "---:|" * (2 * len(acc["shifts"]) + 1)]
        for name, row in acc["models"].items():
            cells = []
            for s in acc["shifts"]:
                cells += [_pct(row[str(s)]["top1"]), _pct(row[str(s)]["top3"])]
            L.append(f"| {name} | " + " | ".join(cells)
                     + f" | {_pct(row.get('agreement_with_first'))} |")
        L.append("")

    sw = res.get("sweep")
    if sw:
        rows = sw.get("rows", [])
        L += ["## Pooling sweep (m x n)", "", sw.get("description", ""), "",
              "| m | n | params | int8 KiB | int8 ms (median, 1 thr) | int8 top-1 @0/15/30 | "
              "float top-1 @0/15/30 | gate | run |", "|---:|---:|---:|---:|---:|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["n"], r["m"])):
            if not r.get("int8"):
                L.append(f"| {r['m']} | {r['n']} | - | - | - | - | - | - | {r['status']} |")
                continue
            i8 = "/".join(_pct(r["int8"][s]["top1"]) for s in ("0", "15", "30"))
            fl = "/".join(_pct(r["float"][s]["top1"]) for s in ("0", "15", "30"))
            L.append(f"| {r['m']} | {r['n']} | {r['params']:,} | {r['int8_bytes'] / 1024:.0f} | "
                     f"{r['latency_ms']['median']:.3f} | {i8} | {fl} | "
                     f"{'pass' if r['gate_passed'] else 'fail'} | `{r['run']}`"
                     f"{' (reused)' if r.get('reused_run') else ''} |")
        L += ["", "![sweep: accuracy vs shift](img/sweep_shift.png)", "",
              "![sweep: accuracy vs size and latency](img/sweep_tradeoff.png)", ""]

    hc = res.get("head_retrain")
    if hc:
        L += ["## Onboard head retraining cost", "",
              f"Edge-only process, 1 thread (`OPENBLAS_NUM_THREADS=1`). Fresh head store per "
              f"c; {hc['rows'][0]['shots']} spectra of each of c minerals the model never saw "
              f"(held out by `load_heldout`: {', '.join(hc['minerals'][:5])}, ...), stored with "
              "`HeadStore.add_sample`, then `HeadStore.retrain()` (artifact exemplars + "
              "samples, anchored L-BFGS softmax, head written and activated); median of "
              f"{len(hc['rows'][0]['retrain_s_all'])} retrains.", "",
              "| new minerals c | samples | exemplars | classes after | retrain s (median) | "
              "of which fit s | L-BFGS iterations | add one spectrum ms |",
              "|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in hc["rows"]:
            L.append(f"| {r['new_classes']} | {r['n_samples']} | {r['n_exemplars']} | "
                     f"{r['n_classes_after']} | {r['retrain_s_median']:.3f} | "
                     f"{r['fit_s_median']:.3f} | {r['n_iter']} | "
                     f"{r['add_sample_ms_median']:.1f} |")
        L.append("")
        if hc.get("note"):
            L += [hc["note"], ""]

    se = res.get("serial")
    if se:
        L += ["## Serial link (device simulator)", "",
              "`ramanedge sim replay`: the test split's raw spectra (cropped to the model "
              "window) sent to a separate `ramanedge device serve` process over a pty pair, "
              "paced to the baud rate (10 bits/byte), device pinned to 1 core, 1 thread.", "",
              "| baud | spectra | top-1 % | latency p50 / p99 ms | wire p50 ms | device compute "
              "p50 ms | overhead p50 ms | request / response bytes | spectra/s | device peak "
              "RSS MiB |", "|---:|---:|---:|---|---:|---:|---:|---|---:|---:|"]
        for r in se:
            lat = r["latency_ms"]
            L.append(f"| {r['baud']} | {r['answered']}/{r['spectra']} | {_pct(r['top1'])} | "
                     f"{_f(lat.get('p50'), '.1f')} / {_f(lat.get('p99'), '.1f')} | "
                     f"{_f(r['wire_ms'].get('p50'), '.1f')} | "
                     f"{_f(r['device_compute_ms'].get('p50'), '.2f')} | "
                     f"{_f(r['overhead_ms'].get('p50'), '.2f')} | "
                     f"{_f(r['request_bytes_p50'], '.0f')} / {_f(r['response_bytes_p50'], '.0f')}"
                     f" | {_f(r['spectra_per_s'], '.1f')} | {_f(r['device_peak_rss_mib'], '.1f')}"
                     " |")
        L.append("")
        for r in se:
            L.append(f"- {r['baud']} baud: `{r['command']}`")
        L.append("")
        for r in se:
            if r.get("plot"):
                L.append(f"![serial {r['baud']}]({r['plot']})")
        L.append("")

    demo = res.get("demo")
    if demo:
        L += ["## Demo (`make demo`)", "",
              f"`{demo.get('command')}` on {demo.get('date')}: **{demo.get('wall_s', 0):.0f} s "
              f"wall** ({demo.get('wall_s', 0) / 60:.1f} min; limit 15 min) on the same shared "
              "machine" + {True: ", from a fresh copy of the repository (no `.cache/`: every "
                                 "cache built during the run)",
                           False: ", caches of earlier runs present"}.get(
                  demo.get("cold_cache"), "") + ".", "", "| step | seconds |", "|---|---:|"]
        for s in demo.get("steps", []):
            L.append(f"| {s['name']} | {s['seconds']:.1f} |")
        L.append("")
        if demo.get("summary"):
            L += [f"{demo['summary']}", ""]

    for section in extra_sections:
        L += [section.rstrip("\n"), ""]
    L += ["## Reproduce", "", "```", "make bench            # = python -m ramanedge.cli bench "
          "--data ../shared/data/rruff", "ramanedge bench --quick --skip-train   # minutes: "
          "reuse runs, short timing, serial on a subset",
          "ramanedge bench --smoke --out /tmp/b   # seconds-scale check (CI runs "
          "tests/test_bench_smoke.py)", "make demo", "```", "",
          "All numbers above are in the JSON file next to this one (same run)."]
    return "\n".join(L) + "\n"


#: Benchmarks with their own JSON next to ``benchmarks.md`` (written by their own command,
#: so that ``make bench`` keeps them): file name -> module whose ``section(json)`` renders it.
COMPANIONS = {"uplink.json": "benchmarks.uplink", "profiles.json": "benchmarks.profiles"}


def companion_sections(folder: Path) -> tuple[str, ...]:
    """The Markdown sections of the :data:`COMPANIONS` found in ``folder``."""
    import importlib

    out = []
    for name, module in COMPANIONS.items():
        path = Path(folder) / name
        if path.is_file():
            out.append(importlib.import_module(module).section(json.loads(path.read_text())))
    return tuple(out)


def rerender(folder: Path) -> Path | None:
    """Re-render ``folder/benchmarks.md`` from its JSON (after a companion bench wrote its
    own JSON there); ``None`` when the folder holds no ``benchmarks.json``."""
    src = Path(folder) / "benchmarks.json"
    if not src.is_file():
        return None
    return write_report(json.loads(src.read_text()), src.with_suffix(".md"))["md"]


def write_report(res: dict[str, Any], md_path: Path, json_path: Path | None = None,
                 img_dir: Path | None = None) -> dict[str, Path]:
    """Write the Markdown (and JSON, plots) of ``res``; returns the written paths."""
    md_path = Path(md_path)
    img_dir = Path(img_dir) if img_dir is not None else md_path.parent / "img"
    paths: dict[str, Path] = {}
    if res.get("latency"):
        paths["latency_png"] = img_dir / "bench_latency.png"
        plot_latency(res, paths["latency_png"])
    if res.get("sweep") and res["sweep"].get("rows"):
        paths["sweep_shift_png"] = img_dir / "sweep_shift.png"
        paths["sweep_trade_png"] = img_dir / "sweep_tradeoff.png"
        plot_sweep(res["sweep"]["rows"], paths["sweep_shift_png"], paths["sweep_trade_png"])
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(render(res, companion_sections(md_path.parent)), encoding="utf-8")
    paths["md"] = md_path
    if json_path is not None:
        write_json(Path(json_path), res)
        paths["json"] = Path(json_path)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.report RESULTS.json [OUT.md]``: re-render a report."""
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else Path("docs/benchmarks.json")
    out = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".md")
    res = json.loads(src.read_text())
    print(write_report(res, out)["md"])


if __name__ == "__main__":
    main()
