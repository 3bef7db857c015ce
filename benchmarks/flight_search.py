"""The flight-model search and ablation driver: train named candidates, choose on validation.

Each candidate is a :class:`~trainer.model.ModelConfig` + :class:`~trainer.train.TrainConfig`
(written out in :data:`CANDIDATES`). For every candidate, split seed and training seed the
driver trains on the grouped (or random) split, then records validation *and* test top-1 at
0 / +-15 / +-30 cm-1, weights and MACs, one JSON line each, appended to ``--out``. Choices
are made on the ``val_*`` columns only; the test columns are reported, never selected on.

    python -m benchmarks.flight_search --data ../shared/data/rruff \\
        --candidates flight,paper-m6 --split-seeds 0,1,2,3,4 --out runs/flight/search.jsonl

``--summary FILE`` prints mean +- s.d. per candidate of a JSONL file (a markdown table).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import click
import numpy as np

from benchmarks.common import comma_list, format_mean_sd_pct, one_line_errors
from ramanedge.cli_options import data_root_option
from trainer.augment import AugmentConfig
from trainer.model import FLIGHT_LATE_POOL, PAPER_DEFAULT, ModelConfig, count_macs, count_params
from trainer.train import PAPER_FAMILY_TRAIN, TrainConfig

FLIGHT_AUG = AugmentConfig(shift_cm=30, background=0.5, noise_std=0.01, baseline=0.1, scale=0.1)

#: the first flight candidate ("flight" below); the rows record every resolved field
_F = ModelConfig(arch="flight", pool_size=2, pool_layers=5, activation="relu",
                 filters=(16, 32, 48, 64, 96), kernel_size=7, dense_units=128, dropout=0.3,
                 reduce_channels=16, separable=True, batch_norm=True, input_floor=None,
                 early_pool=False, stem_stride=1)
_T = PAPER_FAMILY_TRAIN  # shift 12 + backgrounds, no teachers: the levers are switched on below
#: name -> (model config, train config). The ablation rows switch one lever off each.
CANDIDATES: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "paper-m6": (PAPER_DEFAULT, _T),
    "paper-m6-relu-aug30": (replace(PAPER_DEFAULT, activation="relu"),
                            replace(_T, augment=FLIGHT_AUG)),
    "flight": (_F, replace(_T, augment=FLIGHT_AUG)),
    "flight-aug12": (_F, _T),
    "flight-nosep": (replace(_F, separable=False, filters=(16, 24, 32, 48, 64)),
                     replace(_T, augment=FLIGHT_AUG)),
    "flight-wide": (replace(_F, filters=(24, 48, 64, 96, 128), reduce_channels=24,
                            dense_units=192), replace(_T, augment=FLIGHT_AUG)),
    "flight-k11": (replace(_F, kernel_size=11), replace(_T, augment=FLIGHT_AUG)),
    "flight-p4": (replace(_F, pool_layers=4, reduce_channels=8), replace(_T, augment=FLIGHT_AUG)),
    "flight-6blk": (replace(_F, filters=(16, 32, 48, 64, 96, 128), pool_layers=6,
                            reduce_channels=32), replace(_T, augment=FLIGHT_AUG)),
    "flight-nobn": (replace(_F, batch_norm=False), replace(_T, augment=FLIGHT_AUG)),
    "flight-aug20": (_F, replace(_T, augment=replace(FLIGHT_AUG, shift_cm=20))),
    "flight-wide-aug12": (replace(_F, filters=(24, 48, 64, 96, 128), reduce_channels=24,
                                  dense_units=192), _T),
    "flight-wide-aug20": (replace(_F, filters=(24, 48, 64, 96, 128), reduce_channels=24,
                                  dense_units=192),
                          replace(_T, augment=replace(FLIGHT_AUG, shift_cm=20))),
    "flight-wide6": (replace(_F, filters=(24, 48, 64, 96, 128), reduce_channels=24,
                             dense_units=192, activation="relu6"),
                     replace(_T, augment=FLIGHT_AUG)),
    "flight-wide6f": (replace(_F, filters=(24, 48, 64, 96, 128), reduce_channels=24,
                              dense_units=192, activation="relu6", input_floor=-0.05),
                      replace(_T, augment=FLIGHT_AUG)),
    "flight-mid": (replace(_F, filters=(16, 32, 64, 96, 128), reduce_channels=24,
                           dense_units=192), replace(_T, augment=FLIGHT_AUG)),
}
#: 2026-12-04 architecture screen around the current default (issue 11's untried suggestions:
#: multi-scale depthwise convs, larger receptive fields, channel attention). One recipe for all:
#: the default's augmentation without its teachers, outlier exposure and int8-aware fine-tune
#: (those act on any architecture alike), so the rows differ by the architecture only.
_S = replace(TrainConfig(), teachers=0, distill=0.0, qat_epochs=0, outlier_exposure=0.0)
CANDIDATES.update({
    "screen-default": (FLIGHT_LATE_POOL, _S),
    "screen-k11": (replace(FLIGHT_LATE_POOL, kernel_size=11), _S),
    "screen-k15": (replace(FLIGHT_LATE_POOL, kernel_size=15), _S),
    "screen-ms7-21": (replace(FLIGHT_LATE_POOL, branch_kernels=(7, 21)), _S),
    "screen-se": (replace(FLIGHT_LATE_POOL, attention="se"), _S),
    # issue 11's latency: the 1x1 convs (most MACs) at the pooled positions
    "screen-early-pool": (replace(FLIGHT_LATE_POOL, early_pool=True), _S),
})


#: distilled candidates: name -> (student candidate, teacher candidate, teacher seeds, weight).
#: The teacher is the mean of that candidate's models over the seeds, trained on the same split
#: (cached under ``<out folder>/teachers``); the student trains with ``distill = weight``.
DISTILLED: dict[str, tuple[str, str, tuple[int, ...], float]] = {
    "flight-wide-kd": ("flight-wide", "flight-aug12", (0, 1, 2), 0.5),
    "flight-wide-kd8": ("flight-wide", "flight-aug12", (0, 1, 2), 0.8),
    "flight-wide6-kd": ("flight-wide6", "flight-aug12", (0, 1, 2), 0.5),
    "flight-wide6f-kd": ("flight-wide6f", "flight-aug12", (0, 1, 2), 0.5),
    "flight-kd": ("flight", "flight-aug12", (0, 1, 2), 0.5),
    "flight-mid-kd": ("flight-mid", "flight-aug12", (0, 1, 2), 0.5),
    "flight-mid-kd8": ("flight-mid", "flight-aug12", (0, 1, 2), 0.8),
}


def teacher_probs(ds, split: np.ndarray, split_key: str, teacher: str, seeds: tuple[int, ...],
                  cache: Path) -> np.ndarray:
    """Mean probabilities (over ``seeds``) of ``teacher`` models on every spectrum of ``ds``;
    each model trained on ``split``'s train part and cached as ``.npy``."""
    from trainer.train import predict_probs, train_model

    tr, va = split == "train", split == "val"
    out = []
    for seed in seeds:
        f = cache / f"{teacher}-{split_key}-seed{seed}.npy"
        if not f.is_file():
            mc, tc = CANDIDATES[teacher]
            res = train_model(ds.X[tr], ds.y[tr], ds.X[va], ds.y[va], len(ds.labels), mc,
                              replace(tc, seed=seed), log=None)
            f.parent.mkdir(parents=True, exist_ok=True)
            np.save(f, predict_probs(res.model, ds.X))
        out.append(np.load(f))
    return np.mean(out, axis=0)


def _shift_top1(model, X: np.ndarray, y: np.ndarray, s: int) -> float:
    from ramanedge.grid import shift_spectra
    from trainer.train import predict_probs

    if s == 0:
        return float(np.mean(predict_probs(model, X).argmax(1) == y))
    return float(np.mean([np.mean(predict_probs(model, shift_spectra(X, d)).argmax(1) == y)
                          for d in (s, -s)]))


def run_one(ds, split: np.ndarray, name: str, mc: ModelConfig, tc: TrainConfig,
            teacher: np.ndarray | None = None) -> dict:
    """Train one candidate on one split; return its JSON row (val and test figures).
    ``teacher``: teacher probabilities on every spectrum of ``ds`` (distillation)."""
    from trainer.train import train_model

    tr, va, te = (split == s for s in ("train", "val", "test"))
    res = train_model(ds.X[tr], ds.y[tr], ds.X[va], ds.y[va], len(ds.labels), mc, tc,
                      teacher_probs=None if teacher is None else teacher[tr], log=None)
    row = {"candidate": name, "seed": tc.seed, "params": count_params(mc, len(ds.labels)),
           "macs": count_macs(mc, len(ds.labels)), "epochs": res.epochs_run,
           "best_epoch": res.best_epoch, "train_s": round(res.seconds, 1),
           "model": mc.to_dict(), "train": tc.to_dict()}
    for part, mask in (("val", va), ("test", te)):
        for s in (0, 15, 30):
            row[f"{part}_{s}"] = _shift_top1(res.model, ds.X[mask], ds.y[mask], s)
    row.update(int8_parity(res.model, mc, ds, split))
    return row


def int8_parity(model, mc: ModelConfig, ds, split: np.ndarray) -> dict:
    """Export to full int8 (100 stratified training spectra, as ``ramanedge quantize``) and
    measure the rover path on the test part: top-1 and argmax agreement with Keras, on both
    the validation and the test part (the choice reads ``val_agreement``)."""
    import tempfile

    from quantize.export import QuantizeConfig, export_artifact, select_calibration

    tr, va, te = (split == s for s in ("train", "val", "test"))
    with tempfile.TemporaryDirectory() as d:
        res = export_artifact(model, labels=list(ds.labels), model_config=mc,
                              calib_X=ds.X[tr][select_calibration(ds.y[tr], 100)],
                              val_X=ds.X[va], test_X=ds.X[va], test_y=ds.y[va],
                              out_dir=Path(d) / "val",
                              config=QuantizeConfig(allow_accuracy_drop=True))
        val_agree = res.head_parity.agreement
        res = export_artifact(model, labels=list(ds.labels), model_config=mc,
                              calib_X=ds.X[tr][select_calibration(ds.y[tr], 100)],
                              val_X=ds.X[va], test_X=ds.X[te], test_y=ds.y[te],
                              out_dir=Path(d) / "test",
                              config=QuantizeConfig(allow_accuracy_drop=True))
    hp = res.head_parity
    return {"val_agreement": val_agree, "test_agreement": hp.agreement,
            "test_int8_0": hp.int8_top1}


def _val_mean(r: dict) -> float:
    return (r["val_0"] + r["val_15"] + r["val_30"]) / 3


def paired_gain(rows: list[dict], name: str, reference: str, key) -> list[float]:
    """Points ``name`` gains over ``reference`` on ``key(row)``, one value per (split kind,
    split seed, training seed) both were run on."""
    def by_run(who: str) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        for r in rows:
            if r["candidate"] == who:
                k = (r["split"], r["split_seed"], r["seed"])
                if k in out:
                    raise ValueError(f"{who} has more than one row for one split and seed (a "
                                     "search run twice into the same file?); pairing needs "
                                     "one each")
                out[k] = key(r)
        return out

    mine, ref = by_run(name), by_run(reference)
    return [100 * (v - ref[k]) for k, v in mine.items() if k in ref]


def summary_table(rows: list[dict], reference: str | None = None) -> str:
    """Markdown: mean +- s.d. over rows of each candidate (split x training seeds); with
    ``reference``, two more columns: the paired validation gain over that candidate at 0
    cm-1 and over the three shifts' mean (same split and seed; the split-to-split spread
    cancels)."""
    head = ("| candidate | runs | weights | MACs | val @0 | val @15 | val @30 | val mean | "
            "test @0 | test @15 | test @30 | train s |")
    if reference:
        head += f" val @0 gain vs {reference} | val mean gain |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    for n in names:
        rs = [r for r in rows if r["candidate"] == n]
        ms = partial(format_mean_sd_pct, rs)
        vmean = 100 * np.mean([_val_mean(r) for r in rs])
        line = (f"| {n} | {len(rs)} | {rs[0]['params']:,} | {rs[0]['macs'] / 1e6:.2f} M | "
                f"{ms('val_0')} | {ms('val_15')} | {ms('val_30')} | {vmean:.1f} | "
                f"{ms('test_0')} | {ms('test_15')} | {ms('test_30')} | "
                f"{np.mean([r['train_s'] for r in rs]):.0f} |")
        if reference:
            for key in (lambda r: r["val_0"], _val_mean):
                g = paired_gain(rows, n, reference, key)
                line += (" - |" if not g else f" {np.mean(g):+.1f}"
                         f"{f' ± {np.std(g, ddof=1):.1f}' if len(g) > 1 else ''} ({len(g)}) |")
        out.append(line)
    return "\n".join(out)


@click.command()
@data_root_option
@click.option("--candidates", default="flight", show_default=True,
              help=f"Comma-separated names from: {', '.join([*CANDIDATES, *DISTILLED])}.")
@click.option("--split", "split_kind", type=click.Choice(["grouped", "random"]),
              default="grouped", show_default=True)
@click.option("--split-seeds", default="0", show_default=True)
@click.option("--seeds", default="0", show_default=True, help="Training seeds.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("runs/flight/search.jsonl"), show_default=True)
@click.option("--reference", default=None,
              help="With --summary: add the paired validation gain over this candidate.")
@click.option("--summary", "summary_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Only print the summary table of this JSONL file.")
@one_line_errors
def main(data_root, candidates, split_kind, split_seeds, seeds, out, reference,
         summary_file) -> None:
    """Train flight-model candidates and append one JSON line per run."""
    if summary_file is not None:
        try:
            rows = [json.loads(line) for line in summary_file.read_text().splitlines() if line]
        except json.JSONDecodeError as e:
            raise click.ClickException(f"{summary_file} is not a JSON-lines file of search "
                                       f"rows ({e})") from None
        if reference and reference not in {r["candidate"] for r in rows}:
            raise click.UsageError(f"--reference {reference} has no rows in {summary_file}")
        try:
            click.echo(summary_table(rows, reference))
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        return
    if reference:
        raise click.UsageError("--reference goes with --summary (it only changes the table)")
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split

    names = [c.strip() for c in candidates.split(",") if c.strip()]
    split_list, seed_list = comma_list(split_seeds, "--split-seeds"), comma_list(seeds, "--seeds")
    bad = [n for n in names if n not in CANDIDATES and n not in DISTILLED]
    if bad:
        raise click.UsageError(f"unknown candidate(s) {', '.join(bad)}; expected any of "
                               f"{', '.join([*CANDIDATES, *DISTILLED])}")
    ds = build_dataset(data_root, "rruff-raw")
    out.parent.mkdir(parents=True, exist_ok=True)
    for ss in split_list:
        split = np.asarray(make_split(ds, kind=split_kind, seed=ss))
        for seed in seed_list:
            for n in names:
                t0 = time.perf_counter()
                teacher = None
                if n in DISTILLED:
                    student, tname, tseeds, weight = DISTILLED[n]
                    teacher = teacher_probs(ds, split, f"{split_kind}{ss}", tname, tseeds,
                                            out.parent / "teachers")
                    mc, tc = CANDIDATES[student]
                    tc = replace(tc, distill=weight)
                else:
                    mc, tc = CANDIDATES[n]
                row = run_one(ds, split, n, mc, replace(tc, seed=seed), teacher)
                row.update(split=split_kind, split_seed=ss,
                           date=time.strftime("%Y-%m-%d"), wall_s=time.perf_counter() - t0)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                click.echo(f"{n} split {ss} seed {seed}: val {100 * row['val_0']:.1f} "
                           f"test {100 * row['test_0']:.1f} / {100 * row['test_15']:.1f} / "
                           f"{100 * row['test_30']:.1f}  ({row['epochs']} ep, "
                           f"{row['train_s']:.0f} s)")


if __name__ == "__main__":
    main()
