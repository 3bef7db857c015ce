"""Int8-aware fine-tuning (trainer.qat): the Keras network rounds exactly as TFLite will.

The claim these tests hold the code to: a folded, calibrated int8-aware model computes in Keras
what the converted full-int8 model computes on the rover (same weights grid, same bias grid,
same activation grids), so the parity gate compares the int8 artifact with the network that
was actually trained; and the plain post-training route of the same weights does not.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trainer.model import FLIGHT_MODEL, ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
SMALL = replace(FLIGHT_MODEL, filters=(8, 16, 16, 24, 32), reduce_channels=8, dense_units=32)
# the strided-stem candidates were built on the default of their day (every position)
SMALL_FULL = replace(SMALL, stem_stride=1, pool_layers=5)


def test_act_quant_rounds_on_the_int8_grid_with_a_straight_through_gradient() -> None:
    import tensorflow as tf

    from trainer.qat import ActQuant

    layer = ActQuant(-0.05, 1.0)
    x = tf.constant(np.linspace(-0.3, 1.4, 1001, dtype=np.float32)[None, :])
    y = layer(x).numpy()[0]
    scale = 1.05 / 255
    zero = round(0.05 / scale)  # TFLite's nudged zero point: 0.0 is a grid value
    q = y / scale + zero
    assert np.allclose(q, np.round(q), atol=1e-3)  # on the grid
    assert q.min() >= -1e-3 and q.max() <= 255 + 1e-3  # saturates like int8
    assert np.abs(layer(tf.zeros((1, 3)))).max() == 0.0  # zero is exact
    inside = (x.numpy()[0] > -0.04) & (x.numpy()[0] < 0.99)
    assert np.abs(y[inside] - x.numpy()[0][inside]).max() <= scale / 2 + 1e-6
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(layer(x) * 3.0)
    assert np.allclose(tape.gradient(out, x).numpy(), 3.0)  # identity gradient
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        ActQuant(0.5, 1.0)


def test_act_quant_needs_bounded_ranges() -> None:
    with pytest.raises(ValueError, match="act_quant needs"):
        ModelConfig(act_quant=True, activation="relu")
    with pytest.raises(ValueError, match="act_quant needs"):
        ModelConfig(arch="paper", act_quant=True)
    assert "int8-aware" in ModelConfig(act_quant=True).describe()


def _float_model_with_batch_statistics(n_classes: int, cfg: ModelConfig, seed: int = 0):
    """A float flight model whose BatchNorm layers hold non-trivial statistics."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(n_classes, cfg)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.2, 3.0, c)])
    return model


@pytest.mark.parametrize("cfg", [SMALL, replace(SMALL, early_pool=False),
                                 replace(SMALL_FULL, strided_stem=True, depthwise_kernel=3),
                                 SMALL_FULL])
def test_folding_keeps_the_float_network(synthetic_data, cfg) -> None:
    """BatchNorm folded into the convs and the separable convs split: with the roundings
    stripped, the folded twin computes what the trained float model computes."""
    from trainer.qat import fold_to_act_quant, has_act_quant, without_act_quant

    k = len(synthetic_data.labels)
    model = _float_model_with_batch_statistics(k, cfg)
    twin = fold_to_act_quant(model, cfg, k)
    assert has_act_quant(twin) and not has_act_quant(model)
    assert not any(type(la).__name__ == "BatchNormalization" for la in twin.layers)
    X = synthetic_data.part("test")[0][:64]
    a = model.predict(X, verbose=0)
    b = without_act_quant(twin).predict(X, verbose=0)
    assert np.abs(a - b).max() < 1e-4
    assert without_act_quant(model) is model


def test_folding_refuses_a_config_of_another_pooling(synthetic_data) -> None:
    from trainer.qat import fold_to_act_quant

    k = len(synthetic_data.labels)
    late = replace(SMALL, early_pool=False)
    model = _float_model_with_batch_statistics(k, late)
    with pytest.raises(ValueError, match="early_pool=True"):
        fold_to_act_quant(model, SMALL, k)


def _export(model, cfg, data, out: Path, allow: bool = True):
    from quantize.export import QuantizeConfig, export_artifact, select_calibration

    Xtr, ytr = data.part("train")
    Xte, yte = data.part("test")
    return export_artifact(model, labels=list(data.labels), model_config=cfg,
                           calib_X=Xtr[select_calibration(ytr, 60)], val_X=Xte, test_X=Xte,
                           test_y=yte, out_dir=out,
                           config=QuantizeConfig(allow_accuracy_drop=allow))


def _features_error(model, art: Path, X: np.ndarray) -> tuple[float, float]:
    """(rms error, fraction of exactly equal values) of the int8 features against Keras."""
    from quantize.convert import dual_output_model
    from quantize.runner import TFLiteRunner

    ref = dual_output_model(model).predict(X, verbose=0)["features"]
    q = TFLiteRunner(art / "model.tflite").run(X)["features"]
    return float(np.sqrt(np.mean((q - ref) ** 2))), float(np.mean(np.abs(q - ref) < 1e-5))


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [SMALL, replace(SMALL_FULL, early_pool=False),
                                 replace(SMALL_FULL, strided_stem=True, depthwise_kernel=3)])
def test_int8_aware_keras_computes_what_tflite_computes(tmp_path: Path, synthetic_data,
                                                        cfg) -> None:
    """The calibrated int8-aware twin matches the converted model nearly value for value;
    the float model it came from, converted the same way, does not."""
    import keras

    from trainer.qat import fold_to_act_quant

    k = len(synthetic_data.labels)
    Xtr, ytr = synthetic_data.part("train")
    keras.utils.set_random_seed(0)
    model = build_model(k, cfg)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(Xtr, ytr, epochs=3, batch_size=32, verbose=0)
    twin = fold_to_act_quant(model, cfg, k)
    qcfg = replace(cfg, act_quant=True)
    res_ptq = _export(model, cfg, synthetic_data, tmp_path / "ptq")
    res_qat = _export(twin, qcfg, synthetic_data, tmp_path / "qat")
    X = synthetic_data.part("test")[0]
    err_ptq, _ = _features_error(model, res_ptq.out_dir, X)
    err_qat, exact = _features_error(twin, res_qat.out_dir, X)
    assert exact > 0.95, exact
    assert err_qat < err_ptq / 5, (err_qat, err_ptq)
    assert res_qat.head_parity.agreement == 1.0
    # the converted graph is the plain network: no rounding op reached the converter
    ops = json.loads((res_qat.out_dir / "manifest.json").read_text())["model"]["ops"]
    assert set(ops) == set(json.loads((res_ptq.out_dir / "manifest.json")
                                      .read_text())["model"]["ops"])
    # same weights, shorter tensor names (no BatchNorm in them)
    assert (res_qat.out_dir / "model.tflite").stat().st_size <= \
        (res_ptq.out_dir / "model.tflite").stat().st_size


def test_tflite_quantises_dense_weights_per_output_unit(tiny_artifact: Path) -> None:
    """QDense simulates one weight scale per output unit: true for the installed converter."""
    from edge_runtime.interpreter import make_interpreter

    it = make_interpreter(tiny_artifact / "model.tflite")
    weights = [t for t in it.get_tensor_details()
               if t["dtype"] == np.int8 and len(t["shape"]) == 2 and "MatMul" in t["name"]]
    assert weights
    for t in weights:
        assert t["quantization_parameters"]["scales"].size == t["shape"][0]


def test_int8_aware_model_saves_and_loads_with_its_grids(tmp_path: Path, synthetic_data) -> None:
    from trainer.model import load_keras_model
    from trainer.qat import calibrate_act_quant, fold_to_act_quant

    k = len(synthetic_data.labels)
    twin = fold_to_act_quant(_float_model_with_batch_statistics(k, SMALL), SMALL, k)
    X = synthetic_data.part("test")[0][:32]
    ranges = calibrate_act_quant(twin, X)
    assert ranges["input_q"][0] < 0 and ranges["act1"] == (0.0, pytest.approx(6.0, abs=6.0))
    assert float(twin.get_layer("dense").input_scale.numpy()) > 0  # bias grid set
    twin.save(tmp_path / "m.keras")
    back = load_keras_model(tmp_path / "m.keras")
    assert np.array_equal(back.predict(X, verbose=0), twin.predict(X, verbose=0))
    assert float(back.get_layer("dense").input_scale.numpy()) == \
        float(twin.get_layer("dense").input_scale.numpy())


def test_finetune_ships_its_best_validated_epoch(synthetic_data) -> None:
    from trainer.qat import fold_to_act_quant, quantization_aware_finetune
    from trainer.train import TrainConfig, predict_probs

    k = len(synthetic_data.labels)
    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    model = _float_model_with_batch_statistics(k, SMALL)
    tc = TrainConfig(teachers=0, distill=0.0, qat_epochs=2, qat_learning_rate=1e-3)
    res, qcfg, info = quantization_aware_finetune(model, Xtr, ytr, Xva, yva, k, SMALL, tc)
    assert qcfg.act_quant and info["epochs"] == 2 and info["best_epoch"] in (1, 2)
    val = float(np.mean(predict_probs(res.model, Xva).argmax(1) == yva))
    # the shipped weights are the best epoch's, judged on the grids they calibrate to
    assert val == pytest.approx(info["val_top1_best"])
    assert val == pytest.approx(max(res.history["val_accuracy"]))
    start = fold_to_act_quant(model, SMALL, k)
    assert not np.array_equal(res.model.get_layer("conv1").get_weights()[0],
                              start.get_layer("conv1").get_weights()[0])  # it was trained


def test_old_run_configs_had_no_int8_aware_step_and_the_paper_family_skips_it(
        synthetic_data) -> None:
    from trainer.run import int8_finetune
    from trainer.train import PAPER_FAMILY_TRAIN, PAPER_TRAIN, TrainConfig

    legacy = TrainConfig().to_dict()
    del legacy["qat_epochs"], legacy["qat_learning_rate"]
    assert TrainConfig.from_dict(legacy).qat_epochs == 0
    assert TrainConfig().qat_epochs > 0
    assert PAPER_TRAIN.qat_epochs == PAPER_FAMILY_TRAIN.qat_epochs == 0
    with pytest.raises(ValueError, match="qat_epochs"):
        TrainConfig(qat_epochs=-1)
    lines = []
    sentinel = object()
    out = int8_finetune(sentinel, None, np.array([]), ModelConfig(arch="paper"), TrainConfig(),
                        log=lines.append)
    assert out[0] is sentinel and "skipped" in out[3] and "ReLU6" in lines[0]
