"""Self-supervised pretraining of the CNN backbone on every RRUFF spectrum (no labels).

Three objectives share one Keras training loop (``model.fit`` on a :class:`_Pretrainer` with
its own ``train_step``), so the same code runs on one CPU or under any ``tf.distribute``
strategy (``MirroredStrategy`` on the devices of one machine, ``MultiWorkerMirroredStrategy``
over machines configured with ``TF_CONFIG``; see ``docs/parts/ssl.md``):

``simclr``
    Two Raman views of a spectrum (:func:`trainer.raman_augment.raman_views`) are pulled
    together and views of other spectra pushed apart (NT-Xent, Chen et al. 2020), through a
    projection head Dense 256 - ReLU - Dense ``projection_dim``.
``barlow``
    Barlow Twins (Zbontar et al. 2021): the cross-correlation matrix of the two views'
    batch-standardised projections (Dense 512 - BN - ReLU - Dense ``projection_dim``) is driven
    to the identity: invariance on the diagonal, redundancy reduction (weight
    ``barlow_lambda``) off it. No negatives, so small batches work.
``masked``
    Masked-spectrum reconstruction: random windows covering ``mask_fraction`` of one view are
    set to zero and a linear decoder from the ``features`` layer reconstructs the view; the
    loss is the mean squared error on the masked points (the model must infer peaks from
    their context).

Views include the partial-coverage crop (``views.crop``) besides shift, gain, baseline,
noise and spikes. The projection head / decoder is dropped after pretraining;
:func:`pretrain` returns the backbone weights by layer name for
:func:`trainer.contrastive.load_backbone`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import DataError
from ramanedge.options import check_options, option
from trainer.contrastive import backbone_layers, nt_xent_loss
from trainer.model import ModelConfig, build_model, features_model
from trainer.raman_augment import RamanAugmentConfig, raman_views
from trainer.train import Log, seed_everything

OBJECTIVES = ("simclr", "barlow", "masked")
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretraining (stored as ``pretrain.json`` next to its weights)."""

    objective: str = "barlow"
    epochs: int = option(10, within=(1, 10_000))
    """Passes over the corpus."""
    batch_size: int = option(128, within=(4, 65_536))
    """Global batch (split over the replicas of a distribution strategy)."""
    learning_rate: float = option(1e-3, within=(1e-7, 1.0))
    projection_dim: int = option(256, within=(2, 8192))
    temperature: float = option(0.2, within=(1e-3, 10.0))
    """NT-Xent temperature (``simclr``)."""
    barlow_lambda: float = option(5e-3, within=(0.0, 10.0))
    """Weight of the off-diagonal (redundancy) term (``barlow``)."""
    mask_fraction: float = option(0.3, within=(0.01, 0.9))
    """Share of the grid zeroed in the input (``masked``)."""
    mask_width: int = option(24, within=(1, 700))
    """Maximum width of one masked window, in grid points (``masked``)."""
    seed: int = option(0, within=(0, 2**32 - 1))
    views: RamanAugmentConfig = field(
        default_factory=lambda: RamanAugmentConfig(shift_cm=10, crop=0.3))
    within_spans: bool = False
    """Crops (and the masked objective's masks) stay inside each spectrum's covered span.
    Off by default: chosen on validation (split 0, 10 % labels, 3 seeds: 70.8 % with, 72.6 %
    without; docs/parts/ssl.md)."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                             f"{self.objective!r}")
        if isinstance(self.views, dict):
            object.__setattr__(self, "views", RamanAugmentConfig(**self.views))
        if not isinstance(self.views, RamanAugmentConfig):
            raise ValueError(f"views must be an object of augmentation settings (e.g. "
                             f'{{"shift_cm": 10, "crop": 0.3}}), got {self.views!r}')
        if not isinstance(self.within_spans, bool):
            raise ValueError(f"within_spans must be true or false, got {self.within_spans!r}")
        check_options(self, what="pretraining")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["views"] = self.views.to_dict()
        return d

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PretrainConfig:
        """Read a JSON config (the keys of :meth:`to_dict`; missing keys take defaults)."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the pretraining config {path}: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"pretraining config {path} must be a JSON object")
        unknown = sorted(set(d) - set(asdict(cls())))
        if unknown:
            raise ValueError(f"unknown keys in {path}: {', '.join(unknown)}; expected some "
                             f"of {', '.join(sorted(asdict(cls())))}")
        return cls(**d)


def make_strategy(name: str) -> Any:
    """The ``tf.distribute`` strategy called ``name`` (one of :data:`STRATEGIES`).

    ``default``: no distribution. ``mirrored``: every local device (one CPU here).
    ``multiworker``: ``MultiWorkerMirroredStrategy``; each worker runs the same command with
    its own ``TF_CONFIG`` (cluster and task index), as TensorFlow documents.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def mask_windows(n: int, p: int, fraction: float, max_width: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Bool (n, p): random windows (width 1..``max_width``) until ``fraction`` of each row
    is covered (at least one window per row)."""
    out = np.zeros((n, p), dtype=bool)
    target = max(1, int(round(fraction * p)))
    for i in range(n):
        while out[i].sum() < target:
            w = int(rng.integers(1, max_width + 1))
            s = int(rng.integers(0, p - w + 1))
            out[i, s:s + w] = True
    return out


def _barlow_loss(z1: Any, z2: Any, lam: float) -> Any:
    import tensorflow as tf

    b = tf.cast(tf.shape(z1)[0], tf.float32)

    def standardise(z):
        mu, var = tf.nn.moments(z, axes=[0])
        return (z - mu) / tf.sqrt(var + 1e-5)

    c = tf.matmul(standardise(z1), standardise(z2), transpose_a=True) / b
    diag = tf.linalg.diag_part(c)
    on = tf.reduce_sum(tf.square(1.0 - diag))
    off = tf.reduce_sum(tf.square(c)) - tf.reduce_sum(tf.square(diag))
    return on + lam * off


def _views_dataset(X: np.ndarray, config: PretrainConfig,
                   spans: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """A ``keras.utils.PyDataset`` of view batches drawn from ``(seed, epoch, batch)`` alone.

    ``spans``: each row's covered grid points ``(lo, hi)``; crops stay inside them and the
    masked objective masks (and so reconstructs) only points inside the original span, not
    the corpus's own padding outside it. (A crop may still pad inside the span, and the mask
    uses the unshifted span: a view moves by at most ``views.shift_cm`` points.)"""
    covered = None
    if spans is not None:
        pos = np.arange(X.shape[1])[None, :]
        covered = (pos >= np.asarray(spans[0])[:, None]) & (pos < np.asarray(spans[1])[:, None])
    import keras

    class Views(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:
            return max(1, X.shape[0] // config.batch_size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
            order = np.random.default_rng([config.seed, 104729, self.epoch]).permutation(
                X.shape[0])
            idx = np.sort(order[i * config.batch_size:(i + 1) * config.batch_size])
            rng = np.random.default_rng([config.seed, self.epoch, i])
            sp = None if spans is None else (spans[0][idx], spans[1][idx])
            v1 = raman_views(X[idx], config.views, rng, spans=sp)
            if config.objective == "masked":
                m = mask_windows(len(idx), X.shape[1], config.mask_fraction,
                                 config.mask_width, rng)
                if covered is not None:
                    m &= covered[idx]
                return np.where(m, 0.0, v1).astype(np.float32), v1, m.astype(np.float32)
            return v1, raman_views(X[idx], config.views, rng, spans=sp)

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return Views()


def _pretrainer(encoder: Any, head: Any, config: PretrainConfig) -> Any:
    import keras
    import tensorflow as tf

    class Pretrainer(keras.Model):
        """Encoder + head trained on the objective's loss (``train_step``)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = head
            self.tracker = keras.metrics.Mean(name="loss")

        def call(self, x: Any, training: bool = False) -> Any:
            return self.head(self.encoder(x, training=training), training=training)

        @property
        def metrics(self) -> list[Any]:
            return [self.tracker]

        def train_step(self, data: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                if config.objective == "masked":
                    x, target, mask = data
                    err = tf.square(self(x, training=True) - target) * mask
                    loss = tf.reduce_sum(err) / tf.maximum(tf.reduce_sum(mask), 1.0)
                else:
                    v1, v2 = data
                    z1, z2 = self(v1, training=True), self(v2, training=True)
                    loss = (nt_xent_loss(z1, z2, config.temperature)
                            if config.objective == "simclr"
                            else _barlow_loss(z1, z2, config.barlow_lambda))
                # each replica's gradients are summed across replicas: scale so the update
                # is that of the mean loss (as keras.losses does under tf.distribute)
                scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
            grads = tape.gradient(scaled, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            self.tracker.update_state(loss)
            return {"loss": self.tracker.result()}

    return Pretrainer()


def pretrain(X: np.ndarray, model_config: ModelConfig, config: PretrainConfig | None = None,
             *, strategy: Any = None, deterministic: bool = True,
             spans: tuple[np.ndarray, np.ndarray] | None = None,
             log: Log = print) -> tuple[dict[str, list[np.ndarray]], dict[str, list[float]]]:
    """Pretrain the backbone of ``build_model(_, model_config)`` on unlabelled spectra ``X``.

    Returns ``(weights, history)``: the backbone weights by layer name (every layer up to
    ``features`` with weights, for :func:`trainer.contrastive.load_backbone`) and the loss per
    epoch. ``strategy``: a ``tf.distribute`` strategy (:func:`make_strategy`); the model and
    optimiser are made in its scope and Keras splits every batch over its replicas.
    ``spans``: ``(lo, hi)`` per row of ``X``, the grid points each spectrum covers (a
    :class:`~ramanedge.corpus.Corpus`'s ``lo``/``hi``); the views then respect them
    (:func:`_views_dataset`). ``None``: every row covers the whole grid.
    """
    import keras
    import tensorflow as tf

    config = config or PretrainConfig()
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != model_config.input_points:
        raise ValueError(f"need spectra of shape (N, {model_config.input_points}), got "
                         f"{X.shape}")
    if X.shape[0] < 2:
        raise ValueError(f"need at least 2 spectra to pretrain, got {X.shape[0]}")
    if spans is not None:
        spans = (np.asarray(spans[0], np.int64), np.asarray(spans[1], np.int64))
        if spans[0].shape != (X.shape[0],) or spans[1].shape != (X.shape[0],) or np.any(
                spans[0] < 0) or np.any(spans[1] > X.shape[1]) or np.any(spans[1] <= spans[0]):
            raise ValueError(f"spans must be (lo, hi) with 0 <= lo < hi <= {X.shape[1]} for "
                             f"each of the {X.shape[0]} spectra")
    strategy = strategy or tf.distribute.get_strategy()
    seed_everything(config.seed, deterministic)
    with strategy.scope():
        base = build_model(2, model_config)
        encoder = features_model(base)
        if config.objective == "masked":
            head = keras.Sequential([keras.layers.Dense(model_config.input_points)],
                                    name="decoder")
        elif config.objective == "simclr":
            head = keras.Sequential([keras.layers.Dense(256), keras.layers.ReLU(),
                                     keras.layers.Dense(config.projection_dim)],
                                    name="projection")
        else:
            head = keras.Sequential([keras.layers.Dense(512), keras.layers.BatchNormalization(),
                                     keras.layers.ReLU(),
                                     keras.layers.Dense(config.projection_dim)],
                                    name="projection")
        model = _pretrainer(encoder, head, config)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), jit_compile=False)
        model(X[:2])

    class Lines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if log is not None:
                log(f"pretrain {config.objective} {epoch + 1:3d}/{config.epochs}  loss "
                    f"{float(logs['loss']):.4f}  {time.perf_counter() - self.t0:.1f}s")

    hist = model.fit(_views_dataset(X, config, spans), epochs=config.epochs, verbose=0,
                     callbacks=[Lines()], shuffle=False)
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()]
               for layer in backbone_layers(base)}
    return weights, {"loss": [float(v) for v in hist.history["loss"]]}


def save_backbone(out: str | os.PathLike[str], weights: dict[str, list[np.ndarray]],
                  *, meta: dict[str, Any]) -> Path:
    """Write ``backbone.npz`` (arrays ``<layer>/<i>``) and ``pretrain.json`` into ``out``."""
    from ramanedge.fsutil import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}/{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}
    np.savez(out / "backbone.npz", **arrays)
    atomic_write_text(out / "pretrain.json", json.dumps(meta, indent=1) + "\n")
    return out


def load_backbone_file(folder: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """Inverse of :func:`save_backbone`: the weights by layer name."""
    path = Path(folder) / "backbone.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            items = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read pretrained weights {path}: {e}") from None
    out: dict[str, list[np.ndarray]] = {}
    try:
        keys = sorted(items, key=lambda s: (s.rsplit("/", 1)[0], int(s.rsplit("/", 1)[1])))
    except (IndexError, ValueError):
        raise ValueError(f"{path} is not a backbone file (arrays named LAYER/INDEX)") from None
    for k in keys:
        out.setdefault(k.rsplit("/", 1)[0], []).append(items[k])
    return out


def pretraining_corpus(data_root: str | os.PathLike[str], *, split_seed: int,
                       dataset: str = "rruff-raw", min_spectra: int = 8,
                       split_kind: str = "grouped", cache_dir: str | None = None,
                       keep_unknown_evaluation: bool = False,
                       log: Log = print) -> tuple[Any, dict[str, Any]]:
    """Every RRUFF spectrum usable for pretraining against one split of ``dataset``.

    :func:`ramanedge.corpus.build_corpus` minus the validation and test specimens (RRUFF ids,
    and the files themselves) of the split ``(split_kind, split_seed)`` and minus the
    *evaluation* half of the unknown minerals (:func:`ramanedge.splits.unknown_halves`), so
    neither the few-label figures nor the unknown-mineral figures see a pretraining spectrum.
    The unknown-evaluation minerals are removed by name and by specimen (RRUFF id), since
    other sets file some of their specimens under another name. ``keep_unknown_evaluation``
    keeps them (about 60 % more spectra; the backbone must then not be used for
    unknown-mineral figures). Raises :class:`~ramanedge.errors.DataError` when fewer than 2
    spectra remain. Returns ``(corpus, info)``.
    """
    from ramanedge.corpus import build_corpus
    from ramanedge.dataset import build_dataset, load_heldout
    from ramanedge.splits import make_split, unknown_evaluation

    ds = build_dataset(data_root, dataset, min_spectra=min_spectra, cache_dir=cache_dir)
    split = np.asarray(make_split(ds, split_kind, seed=split_seed))
    evaluation: list[str] = []
    eval_ids: set[str] = set()
    if not keep_unknown_evaluation:
        held = load_heldout(data_root, dataset, min_spectra=min_spectra, cache_dir=cache_dir)
        evaluation, eval_ids = unknown_evaluation(held, known=ds.labels)
    out_ids = {sid for sid, s in zip(ds.sample_ids, split, strict=True) if s != "train" and sid}
    out_paths = [p for p, s in zip(ds.paths, split, strict=True) if s != "train"]
    full = build_corpus(data_root, cache_dir=cache_dir,
                        progress=None if log is None else log)
    corpus = full.excluding(sample_ids=out_ids | eval_ids, minerals=evaluation, paths=out_paths)
    if len(corpus) < 2:
        raise DataError(f"the pretraining corpus is empty after leaving out the split's "
                        f"validation/test specimens ({len(corpus)} of {len(full)} spectra "
                        f"left in {data_root}); pretraining needs more spectra")
    info = {"dataset": dataset, "split_kind": split_kind, "split_seed": int(split_seed),
            "min_spectra": int(min_spectra), "corpus_all": len(full),
            "excluded_specimens": len(out_ids), "excluded_minerals": len(evaluation),
            "keep_unknown_evaluation": bool(keep_unknown_evaluation),
            "excluded_unknown_specimens": sorted(eval_ids),
            "corpus": corpus.summary(), "excluded_ids": sorted(out_ids),
            "excluded_paths": sorted(p for p, sid, s in zip(ds.paths, ds.sample_ids, split,
                                                            strict=True)
                                     if s != "train" and not sid)}
    if log is not None:
        log(f"pretraining corpus: {len(corpus)} of {len(full)} spectra (without the "
            f"{len(out_ids)} val/test specimens of split {split_kind} {split_seed} and the "
            f"{len(evaluation)} unknown-evaluation minerals)")
    return corpus, info


def _is_chief(strategy: Any) -> bool:
    """Whether this process writes the result, as ``strategy``'s cluster resolver says: the
    ``chief`` task, or worker 0 when the cluster has no chief; any process of a strategy
    without a cluster (``default``, ``mirrored``)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return False
    return resolver.task_type == "worker" and int(resolver.task_id or 0) == 0


def pretrain_run(out: str | os.PathLike[str], data_root: str | os.PathLike[str],
                 model_config: ModelConfig, config: PretrainConfig, *, split_seed: int = 0,
                 split_kind: str = "grouped", strategy: str = "default",
                 dataset: str = "rruff-raw", min_spectra: int = 8,
                 cache_dir: str | None = None, keep_unknown_evaluation: bool = False,
                 log: Log = print) -> Path:
    """Pretrain on :func:`pretraining_corpus` and write ``backbone.npz`` + ``pretrain.json``.

    ``strategy``: one of :data:`STRATEGIES` (:func:`make_strategy`); with ``multiworker``
    every worker runs this with its own ``TF_CONFIG`` and only the chief writes ``out``.
    """
    import platform
    from datetime import UTC, datetime

    from ramanedge.machine import cpu_model

    corpus, info = pretraining_corpus(data_root, split_seed=split_seed, split_kind=split_kind,
                                      dataset=dataset, min_spectra=min_spectra,
                                      cache_dir=cache_dir,
                                      keep_unknown_evaluation=keep_unknown_evaluation, log=log)
    strat = make_strategy(strategy)
    t0 = time.perf_counter()
    weights, history = pretrain(corpus.X, model_config, config, strategy=strat,
                                spans=(corpus.lo, corpus.hi) if config.within_spans else None,
                                log=log)
    meta = {"pretrain": config.to_dict(), "model": model_config.to_dict(), **info,
            "strategy": strategy, "replicas": int(strat.num_replicas_in_sync),
            "history": history, "seconds": round(time.perf_counter() - t0, 1),
            "machine": f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} cpu)",
            "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if _is_chief(strat):
        save_backbone(out, weights, meta=meta)
        if log is not None:
            log(f"wrote {Path(out) / 'backbone.npz'} ({meta['seconds']:.0f} s)")
    return Path(out)
