"""Learning from few labels: label-fraction splits, contrastive pretraining and an SGAN.

Three training methods share one entry point, :func:`train_ssl`, which receives the training
spectra with labels **only for the labelled part** (``-1`` elsewhere), so the hidden labels
cannot reach training by construction:

``none``
    Supervised only: the CNN of :func:`trainer.model.build_model` trained on the labelled
    spectra (the unlabelled ones are ignored).
``contrastive``
    SimCLR-style pretraining (NT-Xent loss, temperature ``SSLConfig.temperature``) of the CNN
    backbone (every layer up to ``features``) plus a small projection head on **all** training
    spectra (labels never used), with the Raman views of :mod:`trainer.raman_augment`
    (x-shift, gain, fluorescence-like baselines, noise, cosmic-ray spikes); the projection head
    is dropped and the whole network fine-tuned on the labelled part.
``sgan``
    Semi-supervised GAN (Odena 2016; Salimans et al. 2016): a generator of spectra and a
    discriminator with K + 1 outputs (K minerals + "generated") built from the same backbone.
    Discriminator loss = class-weighted cross-entropy on labelled spectra + ``-log(1 -
    p_fake)`` on unlabelled real spectra + ``-log p_fake`` on generated ones; generator loss =
    feature matching on the ``features`` layer (Salimans et al.). Exported as an ordinary
    K-class model: the ``probs`` layer gets the first K columns of the K + 1 logit layer, so
    its softmax is the softmax over the first K logits (the fake logit dropped).

All fine-tuning / classifier training uses :func:`fit_classifier`, the paper's recipe as in
:func:`trainer.train.train_model` (class-weighted CE, Adam, LR x ``lr_factor`` on plateau,
early stopping, best weights restored) but starting from a given model. :func:`ssl_train_run`
writes the same run folder as :func:`trainer.run.train_run` (plus ``labelled.csv`` and an
``"ssl"`` section in config.json), so quantize and the edge runtime use the result unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import DataError
from trainer.model import FEATURES_LAYER, PROBS_LAYER, ModelConfig, build_model
from trainer.raman_augment import RamanAugmentConfig, raman_views
from trainer.train import (
    PAPER_TRAIN,
    TrainConfig,
    TrainResult,
    class_weights,
    epoch_line,
    predict_probs,
    seed_everything,
)

SSL_METHODS = ("none", "contrastive", "sgan")
GRAPH_MIN_STEPS = 60
"""Custom training steps run as ``tf.function`` graphs from this many steps on; shorter runs
(tests) stay eager, where tracing would cost more than it saves."""
UNLABELLED = -1
Log = Callable[[str], None] | None


@dataclass(frozen=True)
class SSLConfig:
    """Settings of a few-label training run (stored under ``"ssl"`` in config.json)."""

    method: str = "none"
    labelled_fraction: float = 1.0
    label_seed: int = 0
    """Seed of the choice of labelled specimens (independent of the training seed)."""
    pretrain_epochs: int = 60
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3
    temperature: float = 0.2
    projection_dim: int = 64
    views: RamanAugmentConfig = field(default_factory=RamanAugmentConfig)
    sgan_epochs: int = 60
    sgan_lr: float = 1e-3
    noise_dim: int = 64
    unsup_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in SSL_METHODS:
            raise ValueError(f"ssl method must be one of {', '.join(SSL_METHODS)}, "
                             f"got {self.method!r}")
        if not 0.0 < float(self.labelled_fraction) <= 1.0:
            raise ValueError(f"labelled fraction must be in (0, 1], got {self.labelled_fraction}")
        if self.pretrain_epochs < 0 or self.sgan_epochs < 1:
            raise ValueError("pretrain_epochs must be >= 0 and sgan_epochs >= 1")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if isinstance(self.views, dict):
            object.__setattr__(self, "views", RamanAugmentConfig(**self.views))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["views"] = self.views.to_dict()
        return d


# ---------------------------------------------------------------- label fractions

def labelled_fraction_mask(y: np.ndarray, groups: np.ndarray, fraction: float,
                           seed: int = 0) -> np.ndarray:
    """Choose which training spectra keep their label: a bool mask aligned with ``y``.

    Stratified by mineral and grouped by specimen: for every mineral, its specimens
    (``groups``, the RRUFF sample ids) are shuffled with ``seed`` and the first
    ``max(1, round(fraction * n_specimens))`` keep the labels of all their spectra, so every
    mineral keeps at least one labelled specimen and no specimen is split between the
    labelled and the unlabelled part. ``fraction = 1`` keeps everything. A specimen whose
    spectra carry several labels (not in RRUFF) belongs to its majority mineral.
    """
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray([str(g) for g in groups])
    if y.shape != groups.shape:
        raise ValueError(f"y and groups differ in length: {y.shape} vs {groups.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return np.ones(y.shape, dtype=bool)
    members: dict[str, np.ndarray] = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    by_label: dict[int, list[str]] = {}
    for g in sorted(members):
        by_label.setdefault(int(np.bincount(y[members[g]]).argmax()), []).append(g)
    rng = np.random.default_rng(seed)
    mask = np.zeros(y.shape, dtype=bool)
    for lab in sorted(by_label):
        gs = by_label[lab]
        gs = [gs[i] for i in rng.permutation(len(gs))]
        take = max(1, int(round(fraction * len(gs))))
        for g in gs[:take]:
            mask[members[g]] = True
    return mask


def hide_labels(y: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Copy of ``y`` with every unlabelled entry set to ``-1`` (:data:`UNLABELLED`)."""
    out = np.asarray(y, dtype=np.int64).copy()
    out[~np.asarray(labelled, dtype=bool)] = UNLABELLED
    return out


# ---------------------------------------------------------------- the training loop

class _Plateau:
    """The LR-plateau / early-stopping / best-epoch rules of :func:`trainer.train.train_model`."""

    def __init__(self, tc: TrainConfig) -> None:
        self.tc = tc
        self.higher = tc.monitor == "val_accuracy"
        self.best = -math.inf if self.higher else math.inf
        self.best_epoch = 0
        self.lr = float(tc.learning_rate)
        self.wait_lr = self.wait_stop = 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool, bool]:
        """Feed one epoch's monitored value; returns ``(improved, lr_changed, stop)``."""
        tc = self.tc
        if not math.isfinite(value):
            raise FloatingPointError(f"{tc.monitor} became {value} at epoch {epoch}")
        better_lr = value > self.best + tc.min_delta if self.higher \
            else value < self.best - tc.min_delta
        improved = value > self.best if self.higher else value < self.best
        if improved:
            self.best, self.best_epoch, self.wait_stop = value, epoch, 0
        else:
            self.wait_stop += 1
        changed = False
        if better_lr:
            self.wait_lr = 0
        else:
            self.wait_lr += 1
            if self.wait_lr >= tc.lr_patience and self.lr > tc.min_lr:
                self.lr = max(self.lr * tc.lr_factor, tc.min_lr)
                self.wait_lr, changed = 0, True
        return improved, changed, self.wait_stop >= tc.early_stop_patience


def _val_logs(probs: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    p = probs[np.arange(y_val.size), y_val]
    return {"val_loss": float(-np.mean(np.log(np.clip(p, 1e-7, 1.0)))),
            "val_accuracy": float(np.mean(probs.argmax(1) == y_val))}


def _check_xy(X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: spectra {X.shape} and labels {y.shape} do not match")
    return X, y


def fit_classifier(model: Any, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
                   y_val: np.ndarray, n_classes: int, train_config: TrainConfig,
                   *, epoch_samples: int | None = None, log: Log = print) -> TrainResult:
    """Train a K-class softmax ``model`` (fresh or pretrained) with the trainer's recipe.

    Same rules as :func:`trainer.train.train_model` (class weights from ``y``, per-epoch
    permutation and augmentation drawn from ``(seed, epoch)``, plateau LR, early stopping,
    best weights restored); the model is compiled here with Adam(``learning_rate``).
    ``epoch_samples``: spectra drawn per epoch (default ``len(X)``); with few labels,
    :func:`train_ssl` sets it to the number of all training spectra, so an epoch has the same
    number of optimiser steps at every labelled fraction (the patience rules then allow the
    same amount of training), by concatenating fresh permutations of ``X``.
    """
    import keras

    from trainer.augment import augment_batch, split_background

    tc = train_config
    X, y = _check_xy(X, y, "training set")
    X_val, y_val = _check_xy(X_val, y_val, "validation set")
    if X.shape[0] == 0 or X_val.shape[0] == 0:
        raise ValueError("training and validation sets must both be non-empty")
    if y.min() < 0:
        raise ValueError("fit_classifier needs labelled spectra only (no -1 labels)")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=tc.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    w = class_weights(y, n_classes) if tc.class_weighting else np.ones(n_classes)
    sample_w = w[y].astype(np.float32)
    bands = backgrounds = None
    if tc.augment.background:
        bands, backgrounds = split_background(X)
    sched = _Plateau(tc)
    best_weights = model.get_weights()
    history: dict[str, list[float]] = {k: [] for k in
                                       ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
    t_start, epochs_run = time.perf_counter(), 0
    for epoch in range(tc.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([tc.seed, epoch])
        n_draw = max(int(epoch_samples or 0), X.shape[0])
        order = np.concatenate([rng.permutation(X.shape[0])
                                for _ in range(-(-n_draw // X.shape[0]))])[:n_draw]
        xb = X[order]
        if tc.augment.enabled:
            xb = augment_batch(xb, tc.augment, rng,
                               bands=None if bands is None else bands[order],
                               backgrounds=backgrounds)
        yb, wb = y[order], sample_w[order]
        loss_sum = acc_sum = 0.0
        for i in range(0, xb.shape[0], tc.batch_size):
            sl = slice(i, i + tc.batch_size)
            model.reset_metrics()
            step = model.train_on_batch(xb[sl], yb[sl], sample_weight=wb[sl], return_dict=True)
            loss_sum += float(step["loss"]) * yb[sl].shape[0]
            acc_sum += float(step["accuracy"]) * yb[sl].shape[0]
        logs = {"loss": loss_sum / xb.shape[0], "accuracy": acc_sum / xb.shape[0],
                **_val_logs(predict_probs(model, X_val), y_val), "lr": sched.lr}
        for k, v in logs.items():
            history[k].append(v)
        epochs_run = epoch + 1
        if log is not None:
            log(epoch_line(epochs_run, tc.epochs, logs, time.perf_counter() - t0))
        improved, changed, stop = sched.update(logs[tc.monitor], epochs_run)
        if improved:
            best_weights = model.get_weights()
        if changed:
            model.optimizer.learning_rate.assign(sched.lr)
        if stop:
            break
    model.set_weights(best_weights)
    return TrainResult(model=model, history=history, best_epoch=sched.best_epoch,
                       epochs_run=epochs_run, seconds=time.perf_counter() - t_start)


# ---------------------------------------------------------------- contrastive pretraining

def _backbone_layers(model: Any) -> list[Any]:
    """Layers of a :func:`build_model` model with weights, up to and including ``features``."""
    out = []
    for layer in model.layers:
        if layer.weights:
            out.append(layer)
        if layer.name == FEATURES_LAYER:
            return out
    raise ValueError(f"model has no '{FEATURES_LAYER}' layer")


def nt_xent_loss(z1: Any, z2: Any, temperature: float) -> Any:
    """SimCLR's NT-Xent loss of two batches of projections (TensorFlow tensors, (B, d))."""
    import tensorflow as tf

    b = tf.shape(z1)[0]
    z = tf.math.l2_normalize(tf.concat([z1, z2], axis=0), axis=1)
    sim = tf.matmul(z, z, transpose_b=True) / temperature
    sim = sim - 1e9 * tf.eye(2 * b)
    target = tf.concat([tf.range(b, 2 * b), tf.range(0, b)], axis=0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(target, sim))


def pretrain_contrastive(X: np.ndarray, model_config: ModelConfig, config: SSLConfig,
                         *, seed: int = 0, deterministic: bool = True,
                         max_epochs: int | None = None,
                         log: Log = print) -> dict[str, list[np.ndarray]]:
    """Contrastive (SimCLR / NT-Xent) pretraining of the backbone on unlabelled spectra ``X``.

    Returns the backbone weights by layer name (every layer of :func:`build_model` up to
    ``features`` that has weights), ready for :func:`load_backbone`. No label is used.
    Runs ``min(config.pretrain_epochs, max_epochs)`` epochs.
    """
    import keras
    import tensorflow as tf

    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"need at least 2 spectra of shape (N, P) to pretrain, got {X.shape}")
    seed_everything(seed, deterministic)
    base = build_model(2, model_config)
    encoder = keras.Model(base.input, base.get_layer(FEATURES_LAYER).output)
    proj = keras.Sequential([keras.layers.Dense(256), keras.layers.ReLU(),
                             keras.layers.Dense(config.projection_dim)], name="projection")
    proj.build((None, model_config.dense_units))
    opt = keras.optimizers.Adam(config.pretrain_lr)
    variables = encoder.trainable_variables + proj.trainable_variables
    tau = float(config.temperature)

    spec = tf.TensorSpec((None, model_config.input_points), tf.float32)

    def step(v1, v2):
        with tf.GradientTape() as tape:
            loss = nt_xent_loss(proj(encoder(v1, training=True), training=True),
                                proj(encoder(v2, training=True), training=True), tau)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    bs = max(2, min(config.pretrain_batch, X.shape[0]))
    n_epochs = config.pretrain_epochs if max_epochs is None else min(config.pretrain_epochs,
                                                                      max_epochs)
    if n_epochs * -(-X.shape[0] // bs) >= GRAPH_MIN_STEPS:
        step = tf.function(step, input_signature=[spec, spec])
    for epoch in range(n_epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, 7919, epoch])
        order = rng.permutation(X.shape[0])
        total, n = 0.0, 0
        for i in range(0, X.shape[0] - 1, bs):
            idx = order[i:i + bs]
            if idx.size < 2:
                continue
            v1 = raman_views(X[idx], config.views, rng)
            v2 = raman_views(X[idx], config.views, rng)
            total += float(step(tf.constant(v1), tf.constant(v2))) * idx.size
            n += idx.size
        if log is not None:
            log(f"pretrain {epoch + 1:3d}/{n_epochs}  nt-xent {total / n:.4f}  "
                f"{time.perf_counter() - t0:.1f}s")
    return {layer.name: layer.get_weights() for layer in _backbone_layers(base)}


def load_backbone(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Copy pretrained backbone weights (from :func:`pretrain_contrastive`) into ``model``."""
    for layer in _backbone_layers(model):
        if layer.name not in weights:
            raise ValueError(f"pretrained weights lack layer {layer.name!r}")
        layer.set_weights(weights[layer.name])


# ---------------------------------------------------------------- SGAN

def build_generator(noise_dim: int, n_points: int) -> Any:
    """Generator of max-normalised spectra: Dense -> 3 x (upsample x2, Conv1D) -> sigmoid.

    The output is divided by its maximum, so generated spectra look like
    :func:`ramanedge.grid.preprocess` output (max 1, non-negative).
    """
    import keras

    if n_points % 8:
        raise ValueError(f"generator needs a grid length divisible by 8, got {n_points}")
    z = keras.Input(shape=(noise_dim,), name="z")
    x = keras.layers.Dense((n_points // 8) * 32, name="g_dense")(z)
    x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Reshape((n_points // 8, 32))(x)
    for i, f in enumerate((32, 16)):
        x = keras.layers.UpSampling1D(2)(x)
        x = keras.layers.Conv1D(f, 9, padding="same", name=f"g_conv{i + 1}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.UpSampling1D(2)(x)
    x = keras.layers.Conv1D(1, 9, padding="same", activation="sigmoid", name="g_out")(x)
    x = keras.layers.Reshape((n_points,))(x)
    x = keras.layers.Lambda(lambda t: t / (keras.ops.max(t, axis=1, keepdims=True) + 1e-6),
                            name="g_norm")(x)
    return keras.Model(z, x, name="generator")


@dataclass
class SGANResult(TrainResult):
    """:class:`TrainResult` of :func:`train_sgan` plus the generator (for inspection)."""

    generator: Any = None


def train_sgan(X: np.ndarray, y_masked: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
               n_classes: int, model_config: ModelConfig, train_config: TrainConfig,
               config: SSLConfig, *, log: Log = print) -> SGANResult:
    """Train a semi-supervised GAN; return the exported K-class model (best val weights).

    ``y_masked``: labels of ``X`` with ``-1`` for every unlabelled spectrum (all of ``X`` is
    used as unlabelled real data). The monitored validation metric, LR plateau and early
    stopping follow ``train_config`` (epochs: ``min(config.sgan_epochs, train_config.epochs)``;
    one epoch = one pass over ``X``).
    """
    import keras
    import tensorflow as tf

    tc = train_config
    X, y_masked = _check_xy(X, y_masked, "training set")
    X_val, y_val = _check_xy(X_val, y_val, "validation set")
    lab = np.flatnonzero(y_masked >= 0)
    if lab.size == 0:
        raise ValueError("SGAN needs at least one labelled spectrum")
    seed_everything(tc.seed, tc.deterministic)
    K = int(n_classes)
    base = build_model(K, model_config)
    feats = base.get_layer(FEATURES_LAYER).output
    logits = keras.layers.Dense(K + 1, name="logits_k1")(base.get_layer("dropout").output)
    disc = keras.Model(base.input, [logits, feats], name="discriminator")
    gen = build_generator(config.noise_dim, model_config.input_points)
    d_opt = keras.optimizers.Adam(config.sgan_lr, beta_1=0.5)
    g_opt = keras.optimizers.Adam(config.sgan_lr, beta_1=0.5)
    cw = (class_weights(y_masked[lab], K) if tc.class_weighting else np.ones(K)).astype(np.float32)
    wu = float(config.unsup_weight)

    P = model_config.input_points
    xs = tf.TensorSpec((None, P), tf.float32)
    zs = tf.TensorSpec((None, config.noise_dim), tf.float32)

    def d_step(xl, yl, wl, xu, z):
        with tf.GradientTape() as tape:
            ll, _ = disc(xl, training=True)
            lu, _ = disc(xu, training=True)
            lf, _ = disc(gen(z, training=True), training=True)
            ce = tf.reduce_logsumexp(ll, axis=1) - tf.gather(ll, yl, axis=1, batch_dims=1)
            sup = tf.reduce_mean(wl * ce)
            real = tf.reduce_mean(tf.reduce_logsumexp(lu, axis=1)
                                  - tf.reduce_logsumexp(lu[:, :K], axis=1))
            fake = tf.reduce_mean(tf.reduce_logsumexp(lf, axis=1) - lf[:, K])
            loss = sup + wu * (real + fake)
        v = disc.trainable_variables
        d_opt.apply_gradients(zip(tape.gradient(loss, v), v, strict=True))
        return sup, real, fake

    def g_step(xu, z):
        with tf.GradientTape() as tape:
            _, fr = disc(xu, training=True)
            _, ff = disc(gen(z, training=True), training=True)
            loss = tf.reduce_mean(tf.square(tf.reduce_mean(fr, 0) - tf.reduce_mean(ff, 0)))
        v = gen.trainable_variables
        g_opt.apply_gradients(zip(tape.gradient(loss, v), v, strict=True))
        return loss

    def val_probs() -> np.ndarray:
        out = []
        for i in range(0, X_val.shape[0], 256):
            lg = np.asarray(disc(X_val[i:i + 256], training=False)[0])[:, :K]
            e = np.exp(lg - lg.max(1, keepdims=True))
            out.append(e / e.sum(1, keepdims=True))
        return np.concatenate(out)

    sched = _Plateau(tc)
    best_weights = disc.get_weights()
    history: dict[str, list[float]] = {k: [] for k in ("loss", "accuracy", "unsup_real",
                                                       "unsup_fake", "g_loss", "val_loss",
                                                       "val_accuracy", "lr")}
    bs = tc.batch_size
    bl = min(bs, lab.size)
    t_start, epochs_run = time.perf_counter(), 0
    n_epochs = min(config.sgan_epochs, tc.epochs)
    if n_epochs * -(-X.shape[0] // bs) >= GRAPH_MIN_STEPS:
        d_step = tf.function(d_step, input_signature=[xs, tf.TensorSpec((None,), tf.int64),
                                                      tf.TensorSpec((None,), tf.float32), xs, zs])
        g_step = tf.function(g_step, input_signature=[xs, zs])
    for epoch in range(n_epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([tc.seed, 104729, epoch])
        order = rng.permutation(X.shape[0])
        lab_stream = np.concatenate([rng.permutation(lab) for _ in
                                     range(math.ceil(X.shape[0] / bs * bl / lab.size) + 1)])
        sums = np.zeros(4)
        steps = 0
        for s, i in enumerate(range(0, X.shape[0], bs)):
            iu = order[i:i + bs]
            il = lab_stream[s * bl:(s + 1) * bl]
            yl = y_masked[il]
            z1 = rng.normal(size=(iu.size, config.noise_dim)).astype(np.float32)
            z2 = rng.normal(size=(iu.size, config.noise_dim)).astype(np.float32)
            sup, real, fake = d_step(X[il], yl, cw[yl], X[iu], z1)
            g = g_step(X[iu], z2)
            sums += [float(sup), float(real), float(fake), float(g)]
            steps += 1
        probs = val_probs()
        vl = _val_logs(probs, y_val)
        logs = {"loss": sums[0] / steps, "accuracy": float("nan"), "unsup_real": sums[1] / steps,
                "unsup_fake": sums[2] / steps, "g_loss": sums[3] / steps, **vl, "lr": sched.lr}
        for k, v in logs.items():
            history[k].append(v)
        epochs_run = epoch + 1
        if log is not None:
            log(f"sgan {epochs_run:3d}/{n_epochs}  sup {logs['loss']:.4f}  "
                f"real {logs['unsup_real']:.4f}  fake {logs['unsup_fake']:.4f}  "
                f"g {logs['g_loss']:.4f}  val_loss {vl['val_loss']:.4f}  "
                f"val_acc {vl['val_accuracy']:.3f}  lr {sched.lr:.2e}  "
                f"{time.perf_counter() - t0:.1f}s")
        improved, changed, stop = sched.update(logs[tc.monitor], epochs_run)
        if improved:
            best_weights = disc.get_weights()
        if changed:
            d_opt.learning_rate.assign(sched.lr * config.sgan_lr / tc.learning_rate)
        if stop:
            break
    disc.set_weights(best_weights)
    model = export_k_class(base, disc.get_layer("logits_k1"), K)
    return SGANResult(model=model, history=history, best_epoch=sched.best_epoch,
                      epochs_run=epochs_run, seconds=time.perf_counter() - t_start,
                      generator=gen)


def export_k_class(base: Any, logits_layer: Any, n_classes: int) -> Any:
    """Turn the SGAN discriminator into an ordinary K-class model (in place on ``base``).

    ``base`` is the :func:`build_model` model whose layers the discriminator shares; its
    ``probs`` layer gets the first K columns of the K + 1 logit layer, so ``probs`` =
    softmax over the first K logits. Returns ``base`` (layer names ``features``/``probs``).
    """
    W, b = logits_layer.get_weights()
    base.get_layer(PROBS_LAYER).set_weights([W[:, :n_classes], b[:n_classes]])
    return base


# ---------------------------------------------------------------- one entry point

def train_ssl(X_train: np.ndarray, y_masked: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
              n_classes: int, model_config: ModelConfig | None = None,
              train_config: TrainConfig | None = None, config: SSLConfig | None = None,
              *, pretrained: dict[str, list[np.ndarray]] | None = None,
              log: Log = print) -> TrainResult:
    """Train with ``config.method`` on spectra whose unlabelled labels are ``-1``.

    ``y_masked`` is the only label input: the labels of unlabelled spectra never enter this
    function. ``pretrained``: backbone weights of an earlier :func:`pretrain_contrastive` on
    the same ``X_train`` (contrastive pretraining uses no labels, so one pretraining serves
    every labelled fraction); computed here when ``None``.
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or PAPER_TRAIN
    config = config or SSLConfig()
    X_train, y_masked = _check_xy(X_train, y_masked, "training set")
    if y_masked.max() >= n_classes or y_masked.min() < UNLABELLED:
        raise ValueError(f"labels must be in -1..{n_classes - 1}")
    lab = y_masked >= 0
    if not lab.any():
        raise ValueError("no labelled training spectrum")
    if config.method == "sgan":
        return train_sgan(X_train, y_masked, X_val, y_val, n_classes, model_config,
                          train_config, config, log=log)
    if config.method == "contrastive" and pretrained is None:
        pretrained = pretrain_contrastive(X_train, model_config, config,
                                          seed=train_config.seed,
                                          deterministic=train_config.deterministic,
                                          max_epochs=train_config.epochs, log=log)
    seed_everything(train_config.seed, train_config.deterministic)
    model = build_model(n_classes, model_config)
    if config.method == "contrastive":
        load_backbone(model, pretrained)
    return fit_classifier(model, X_train[lab], y_masked[lab], X_val, y_val, n_classes,
                          train_config, epoch_samples=X_train.shape[0], log=log)


# ---------------------------------------------------------------- run folder

def ssl_train_run(out: str | os.PathLike, data: Any, model_config: ModelConfig | None = None,
                  train_config: TrainConfig | None = None, config: SSLConfig | None = None,
                  *, overwrite: bool = False, log: Log = print) -> Path:
    """Like :func:`trainer.run.train_run` with a labelled fraction and an SSL method.

    Writes the same run folder (model.keras, labels.json, config.json, split.csv,
    metrics.json, history.json, confusion.png) plus ``labelled.csv`` (``path,labelled`` for
    the training spectra) and ``config.json["ssl"]`` (the :class:`SSLConfig` and counts).
    Validation and test parts of the split are untouched.
    """
    from trainer.model import count_params
    from trainer.run import (
        SPLITS,
        check_output_folder,
        load_data,
        make_or_read_split,
        write_run,
    )

    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    config = config or SSLConfig()
    out = Path(out)
    check_output_folder(out, overwrite)
    ds = load_data(data, log)
    split = make_or_read_split(ds, data)
    K = len(ds.labels)
    tr, va, te = (split == s for s in SPLITS)
    tr_idx = np.flatnonzero(tr)
    groups = np.array([sid or f"#{p}" for sid, p in zip(ds.sample_ids, ds.paths, strict=True)])
    lab_mask = labelled_fraction_mask(ds.y[tr], groups[tr], config.labelled_fraction,
                                      config.label_seed)
    y_masked = hide_labels(ds.y[tr], lab_mask)
    n_lab = int(lab_mask.sum())
    if log is not None:
        log(f"split: {int(tr.sum())} train ({n_lab} labelled, "
            f"{len(set(groups[tr][lab_mask]))} of {len(set(groups[tr]))} specimens) / "
            f"{int(va.sum())} val / {int(te.sum())} test; ssl {config.method}; model "
            f"{count_params(model_config, K):,} parameters")
    if not np.any(va):
        raise DataError("the split has no validation spectra")
    result = train_ssl(ds.X[tr], y_masked, ds.X[va], ds.y[va], K, model_config, train_config,
                       config, log=log)
    lines = ["path,labelled"] + [f"{ds.paths[i]},{int(m)}"
                                 for i, m in zip(tr_idx, lab_mask, strict=True)]
    test = write_run(
        out, ds, split, data, model_config, train_config, result,
        extra_config={"ssl": {**config.to_dict(), "n_labelled": n_lab,
                              "n_unlabelled": int(tr.sum()) - n_lab}},
        extra_metrics={"n_labelled": n_lab},
        extra_files={"labelled.csv": "\n".join(lines) + "\n"},
        title=f"{data.dataset} test ({config.method}, {100 * config.labelled_fraction:g}% labels)",
    )
    if log is not None:
        log(f"test: top-1 {100 * test['top1']:.1f}%  top-3 {100 * test['top3']:.1f}%  "
            f"(n={test['n']}, {result.epochs_run} epochs, {result.seconds:.0f} s)")
        log(f"run written to {out}")
    return out



class SSLOptionError(DataError):
    """An invalid ``--labelled-fraction`` / ``--ssl`` value."""


def ssl_cli_train(out: str | os.PathLike, data: Any, model_config: ModelConfig,
                  train_config: TrainConfig, labelled_fraction: float, method: str,
                  *, overwrite: bool = False, log: Log = print) -> Path:
    """Back end of ``ramanedge train --labelled-fraction F --ssl METHOD`` (see trainer.cli).

    Validates the two options (a bad value raises :class:`SSLOptionError`, one line in the
    CLI) and calls :func:`ssl_train_run` with ``label_seed`` = the training seed.
    """
    try:
        config = SSLConfig(method=method, labelled_fraction=float(labelled_fraction),
                           label_seed=train_config.seed)
    except ValueError as e:
        raise SSLOptionError(f"{e} (--labelled-fraction takes a number in (0, 1], e.g. 0.1; "
                             "--ssl none|contrastive|sgan)") from None
    return ssl_train_run(out, data, model_config, train_config, config, overwrite=overwrite,
                         log=log)
