"""Few-label experiment: supervised-only vs contrastive pretraining vs SGAN on rruff-raw.

For every (labelled fraction, seed, method) cell, the grouped split of rruff-raw (seed 0) is
kept, the training labels are thinned with :func:`trainer.ssl.labelled_fraction_mask`
(``label_seed = seed``) and the model trained with :func:`trainer.ssl.train_ssl`; top-1/top-3
on the grouped test split are appended as one JSON line to ``--out`` (so an interrupted
experiment keeps its finished cells, and a restart skips them). Contrastive pretraining uses
no labels, so it is done once per seed and shared by all fractions.

Usage::

    python -m benchmarks.ssl_experiment run --out /tmp/ssl_results.jsonl
    python -m benchmarks.ssl_experiment report --results /tmp/ssl_results.jsonl \
        --plot docs/img/ssl_accuracy.png
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from benchmarks.common import read_jsonl

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_FRACTIONS = (0.1, 1.0, 0.3, 0.2, 0.4, 0.5)
METHODS = ("none", "contrastive", "sgan")
AUG_CONTROL = "none-aug"
"""Control: supervised only, with training augmentation of the same kinds as the contrastive
views (trainer.augment: shift 6 cm-1, noise 0.01, quadratic baseline 0.3, gain ramp 0.2), to
separate the effect of the unlabelled spectra from that of augmentation. Any method name with
the suffix ``-aug`` (e.g. ``contrastive-aug``) trains/fine-tunes with that augmentation."""


def _done(path: Path) -> set[tuple[float, int, str]]:
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out.add((float(r["fraction"]), int(r["seed"]), r["method"]))
    return out


@click.group()
def cli() -> None:
    """Few-label (SSL) experiment on rruff-raw."""


@cli.command("run")
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--fractions", default=",".join(map(str, DEFAULT_FRACTIONS)), show_default=True)
@click.option("--methods", default=",".join(METHODS), show_default=True,
              help=f"Comma-separated, of {', '.join(METHODS)}, each optionally with -aug "
                   f"(e.g. {AUG_CONTROL}).")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--monitor", type=click.Choice(["val_accuracy", "val_loss"]),
              default="val_accuracy", show_default=True,
              help="Validation metric of the plateau/early-stop rules (paper: val_loss).")
@click.option("--epochs", type=int, default=60, show_default=True,
              help="Max epochs of supervised training / fine-tuning (paper recipe).")
@click.option("--pretrain-epochs", type=int, default=60, show_default=True)
@click.option("--sgan-epochs", type=int, default=60, show_default=True)
@click.option("--dense-units", type=int, default=None, help="Override ModelConfig.dense_units.")
@click.option("--pool-size", type=int, default=8, show_default=True,
              help="Pooling size m (8: the project default when the grid was run).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSONL results.")
def run(data_root, fractions, methods, seeds, monitor, epochs, pretrain_epochs, sgan_epochs,
        dense_units, pool_size, out) -> None:
    """Run the grid (fraction-major, so the most important cells finish first)."""
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split, specimen_groups
    from trainer.augment import AugmentConfig
    from trainer.contrastive import pretrain_contrastive
    from trainer.evaluate import topk_accuracy
    from trainer.model import ModelConfig
    from trainer.ssl import SSLConfig, hide_labels, labelled_fraction_mask, train_ssl
    from trainer.train import PAPER_TRAIN, predict_probs

    fr = [float(f) for f in fractions.split(",")]
    ms = [m.strip() for m in methods.split(",")]
    sd = [int(s) for s in seeds.split(",")]
    ds = build_dataset(data_root, "rruff-raw")
    split = np.asarray(make_split(ds, "grouped", seed=0))
    tr, va, te = (split == s for s in ("train", "val", "test"))
    groups = specimen_groups(ds)
    K = len(ds.labels)
    mc = ModelConfig(arch="paper", pool_size=pool_size)
    if dense_units is not None:
        mc = replace(mc, dense_units=dense_units)
    done = _done(out)
    pretrained: dict[int, dict] = {}
    click.echo(f"{len(ds.y)} spectra, {K} minerals, {int(tr.sum())} train / {int(va.sum())} "
               f"val / {int(te.sum())} test; model {mc}")
    for f in fr:
        for seed in sd:
            mask = labelled_fraction_mask(ds.y[tr], groups[tr], f, seed)
            y_masked = hide_labels(ds.y[tr], mask)
            for m in ms:
                if (f, seed, m) in done:
                    continue
                tc = replace(PAPER_TRAIN, epochs=epochs, seed=seed, monitor=monitor)
                if m.endswith("-aug"):
                    tc = replace(tc, augment=AugmentConfig(shift_cm=6, noise_std=0.01,
                                                           baseline=0.3, scale=0.2))
                cfg = SSLConfig(method=m.removesuffix("-aug"),
                                labelled_fraction=f, label_seed=seed,
                                pretrain_epochs=pretrain_epochs, sgan_epochs=sgan_epochs)
                t0 = time.perf_counter()
                if m.startswith("contrastive") and seed not in pretrained:
                    pretrained[seed] = pretrain_contrastive(ds.X[tr], mc, cfg, seed=seed,
                                                            log=None)
                    click.echo(f"pretrained seed {seed} in {time.perf_counter() - t0:.0f} s")
                res = train_ssl(ds.X[tr], y_masked, ds.X[va], ds.y[va], K, mc, tc, cfg,
                                pretrained=pretrained.get(seed), log=None)
                probs = predict_probs(res.model, ds.X[te])
                row = {
                    "fraction": f, "seed": seed, "method": m,
                    "n_labelled": int(mask.sum()),
                    "n_labelled_specimens": len(set(groups[tr][mask])),
                    "top1": topk_accuracy(probs, ds.y[te], 1),
                    "top3": topk_accuracy(probs, ds.y[te], 3),
                    "val_top1": topk_accuracy(predict_probs(res.model, ds.X[va]), ds.y[va], 1),
                    "epochs": res.epochs_run, "best_epoch": res.best_epoch,
                    "seconds": time.perf_counter() - t0,
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()} {os.cpu_count()} cpu",
                    "model": mc.to_dict(),
                    "pretrain_epochs": pretrain_epochs, "sgan_epochs": sgan_epochs,
                    "max_epochs": epochs, "monitor": monitor,
                }
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                click.echo(f"f={f:g} seed={seed} {m:12s} top-1 {100 * row['top1']:.1f} "
                           f"top-3 {100 * row['top3']:.1f} ({row['n_labelled']} labelled, "
                           f"{row['epochs']} ep, {row['seconds']:.0f} s)")


def summarise(rows: list[dict]) -> dict[tuple[float, str], dict]:
    """Mean/std (over seeds) of top-1/top-3 per (fraction, method)."""
    cells: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        cells.setdefault((float(r["fraction"]), r["method"]), []).append(r)
    out = {}
    for key, rs in cells.items():
        t1 = np.array([r["top1"] for r in rs]) * 100
        t3 = np.array([r["top3"] for r in rs]) * 100
        out[key] = {"n": len(rs), "top1": t1.mean(), "top1_std": t1.std(ddof=1) if len(rs) > 1
                    else float("nan"), "top3": t3.mean(),
                    "top3_std": t3.std(ddof=1) if len(rs) > 1 else float("nan"),
                    "n_labelled": float(np.mean([r["n_labelled"] for r in rs])),
                    "seconds": float(np.mean([r["seconds"] for r in rs])),
                    "epochs": float(np.mean([r["epochs"] for r in rs]))}
    return out


@cli.command("report")
@click.option("--results", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--plot", type=click.Path(path_type=Path), default=None)
def report(results, plot) -> None:
    """Markdown table (mean ± std over seeds) and an accuracy-vs-fraction plot."""
    rows = read_jsonl(results)
    summ = summarise(rows)
    fracs = sorted({k[0] for k in summ})
    all_methods = [*METHODS] + sorted({k[1] for k in summ} - set(METHODS))
    click.echo("| labelled fraction | labelled spectra (mean) | method | seeds | top-1 % | "
               "top-3 % | epochs | s/run |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for f in fracs:
        for m in all_methods:
            c = summ.get((f, m))
            if c is None and m not in METHODS:
                continue
            if c is None:
                click.echo(f"| {100 * f:g}% | | {m} | not run | | | | |")
                continue
            click.echo(f"| {100 * f:g}% | {c['n_labelled']:.0f} | {m} | {c['n']} | "
                       f"{c['top1']:.1f} ± {c['top1_std']:.1f} | "
                       f"{c['top3']:.1f} ± {c['top3_std']:.1f} | {c['epochs']:.0f} | "
                       f"{c['seconds']:.0f} |")
    click.echo("")
    click.echo("| labelled fraction | method | top-1 gain over none, per seed (points) | mean |")
    click.echo("|---|---|---|---|")
    by = {(float(r["fraction"]), r["method"], int(r["seed"])): 100 * r["top1"] for r in rows}
    for f in fracs:
        for m in all_methods[1:]:
            seeds = sorted(s for (ff, mm, s) in by if ff == f and mm == m and (f, "none", s) in by)
            if not seeds:
                continue
            d = [by[(f, m, s)] - by[(f, "none", s)] for s in seeds]
            click.echo(f"| {100 * f:g}% | {m} | " + ", ".join(f"{x:+.1f}" for x in d)
                       + f" | {np.mean(d):+.1f} |")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for m in all_methods:
            pts = [(f, summ[(f, m)]) for f in fracs if (f, m) in summ]
            if not pts:
                continue
            x = [100 * f for f, _ in pts]
            ax.errorbar(x, [c["top1"] for _, c in pts],
                        yerr=[0 if np.isnan(c["top1_std"]) else c["top1_std"] for _, c in pts],
                        marker="o", capsize=3, label=m,
                        ls=":" if m.endswith("-aug") else "-")
        ax.set_xlabel("labelled fraction of training specimens (%)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title("rruff-raw, grouped test split (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=110)
        click.echo(f"wrote {plot}")


@cli.command("generated")
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--fraction", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sgan-epochs", type=int, default=60, show_default=True)
@click.option("--pool-size", type=int, default=8, show_default=True)
@click.option("--plot", type=click.Path(path_type=Path), required=True)
def generated(data_root, fraction, seed, sgan_epochs, pool_size, plot) -> None:
    """Train one SGAN cell and plot generated spectra next to real training spectra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ramanedge.dataset import build_dataset
    from ramanedge.grid import GRID
    from ramanedge.splits import make_split, specimen_groups
    from trainer.model import ModelConfig
    from trainer.ssl import SSLConfig, hide_labels, labelled_fraction_mask, train_ssl
    from trainer.train import PAPER_TRAIN

    ds = build_dataset(data_root, "rruff-raw")
    split = np.asarray(make_split(ds, "grouped", seed=0))
    tr, va = split == "train", split == "val"
    groups = specimen_groups(ds)
    mask = labelled_fraction_mask(ds.y[tr], groups[tr], fraction, seed)
    tc = replace(PAPER_TRAIN, epochs=60, seed=seed, monitor="val_accuracy")
    cfg = SSLConfig(method="sgan", labelled_fraction=fraction, label_seed=seed,
                    sgan_epochs=sgan_epochs)
    res = train_ssl(ds.X[tr], hide_labels(ds.y[tr], mask), ds.X[va], ds.y[va], len(ds.labels),
                    ModelConfig(arch="paper", pool_size=pool_size), tc, cfg, log=click.echo)
    z = np.random.default_rng(0).normal(size=(4, cfg.noise_dim)).astype(np.float32)
    fake = np.asarray(res.generator(z, training=False))
    real = ds.X[tr][np.random.default_rng(1).choice(int(tr.sum()), 4, replace=False)]
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, rows, title in ((axes[0], real, "real training spectra (rruff-raw)"),
                            (axes[1], fake, f"SGAN generator after the last epoch "
                                            f"({res.epochs_run}; classifier's best epoch "
                                            f"{res.best_epoch})")):
        for i, r in enumerate(rows):
            ax.plot(GRID, r + 1.1 * i, lw=0.7)
        ax.set_title(title, fontsize=10)
        ax.set_yticks([])
    axes[1].set_xlabel("Raman shift (cm$^{-1}$)")
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100)
    click.echo(f"wrote {plot}")


if __name__ == "__main__":  # pragma: no cover
    cli()
