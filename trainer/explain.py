"""Grad-CAM explanations of a run's classification, and the ``ramanedge explain`` command.

Grad-CAM (Selvaraju et al. 2017) in 1D: for the class score ``s_c`` (the pre-softmax logit of
the ``probs`` layer) and the feature maps ``A_k(j)`` of the last conv block (layer ``actN``
after ``convN``: N = number of conv blocks), the channel weights are
``alpha_k = mean_j d s_c / d A_k(j)`` and the map is ``ReLU(sum_k alpha_k A_k)``, linearly
upsampled from the conv positions to the 1392-point grid and scaled to [0, 1]. The last conv
block has only 1392 / m / m positions (39 for m = 6, 22 for m = 8) with wide receptive fields,
so the map is coarse: it says which region drove the decision; the labelled bands are the
spectrum's own peaks ranked by (map value near the peak x peak prominence).

Spectra are read with :func:`ramanedge.io.read_spectrum` and preprocessed with
:func:`ramanedge.grid.preprocess_covered`, like every model input, under the coverage policy
``ramanedge classify`` uses (``--coverage pad|refuse``, ``--min-coverage``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from ramanedge.cli_options import coverage_options, coverage_policy
from ramanedge.errors import RamanEdgeError, naming_file
from ramanedge.grid import GRID, REFUSE_PARTIAL, CoveragePolicy, preprocess_covered

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ExplainError(RamanEdgeError):
    """A spectrum or run folder given to ``explain`` is unusable."""


@dataclass(frozen=True)
class Explanation:
    """Grad-CAM of one spectrum: the prediction, the maps and the strongest bands."""

    source: str
    spectrum: np.ndarray
    """Preprocessed spectrum (1392,)."""
    classes: tuple[int, ...]
    """Explained classes: the predicted one, then (optionally) the runner-up."""
    names: tuple[str, ...]
    probs: tuple[float, ...]
    cams: np.ndarray
    """(len(classes), 1392) maps in [0, 1]."""
    bands: tuple[tuple[float, ...], ...]
    """Per explained class, the wavenumbers (cm-1) of the strongest highlighted peaks."""
    layer: str = ""
    """What the maps are (method and, for Grad-CAM, the feature-map layer)."""


def last_conv_activation(model: Any) -> str:
    """Name of the layer whose output Grad-CAM uses: the activation after the last conv."""
    convs = [layer.name for layer in model.layers if layer.name.startswith("conv")]
    if not convs:
        raise ExplainError("the model has no conv layer (expected layers conv1..convN)")
    act = "act" + convs[-1][len("conv"):]
    names = {layer.name for layer in model.layers}
    return act if act in names else convs[-1]


def grad_cam(model: Any, X: np.ndarray, classes: np.ndarray,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps (N, P) in [0, 1] of ``classes`` (one per row of ``X``) on the grid.

    The class score is the logit of the ``probs`` layer (``features @ W + b``); ``layer``
    defaults to :func:`last_conv_activation`. A row whose map is all zero (no positive
    evidence) stays zero.
    """
    import keras
    import tensorflow as tf

    from trainer.model import FEATURES_LAYER, PROBS_LAYER

    X = np.asarray(X, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if X.ndim != 2 or classes.shape[0] != X.shape[0]:
        raise ValueError(f"need X (N, P) and N classes, got {X.shape} and {classes.shape}")
    layer = layer or last_conv_activation(model)
    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output,
                                            model.get_layer(FEATURES_LAYER).output])
    W, b = (tf.constant(w) for w in model.get_layer(PROBS_LAYER).get_weights())
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        fmap, feats = grad_model(x, training=False)
        logits = tf.matmul(feats, W) + b
        score = tf.gather(logits, tf.constant(classes), axis=1, batch_dims=1)
    grads = tape.gradient(score, fmap)  # (N, L, C)
    alpha = tf.reduce_mean(grads, axis=1, keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(alpha * fmap, axis=2)).numpy()  # (N, L)
    n_pos, p = cam.shape[1], X.shape[1]
    centres = (np.arange(n_pos) + 0.5) * p / n_pos - 0.5
    up = np.stack([np.interp(np.arange(p), centres, row) for row in cam])
    top = up.max(axis=1, keepdims=True)
    return (up / np.where(top > 0, top, 1.0)).astype(np.float32)


#: attribution methods of ``ramanedge explain`` (``--method``)
METHODS = ("gradcam", "gradcam-multi", "occlusion", "integrated-gradients")


def conv_activations(model: Any) -> list[str]:
    """Names of the activation after every conv block (``act1`` .. ``actN``), in order."""
    names = {layer.name for layer in model.layers}
    out = [f"act{i}" for i in range(1, 64) if f"act{i}" in names]
    if not out:
        raise ExplainError("the model has no conv activations (expected layers act1..actN)")
    return out


def grad_cam_multi(model: Any, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM of every conv block, each scaled to [0, 1], averaged (N, P) and rescaled:
    the early blocks' fine positions (696 for the flight model's ``act1``..., 1392 / m for
    the paper family's ``act1``) sharpen the last block's coarse but class-specific map."""
    maps = [grad_cam(model, X, classes, layer) for layer in conv_activations(model)]
    m = np.mean(maps, axis=0)
    top = m.max(axis=1, keepdims=True)
    return (m / np.where(top > 0, top, 1.0)).astype(np.float32)


def occlusion_maps(model: Any, X: np.ndarray, classes: np.ndarray, *, half_width: int = 10,
                   stride: int = 5) -> np.ndarray:
    """Occlusion maps (N, P) of the Keras model (:func:`ramanedge.attribution.occlusion_map`,
    the same code the rover runs through its int8 model)."""
    from ramanedge.attribution import occlusion_map
    from trainer.train import predict_probs

    return np.stack([occlusion_map(lambda B: predict_probs(model, B), x, int(c),
                                   half_width=half_width, stride=stride)
                     for x, c in zip(np.asarray(X, np.float32), classes, strict=True)])


def integrated_gradients(model: Any, X: np.ndarray, classes: np.ndarray, *,
                         steps: int = 32, signed: bool = False) -> np.ndarray:
    """Integrated-gradients maps (N, P) in [0, 1] of ``classes`` (Sundararajan et al. 2017).

    Per grid point: (x - x0) times the class logit's gradient averaged over ``steps``
    midpoints of the straight path from the baseline ``x0`` to ``x``; the baseline is the
    flat zero spectrum (no Raman signal). Only positive evidence for the class is kept
    (negative attributions are clipped to 0), as Grad-CAM does, then each row is scaled to
    [0, 1] (a row without positive evidence stays 0): a gradient method at full grid
    resolution, unlike Grad-CAM's block positions. ``signed=True`` returns the raw
    attributions instead (no clipping, no scaling): their sum approaches the logit
    difference between ``x`` and the baseline as ``steps`` grows (completeness).
    """
    import tensorflow as tf

    from trainer.model import PROBS_LAYER, features_model

    X = np.asarray(X, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if X.ndim != 2 or classes.shape[0] != X.shape[0]:
        raise ValueError(f"need X (N, P) and N classes, got {X.shape} and {classes.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    encoder = features_model(model)
    W, b = (tf.constant(w) for w in model.get_layer(PROBS_LAYER).get_weights())
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[:, None]
    out = np.zeros_like(X)
    for i, (x, c) in enumerate(zip(X, classes, strict=True)):
        path = tf.constant(alphas * x[None, :])  # baseline 0 -> x
        with tf.GradientTape() as tape:
            tape.watch(path)
            logit = tf.linalg.matvec(encoder(path, training=False), W[:, int(c)]) + b[int(c)]
        grad = tape.gradient(logit, path).numpy().mean(axis=0)
        out[i] = x * grad
    if signed:
        return out
    out = np.maximum(out, 0.0)
    top = out.max(axis=1, keepdims=True)
    return (out / np.where(top > 0, top, 1.0)).astype(np.float32)


def attribution(model: Any, X: np.ndarray, classes: np.ndarray, method: str,
                layer: str | None = None) -> np.ndarray:
    """Maps (N, P) in [0, 1] of ``classes`` by ``method`` (one of :data:`METHODS`)."""
    if method == "gradcam":
        return grad_cam(model, X, classes, layer)
    if method == "gradcam-multi":
        return grad_cam_multi(model, X, classes)
    if method == "occlusion":
        return occlusion_maps(model, X, classes)
    if method == "integrated-gradients":
        return integrated_gradients(model, X, classes)
    raise ExplainError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def strongest_bands(spectrum: np.ndarray, cam: np.ndarray, n: int = 5,
                    min_prominence: float = 0.03, window: int = 15) -> tuple[float, ...]:
    """Wavenumbers of up to ``n`` spectrum peaks with the highest ``cam x prominence``.

    A peak's map value is the map's maximum within ``window`` grid points (cm-1) of it, so a
    map that lights up a band's flank (common with the finer ``act2`` maps) still names it.
    """
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import find_peaks

    peaks, props = find_peaks(spectrum, prominence=min_prominence)
    if peaks.size == 0:
        return ()
    near = maximum_filter1d(cam, size=2 * window + 1, mode="nearest")
    score = near[peaks] * props["prominences"]
    order = np.argsort(-score, kind="stable")[:n]
    keep = peaks[order][score[order] > 0.02 * max(score.max(), 1e-12)]
    return tuple(float(GRID[i]) for i in sorted(keep))


def expand_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Files to explain: each path as given, or every regular non-hidden file of a folder."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise ExplainError(f"folder {p} holds no spectrum files")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise ExplainError(f"{p} is not a regular file (a device, FIFO or socket); "
                               "expected a spectrum file")
        else:
            raise ExplainError(f"spectrum file {p} does not exist; expected a spectrum file "
                               "(RRUFF .txt, two-column CSV/TXT, .npy) or a folder of them")
    return out


def load_spectrum(path: str | os.PathLike, coverage: CoveragePolicy = REFUSE_PARTIAL
                  ) -> np.ndarray:
    """Read and preprocess one spectrum; any problem becomes one :class:`ExplainError`."""
    return load_spectrum_covered(path, coverage)[0]


def load_spectrum_covered(path: str | os.PathLike,
                          coverage: CoveragePolicy = REFUSE_PARTIAL) -> tuple[np.ndarray, float]:
    """:func:`load_spectrum` and the fraction of the model grid the spectrum covers, under
    ``coverage`` (``ramanedge classify``'s policy: pad or refuse a partial spectrum)."""
    from ramanedge.io import read_spectrum

    try:
        s = read_spectrum(path)
        return preprocess_covered(s.x, s.y, coverage=coverage)
    except RamanEdgeError as e:
        raise ExplainError(naming_file(path, str(e))) from None
    except (OSError, ValueError) as e:
        raise ExplainError(f"{path}: cannot read a spectrum ({e})") from None


def load_run_model(run_dir: str | os.PathLike) -> tuple[Any, list[str]]:
    """Keras model and labels of a run folder (no data set needed)."""
    from trainer.run import read_labels, read_run_config

    try:
        read_run_config(run_dir)
        labels = read_labels(run_dir)
    except RamanEdgeError as e:
        raise ExplainError(str(e)) from None
    from trainer.model import load_keras_model

    try:
        model = load_keras_model(Path(run_dir) / "model.keras")
    except Exception as e:  # noqa: BLE001 - keras raises many types for a bad file
        raise ExplainError(f"cannot load {Path(run_dir) / 'model.keras'}: {e}") from None
    if int(model.output_shape[-1]) != len(labels):
        raise ExplainError(f"model has {model.output_shape[-1]} outputs but labels.json lists "
                           f"{len(labels)} minerals")
    return model, labels


def explain_spectra(model: Any, labels: list[str], X: np.ndarray, sources: list[str],
                    *, runner_up: bool = False, n_bands: int = 5,
                    layer: str | None = None, method: str = "gradcam"
                    ) -> list[Explanation]:
    """Attribution maps of the predicted (and optionally runner-up) class for each row of
    ``X``: ``method`` one of :data:`METHODS`; ``layer``: Grad-CAM's feature-map layer
    (default: :func:`last_conv_activation`).
    """
    from trainer.train import predict_probs

    probs = predict_probs(model, X)
    order = np.argsort(-probs, axis=1, kind="stable")
    k = 2 if runner_up else 1
    cams = [attribution(model, X, order[:, j], method, layer) for j in range(k)]
    what = {"gradcam": f"Grad-CAM ({layer or last_conv_activation(model)})",
            "gradcam-multi": "Grad-CAM, all conv blocks",
            "occlusion": "occlusion, ±10 cm-1 windows",
            "integrated-gradients": "integrated gradients, zero baseline"}[method]
    out = []
    for i, src in enumerate(sources):
        cls = tuple(int(order[i, j]) for j in range(k))
        maps = np.stack([cams[j][i] for j in range(k)])
        out.append(Explanation(
            source=src, spectrum=X[i], classes=cls, names=tuple(labels[c] for c in cls),
            probs=tuple(float(probs[i, c]) for c in cls), cams=maps,
            bands=tuple(strongest_bands(X[i], maps[j], n_bands) for j in range(k)),
            layer=what))
    return out


def plot_explanation(e: Explanation, path: str | os.PathLike, title: str = "") -> None:
    """Write a PNG: per explained class, the spectrum over its Grad-CAM map, bands labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ramanedge.fsutil import atomic_write_bytes

    n = len(e.classes)
    fig, axes = plt.subplots(n, 1, figsize=(9, 3.2 * n), squeeze=False, sharex=True)
    for j, ax in enumerate(axes[:, 0]):
        ax.imshow(e.cams[j][None, :], extent=(GRID[0], GRID[-1], 0, 1.12), aspect="auto",
                  cmap="Reds", vmin=0, vmax=1, alpha=0.75, origin="lower")
        ax.plot(GRID, e.spectrum, color="k", lw=0.9)
        for w in e.bands[j]:
            ax.axvline(w, color="tab:blue", lw=0.7, ls="--")
            ax.text(w, 1.08, f"{w:.0f}", rotation=90, ha="center", va="top", fontsize=8,
                    color="tab:blue")
        role = "predicted" if j == 0 else "runner-up"
        ax.set_title(f"{role}: {e.names[j]} (p = {e.probs[j]:.2f})", fontsize=10)
        ax.set_ylabel("intensity (max = 1)")
        ax.set_ylim(0, 1.12)
    axes[-1, 0].set_xlabel(f"Raman shift (cm$^{{-1}}$); red = {e.layer}")
    fig.suptitle(title or Path(e.source).name, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


@click.command("explain")
@click.option("--model", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder written by 'ramanedge train' (model.keras, labels.json, ...).")
@click.argument("spectra", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--runner-up", is_flag=True, help="Also explain the second most likely mineral.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("gradcam"), show_default=True, help="Folder for the PNGs.")
@click.option("--bands", "n_bands", type=click.IntRange(0, 50), default=5, show_default=True,
              help="How many of the strongest highlighted peaks to label.")
@click.option("--layer", default=None,
              help="Grad-CAM's feature-map layer [default: the activation of the last conv "
                   "block, e.g. act3]; an earlier one (act2) gives a finer map.")
@click.option("--method", type=click.Choice(METHODS), default="integrated-gradients",
              show_default=True,
              help="integrated-gradients: input x path-averaged gradient, per grid point "
                   "(best band sanity score on validation, docs/results.md section 6); "
                   "occlusion: the probability drop when a ±10 cm-1 window is removed (no "
                   "gradients: the rover's own map, Classifier.occlusion); gradcam: last (or "
                   "--layer) conv block; gradcam-multi: every block averaged.")
@coverage_options
def explain(run_dir: Path, spectra: tuple[Path, ...], runner_up: bool, out_dir: Path,
            n_bands: int, layer: str | None, method: str, coverage_mode: str,
            min_coverage: float) -> None:
    """Attribution over wavenumber for each SPECTRUM (file or folder): one PNG per spectrum."""
    from trainer.run import read_run_config

    policy = coverage_policy(coverage_mode, min_coverage)  # option errors first
    try:
        read_run_config(run_dir)  # fail fast, before TensorFlow is imported
    except RamanEdgeError as e:
        raise ExplainError(str(e)) from None
    files = expand_inputs(list(spectra))
    loaded = [load_spectrum_covered(f, policy) for f in files]
    X = np.stack([g for g, _ in loaded])
    model, labels = load_run_model(run_dir)
    names = [lay.name for lay in model.layers]
    if layer is not None and layer not in names:
        raise ExplainError(f"--layer {layer!r} is not a layer of the model; expected one of "
                           f"{', '.join(n for n in names if n.startswith(('conv', 'act')))}")
    if layer is not None and method != "gradcam":
        raise ExplainError(f"--layer applies to --method gradcam only, not {method}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExplainError(f"--out {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for e, f, (_g, frac) in zip(explain_spectra(model, labels, X, [str(f) for f in files],
                                                runner_up=runner_up, n_bands=n_bands,
                                                layer=layer, method=method),
                                files, loaded, strict=True):
        stem = f.stem
        while stem in used:
            stem += "_"
        used.add(stem)
        png = out_dir / f"{stem}_{method}.png"
        plot_explanation(e, png)
        extra = (f"; runner-up {e.names[1]} ({e.probs[1]:.2f})" if runner_up else "")
        bands = ", ".join(f"{w:.0f}" for w in e.bands[0])
        covers = "" if frac >= 1.0 else f" (covers {100 * frac:.0f}% of the grid, padded)"
        click.echo(f"{f.name}{covers}: {e.names[0]} ({e.probs[0]:.2f}){extra}; bands {bands} "
                   f"cm-1 -> {png}")
