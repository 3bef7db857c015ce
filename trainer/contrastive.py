"""Contrastive (SimCLR) pretraining of the CNN backbone on unlabelled spectra.

The backbone (every layer of :func:`trainer.model.build_model` up to ``features``) plus a
small projection head (Dense 256 - ReLU - Dense ``projection_dim``) learn with the NT-Xent
loss (:func:`nt_xent_loss`, temperature ``SSLConfig.temperature``) to map two random Raman
views of one spectrum (:func:`trainer.raman_augment.raman_views`) close together and views
of different spectra apart. No label is used. The training itself is the ``simclr``
objective of :func:`trainer.pretrain.pretrain`; :func:`pretrain_contrastive` adapts an
:class:`~trainer.ssl.SSLConfig` to it. The projection head is dropped;
:func:`load_backbone` copies the weights into a fresh classifier, which
:func:`trainer.ssl.train_ssl` then fine-tunes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.model import FEATURES_LAYER, ModelConfig, build_model
from trainer.train import Log, seed_everything

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
    """Contrastive (SimCLR / NT-Xent) pretraining of the backbone on unlabelled spectra ``X``
    (``ramanedge train --ssl contrastive``: the run's own training spectra).

    The ``simclr`` objective of :func:`trainer.pretrain.pretrain` (one implementation for
    this and ``ramanedge pretrain``) with the settings of ``config``: ``pretrain_epochs``
    (at most ``max_epochs``), ``pretrain_batch``, ``pretrain_lr``, ``temperature``,
    ``projection_dim`` and ``views``. Returns the backbone weights by layer name (every
    layer of :func:`build_model` up to ``features`` that has weights), ready for
    :func:`load_backbone`. No label is used; zero epochs give the initial weights. As in
    ``ramanedge pretrain``, an epoch is ``N // batch`` full batches (the remainder, a
    different part each epoch, waits for the next one) and the batch is at least 4.
    """
    from trainer.pretrain import PretrainConfig, pretrain

    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"need at least 2 spectra of shape (N, P) to pretrain, got {X.shape}")
    n_epochs = config.pretrain_epochs if max_epochs is None else min(config.pretrain_epochs,
                                                                      max_epochs)
    if n_epochs < 1:
        seed_everything(seed, deterministic)
        base = build_model(2, model_config)
        return {layer.name: layer.get_weights() for layer in backbone_layers(base)}
    cfg = PretrainConfig(objective="simclr", epochs=n_epochs,
                         batch_size=max(4, min(config.pretrain_batch, X.shape[0])),
                         learning_rate=config.pretrain_lr, temperature=config.temperature,
                         projection_dim=config.projection_dim, seed=seed, views=config.views)
    weights, _ = pretrain(X, model_config, cfg, deterministic=deterministic, log=log)
    return weights


def load_backbone(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Copy pretrained backbone weights (from :func:`pretrain_contrastive`) into ``model``."""
    for layer in backbone_layers(model):
        if layer.name not in weights:
            raise ValueError(f"pretrained weights lack layer {layer.name!r}")
        layer.set_weights(weights[layer.name])
