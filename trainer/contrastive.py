"""Contrastive (SimCLR) pretraining of the CNN backbone on unlabelled spectra.

The backbone (every layer of :func:`trainer.model.build_model` up to ``features``) plus a
small projection head (Dense 256 - ReLU - Dense ``projection_dim``) learn with the NT-Xent
loss (temperature ``SSLConfig.temperature``) to map two random Raman views of one spectrum
(:func:`trainer.raman_augment.raman_views`) close together and views of different spectra
apart. No label is used. The projection head is dropped; :func:`load_backbone` copies the
weights into a fresh classifier, which :func:`trainer.ssl.train_ssl` then fine-tunes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.model import FEATURES_LAYER, ModelConfig, build_model
from trainer.raman_augment import raman_views
from trainer.train import Log, graph_step, seed_everything

if TYPE_CHECKING:
    from trainer.ssl import SSLConfig


def backbone_layers(model: Any) -> list[Any]:
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
    step = graph_step(step, [spec, spec], n_epochs * -(-X.shape[0] // bs))
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
    return {layer.name: layer.get_weights() for layer in backbone_layers(base)}


def load_backbone(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Copy pretrained backbone weights (from :func:`pretrain_contrastive`) into ``model``."""
    for layer in backbone_layers(model):
        if layer.name not in weights:
            raise ValueError(f"pretrained weights lack layer {layer.name!r}")
        layer.set_weights(weights[layer.name])
