"""Semi-supervised GAN (Odena 2016; Salimans et al. 2016) on partly labelled spectra.

A generator of spectra and a discriminator with K + 1 outputs (K minerals + "generated")
built from the CNN's backbone. Discriminator loss = class-weighted cross-entropy on labelled
spectra + ``-log(1 - p_fake)`` on unlabelled real spectra + ``-log p_fake`` on generated
ones; generator loss = feature matching on the ``features`` layer (Salimans et al.).
Validation, learning-rate plateau and early stopping follow the trainer's rules
(:class:`trainer.train.Plateau`). Exported as an ordinary K-class model
(:func:`export_k_class`): the ``probs`` layer gets the first K columns of the K + 1 logit
layer, so its softmax is the softmax over the first K logits (the fake logit dropped).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.model import FEATURES_LAYER, PROBS_LAYER, ModelConfig, build_model
from trainer.train import (
    Log,
    Plateau,
    TrainConfig,
    TrainResult,
    check_sets,
    class_weights,
    graph_step,
    seed_everything,
    val_logs,
)

if TYPE_CHECKING:
    from trainer.ssl import SSLConfig


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
    X, y_masked, X_val, y_val = check_sets(X, y_masked, X_val, y_val)
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

    sched = Plateau(tc)
    best_weights = disc.get_weights()
    history: dict[str, list[float]] = {k: [] for k in ("loss", "accuracy", "unsup_real",
                                                       "unsup_fake", "g_loss", "val_loss",
                                                       "val_accuracy", "lr")}
    bs = tc.batch_size
    bl = min(bs, lab.size)
    t_start, epochs_run = time.perf_counter(), 0
    n_epochs = min(config.sgan_epochs, tc.epochs)
    n_steps = n_epochs * -(-X.shape[0] // bs)
    d_step = graph_step(d_step, [xs, tf.TensorSpec((None,), tf.int64),
                                 tf.TensorSpec((None,), tf.float32), xs, zs], n_steps)
    g_step = graph_step(g_step, [xs, zs], n_steps)
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
        vl = val_logs(probs, y_val)
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
