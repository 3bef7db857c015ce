"""The pooled CNN builds for every pooling size of the paper, with the expected shapes."""

from __future__ import annotations

import math

import pytest

from trainer.model import (
    FEATURES_LAYER,
    PROBS_LAYER,
    ModelConfig,
    build_model,
    count_params,
    flatten_size,
)


def _expected_flatten(m: int, n: int, points: int = 1392, last_filters: int = 64) -> int:
    length = points
    for _ in range(n):
        length = math.ceil(length / m)
    return length * last_filters


@pytest.mark.parametrize("m", [2, 4, 8, 16, 32, 64])
def test_builds_for_every_pool_size(m: int) -> None:
    cfg = ModelConfig(arch="paper", pool_size=m, pool_layers=3, dense_units=32)
    model = build_model(7, cfg)
    assert model.get_layer("flatten").output.shape[-1] == _expected_flatten(m, 3)
    assert flatten_size(cfg) == _expected_flatten(m, 3)
    assert model.get_layer(FEATURES_LAYER).output.shape[-1] == 32
    assert model.get_layer(PROBS_LAYER).output.shape[-1] == 7
    assert model.count_params() == count_params(cfg, 7)


def test_flatten_sizes_of_the_paper_family() -> None:
    sizes = {m: flatten_size(ModelConfig(arch="paper", pool_size=m, pool_layers=3))
             for m in (2, 4, 8, 16)}
    assert sizes == {2: 174 * 64, 4: 22 * 64, 8: 3 * 64, 16: 1 * 64}
    assert flatten_size(ModelConfig(arch="paper", pool_size=8, pool_layers=1)) == 174 * 64
    assert flatten_size(ModelConfig(arch="paper", pool_size=8, pool_layers=0)) == 1392 * 64


@pytest.mark.parametrize("act", ["leaky_relu", "relu", "prelu"])
def test_activations_build_and_param_count(act: str) -> None:
    cfg = ModelConfig(arch="paper", pool_size=16, activation=act, dense_units=16, kernel_size=9)
    model = build_model(3, cfg)
    assert model.count_params() == count_params(cfg, 3)
    out = model.predict_on_batch(__import__("numpy").ones((2, 1392), "float32"))
    assert out.shape == (2, 3)
    assert abs(float(out.sum()) - 2.0) < 1e-4


@pytest.mark.parametrize("bad", [dict(activation="gelu"), dict(pool_size=0),
                                 dict(pool_size=65), dict(pool_layers=4), dict(dropout=1.0),
                                 dict(reduce_channels=8), dict(separable=True),
                                 dict(arch="resnet")])
def test_bad_config_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**{"arch": "paper", **bad})


@pytest.mark.parametrize("bad", [dict(pool_layers=6), dict(reduce_channels=-1),
                                 dict(filters=()), dict(activation="tanh")])
def test_bad_flight_config_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)


def test_config_round_trip() -> None:
    cfg = ModelConfig(arch="paper", pool_size=4, pool_layers=2, activation="prelu",
                      filters=(8, 16, 32))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError):
        ModelConfig.from_dict({**cfg.to_dict(), "unknown": 1})


def test_features_model_is_the_backbone_of_the_model() -> None:
    """features_model shares the model's weights: its output is the features layer's."""
    import keras
    import numpy as np

    from trainer.model import features_model

    keras.utils.set_random_seed(0)
    model = build_model(5, ModelConfig(filters=(8, 8, 8, 8, 8), dense_units=16))
    enc = features_model(model)
    X = np.random.default_rng(0).random((3, 1392)).astype("float32")
    probe = keras.Model(model.inputs[0], [model.get_layer(FEATURES_LAYER).output,
                                          model.output])
    feats, _ = probe(X, training=False)
    assert np.array_equal(np.asarray(enc(X, training=False)), np.asarray(feats))
    dense = model.get_layer("dense")
    dense.set_weights([w + 1.0 for w in dense.get_weights()])  # shared, not copied
    assert not np.array_equal(np.asarray(enc(X, training=False)), np.asarray(feats))
