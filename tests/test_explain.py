"""Grad-CAM explanations: maps, PNGs for real spectra, one-line errors for bad input."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from trainer.model import ModelConfig

MINERALS = ("Calcite", "Corundum", "Diopside", "Forsterite", "Quartz")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shared_data_root) -> Path:
    """A tiny run (5 real minerals, 2 epochs, dense_units=16)."""
    from tests.conftest import REPO
    from trainer.run import DataConfig, train_run
    from trainer.train import TrainConfig

    PlainTC = partial(TrainConfig, teachers=0, distill=0.0, ema=0.0)  # no EMA: few steps

    data = DataConfig(root=str(shared_data_root), minerals=MINERALS,
                      cache_dir=str(REPO / ".cache" / "ramanedge"))
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train_run(out, data, ModelConfig(arch="paper", pool_size=16, dense_units=16),
              PlainTC(epochs=2, batch_size=16), log=None)
    return out


@pytest.fixture(scope="module")
def real_spectrum(tmp_path_factory, shared_data_root) -> Path:
    """A real RRUFF LR-Raman RAW file that covers the grid, copied to a temporary folder."""
    from ramanedge.grid import covers
    from ramanedge.io import parse_spectrum
    from ramanedge.io.sources import iter_spectrum_files

    folder = tmp_path_factory.mktemp("spectra")
    for sf in iter_spectrum_files(shared_data_root / "LR-Raman" / "LR-Raman.tar.xz",
                                  accept=lambda p: "/raw/" in p):
        if covers(parse_spectrum(sf.data, sf.path).x):
            p = folder / Path(sf.path).name
            p.write_bytes(sf.data)
            return p
    pytest.skip("no LR-Raman RAW spectrum covers the grid")


@pytest.mark.slow
@pytest.mark.realdata
def test_grad_cam_maps_are_normalised_and_class_specific(tiny_run, real_spectrum) -> None:
    from ramanedge.grid import GRID_POINTS
    from trainer.explain import explain_spectra, grad_cam, last_conv_activation, load_run_model
    from trainer.explain import load_spectrum as load

    model, labels = load_run_model(tiny_run)
    assert last_conv_activation(model) == "act3"
    x = load(real_spectrum)[None, :]
    cams = np.concatenate([grad_cam(model, x, np.array([c])) for c in range(len(labels))])
    assert cams.shape == (len(labels), GRID_POINTS)
    assert cams.min() >= 0.0 and cams.max() <= 1.0 + 1e-6
    assert any(np.isclose(c.max(), 1.0) for c in cams)
    assert not all(np.allclose(cams[0], c) for c in cams[1:])  # depends on the class
    (e,) = explain_spectra(model, labels, x, [str(real_spectrum)], runner_up=True)
    assert e.probs[0] >= e.probs[1] and e.names[0] in labels and len(e.cams) == 2
    assert all(200 <= w <= 1591 for w in e.bands[0])


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_explain_writes_a_png_per_spectrum(tiny_run, real_spectrum, tmp_path,
                                               capsys, shared_data_root) -> None:
    out = tmp_path / "gc"
    code, stdout, err = run_cli(capsys, "explain", "--model", str(tiny_run), str(real_spectrum),
                                "--runner-up", "--out", str(out))
    assert code == 0, err
    png = out / f"{real_spectrum.stem}_integrated-gradients.png"  # the default method
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert "runner-up" in stdout and "bands" in stdout
    bands = stdout.split("bands ")[1].split(" cm-1")[0]
    assert bands.strip(), stdout  # the spectrum's own peaks are named (issue 17)
    for method in ("gradcam", "gradcam-multi", "occlusion"):
        code, stdout, err = run_cli(capsys, "explain", "--model", str(tiny_run),
                                    str(real_spectrum), "--method", method, "--out", str(out))
        assert code == 0, err
        assert (out / f"{real_spectrum.stem}_{method}.png").read_bytes()[:8] == PNG_MAGIC
    # a spectrum covering part of the grid: padded as 'classify' pads it, and said so
    short = sorted((shared_data_root / "excellent_oriented_subset" / "raw").iterdir())[0]
    code, stdout, err = run_cli(capsys, "explain", "--model", str(tiny_run), str(short),
                                "--out", str(out))
    assert code == 0, err
    assert "(covers 95% of the grid, padded)" in stdout
    # a folder in one go: every file in it, one line and one PNG each
    code, stdout, err = run_cli(capsys, "explain", "--model", str(tiny_run),
                                str(real_spectrum.parent), "--out", str(tmp_path / "gc2"))
    assert code == 0, err
    assert len(list((tmp_path / "gc2").glob("*_integrated-gradients.png"))) == len(
        list(real_spectrum.parent.iterdir()))


@pytest.mark.realdata
def test_cli_explain_rejects_bad_input(tiny_run, real_spectrum, tmp_path, capsys,
                                       shared_data_root) -> None:
    out = tmp_path / "gc"
    not_spectrum = tmp_path / "notes.txt"
    not_spectrum.write_text("this is not a spectrum\n")
    short = sorted((shared_data_root / "excellent_oriented_subset" / "raw").iterdir())[0]
    cases = [
        (["--model", str(tiny_run), str(tmp_path / "missing.txt")], "does not exist"),
        (["--model", str(tiny_run), str(not_spectrum)], "notes.txt"),
        (["--model", str(tiny_run), str(short), "--coverage", "refuse"], "covers"),
        (["--model", str(tiny_run), str(short), "--min-coverage", "0.99"], "covers"),
        (["--model", str(tmp_path), str(real_spectrum)], "not a training run"),
        (["--model", str(tmp_path / "nope"), str(real_spectrum)], "does not exist"),
        (["--model", str(tiny_run), str(real_spectrum), "--layer", "nope"], "not a layer"),
        (["--model", str(tiny_run), str(real_spectrum), "--layer", "act2"], "gradcam only"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(capsys, "explain", *args, "--out", str(out))
        assert code == 2, (args, err)
        assert err.startswith("error:") and needle in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_cli(capsys, "explain", "--model", str(tiny_run), str(real_spectrum),
                           "--bands", "-3", "--out", str(out))
    assert code == 2 and "'--bands': -3 is not in the range" in err
    assert not out.exists()  # nothing written for bad input



def test_integrated_gradients_finds_the_band_the_logit_reads() -> None:
    """A ReLU network whose class-1 logit reads 490-510 (through a hidden unit that only
    switches on part-way along the path) and is *lowered* by 290-310, on a spectrum with
    bands at 300 and 500: the raw attributions sum to the logit difference to the zero
    baseline (completeness), the 300 band's are negative, and the map keeps only the
    positive evidence, 490-510, scaled to 1."""
    import keras

    from trainer.explain import attribution, integrated_gradients

    P = 1392
    t = np.arange(P)
    inp = keras.Input(shape=(P,))
    hidden = keras.layers.Dense(2, activation="relu", name="hidden")(inp)
    feats = keras.layers.Dense(2, name="features")(hidden)
    out = keras.layers.Dense(2, activation="softmax", name="probs")(feats)
    model = keras.Model(inp, out)
    w = np.zeros((P, 2), np.float32)
    w[490:511, 0] = 1.0    # unit 0: the 500 band
    w[290:311, 1] = 1.0    # unit 1: the 300 band
    model.get_layer("hidden").set_weights([w, np.array([-1.0, 0.0], np.float32)])
    model.get_layer("features").set_weights([np.array([[0, 2.0], [0, -0.5]], np.float32),
                                             np.zeros(2, np.float32)])
    model.get_layer("probs").set_weights([np.eye(2, dtype=np.float32),
                                          np.zeros(2, np.float32)])
    x = (np.exp(-0.5 * ((t - 300) / 4.0) ** 2)
         + 0.4 * np.exp(-0.5 * ((t - 500) / 4.0) ** 2)).astype(np.float32)
    raw = integrated_gradients(model, x[None], np.array([1]), steps=512, signed=True)[0]
    h = np.maximum(x @ w + np.array([-1.0, 0.0]), 0.0)
    logit = 2.0 * h[0] - 0.5 * h[1]   # logit(0) = 0: unit 0 is off at the baseline
    assert h[0] > 0 and np.isclose(raw.sum(), logit, rtol=0.01)
    assert raw[290:311].sum() < 0 and np.all(raw[:290] == 0)
    (m,) = attribution(model, x[None], np.array([1]), "integrated-gradients")
    assert np.isclose(m.max(), 1.0) and 490 <= m.argmax() <= 510
    assert np.all(m[:490] == 0) and np.all(m[511:] == 0)  # the negative evidence is clipped
    # unit 0 switches on only part-way along the path (its bias is -1): integrated gradients
    # credit the 500 band with what it adds to the logit, 2 (S - 1), where gradient x input
    # would say 2 S; the 300 band gets -0.5 S' (unit 1 is linear from the baseline on)
    s500, s300 = float(x[490:511].sum()), float(x[290:311].sum())
    assert np.isclose(raw[490:511].sum(), 2.0 * (s500 - 1.0), rtol=0.01)
    assert not np.isclose(raw[490:511].sum(), 2.0 * s500, rtol=0.1)
    assert np.isclose(raw[290:311].sum(), -0.5 * s300, rtol=0.01)
