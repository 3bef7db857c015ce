"""Do the attribution maps point at the spectrum's own bands? (issue 17, docs/results.md s. 6)

For every spectrum of a run's validation and test parts, each method's map of the predicted
mineral gives its three strongest bands (:func:`ramanedge.attribution.attributed_bands`, at
least 20 cm-1 apart); a band *hits* when it lies within +-10 cm-1 of one of the spectrum's five
most prominent peaks (:func:`ramanedge.attribution.spectrum_peaks`). Reported per method: the
share of spectra whose three bands all hit (the issue's figure), the share of bands that hit,
and the chance level (a band drawn uniformly on the grid). Control: the same network with
re-initialised weights (Adebayo et al. 2018's model-randomisation test) should score near
chance. Methods: Grad-CAM of the last conv block, Grad-CAM of every block averaged, occlusion
of +-10 cm-1 windows on the Keras model, and the same occlusion through the rover's int8 path
(``Classifier.occlusion``, TF-free). The default of ``ramanedge explain`` is chosen on the
validation rows.

    python -m benchmarks.explain_sanity --run runs/flight/eval-f16/flight-grouped0/run \\
        --model runs/flight/eval-f16/flight-grouped0/model --out docs/explain_sanity.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np


def sanity(maps: np.ndarray, X: np.ndarray) -> dict[str, float]:
    """Hit figures of maps (N, P) on spectra X (N, P)."""
    from ramanedge.attribution import (
        attributed_bands,
        band_hits,
        chance_hit_rate,
        spectrum_peaks,
    )

    all3, bands, chance = [], [], []
    for m, x in zip(maps, X, strict=True):
        peaks = spectrum_peaks(x, 5)
        hits = band_hits(attributed_bands(m, 3, 20), peaks, 10)
        all3.append(hits.size == 3 and bool(hits.all()))
        bands.extend(hits.tolist() + [False] * (3 - hits.size))
        chance.append(chance_hit_rate(peaks, x.size, 10))
    c = float(np.mean(chance))
    return {"all3": float(np.mean(all3)), "bands": float(np.mean(bands)),
            "chance_band": c, "chance_all3": float(np.mean(np.array(chance) ** 3)),
            "n": int(len(X))}


def randomised(model: Any, calib: np.ndarray) -> Any:
    """The same architecture with freshly initialised weights (int8-aware grids, if any,
    recalibrated on ``calib``)."""
    import keras

    from trainer.qat import calibrate_act_quant, has_act_quant

    keras.utils.set_random_seed(1234)
    clone = keras.models.clone_model(model)
    if has_act_quant(clone):
        calibrate_act_quant(clone, calib)
    return clone


@click.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True)
@click.option("--model", "model_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="its artifact, for the rover's int8 occlusion")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(run_dir: Path, model_dir: Path | None, data_root: Path | None,
         out: Path | None) -> None:
    """Band sanity check of every attribution method on a run's val and test parts."""
    from trainer.explain import METHODS, attribution
    from trainer.run import load_run
    from trainer.train import predict_probs

    run = load_run(run_dir, data_root=data_root)
    Xtr, _ = run.subset("train")
    rnd = randomised(run.model, Xtr[:100])
    rows: dict[str, Any] = {}
    clf = None
    if model_dir is not None:
        from edge_runtime import Classifier

        clf = Classifier.from_dir(model_dir, use_head_store=False)
    answering = {"test": clf}
    if clf is not None:
        from benchmarks.common import validation_answerer

        ytr = run.subset("train")[1]
        given = run.labelled_mask()
        # validation occluded without its own spectra in the library
        answering["val"] = validation_answerer(clf, Xtr[given], ytr[given])
    for part in ("val", "test"):
        X, _ = run.subset(part)
        for tag, model in (("", run.model), (" (randomised weights)", rnd)):
            cls = predict_probs(model, X).argmax(1)
            for method in METHODS:
                t0 = time.perf_counter()
                maps = attribution(model, X, cls, method)
                r = sanity(maps, X)
                r["seconds_per_spectrum"] = (time.perf_counter() - t0) / len(X)
                rows.setdefault(method + tag, {})[part] = r
                click.echo(f"{part} {method}{tag}: all 3 hit {100 * r['all3']:.1f} %, bands "
                           f"{100 * r['bands']:.1f} % (chance {100 * r['chance_band']:.1f} %)",
                           err=True)
        if clf is not None:
            t0 = time.perf_counter()
            maps = np.stack([answering[part].occlusion(x) for x in X])
            r = sanity(maps, X)
            r["seconds_per_spectrum"] = (time.perf_counter() - t0) / len(X)
            rows.setdefault("occlusion, rover int8 path (TF-free)", {})[part] = r
    lines = ["| method | val: all 3 bands hit | val: bands hit | test: all 3 hit | "
             "test: bands hit | chance (band / all 3) | s per spectrum |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        v, t = r["val"], r["test"]
        lines.append(f"| {name} | {100 * v['all3']:.1f} % | {100 * v['bands']:.1f} % | "
                     f"{100 * t['all3']:.1f} % | {100 * t['bands']:.1f} % | "
                     f"{100 * t['chance_band']:.1f} / {100 * t['chance_all3']:.1f} % | "
                     f"{t['seconds_per_spectrum']:.3f} |")
    table = "\n".join(lines)
    click.echo(table)
    if out is not None:
        from ramanedge.machine import cpu_model

        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                                   "run": str(run_dir), "rows": rows, "table": table},
                                  indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
