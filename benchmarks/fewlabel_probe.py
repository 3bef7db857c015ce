"""Frozen-feature probe of pretrained backbones (no fine-tuning, no labels of known minerals).

For each backbone folder (and a randomly initialised backbone and the raw spectra as
controls), the features of the unknown-evaluation minerals (never in any pretraining corpus)
feed :func:`benchmarks.fewlabel.new_mineral_accuracy`: a fresh onboard softmax head fitted on
one specimen per mineral, scored on the others (20 minerals per draw, 10 draws, seeds 0-2).
It measures what self-supervision alone puts into the features::

    python -m benchmarks.fewlabel_probe --pretrained runs/fewlabel/pretrain \\
        --out docs/fewlabel-probe.json
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.command()
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--pretrained", "pre_dir", type=click.Path(path_type=Path),
              default=Path("runs/fewlabel/pretrain"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(data_root, pre_dir, out) -> None:
    """Probe every ARCH-OBJ-sSPLIT folder under --pretrained."""
    from benchmarks.fewlabel import model_config, new_mineral_accuracy, new_mineral_pool
    from ramanedge.dataset import build_dataset
    from ramanedge.machine import cpu_model
    from trainer.contrastive import load_backbone
    from trainer.model import ModelConfig, build_model, features_model
    from trainer.pretrain import load_backbone_file
    from trainer.train import seed_everything

    ds = build_dataset(data_root, "rruff-raw")
    X, names, ids = new_mineral_pool(data_root, list(ds.labels))

    def probe(F: np.ndarray) -> dict:
        accs = [100 * new_mineral_accuracy(F, names, ids, seed=s) for s in (0, 1, 2)]
        return {"mean": round(float(np.mean(accs)), 2), "sd": round(float(np.std(accs, ddof=1)), 2)}

    rows = {"raw spectra": probe(X)}
    for arch in ("flight", "paper"):
        seed_everything(0)
        m = build_model(2, model_config(arch))
        enc = features_model(m)
        rows[f"{arch} random init"] = probe(np.asarray(enc.predict(X, verbose=0)))
    for d in sorted(p for p in pre_dir.iterdir() if (p / "backbone.npz").is_file()):
        meta = json.loads((d / "pretrain.json").read_text(encoding="utf-8"))
        if meta.get("keep_unknown_evaluation"):  # its corpus held the probe's minerals
            raise click.ClickException(f"{d} was pretrained with --all-minerals: its corpus "
                                       "held the minerals this probe scores")
        m = build_model(2, ModelConfig.from_dict(meta["model"]))
        load_backbone(m, load_backbone_file(d))
        enc = features_model(m)
        rows[d.name] = probe(np.asarray(enc.predict(X, verbose=0)))
        click.echo(f"{d.name}: {rows[d.name]}")
    res = {"probe": rows, "n_spectra": int(len(X)), "n_minerals": int(len(set(names))),
           "machine": f"{cpu_model()} ({os.cpu_count()} cpu)",
           "date": datetime.now(UTC).isoformat(timespec="seconds")}
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    for k, v in rows.items():
        click.echo(f"| {k} | {v['mean']:.1f} ± {v['sd']:.1f} |")


if __name__ == "__main__":
    main()
