"""Shared test fixtures: synthetic spectra, a tiny trained model, a quantised tiny artifact.

Fixtures (all seeded, fast):

- ``synthetic_data`` (session): :class:`SyntheticData`, 4 classes of Gaussian-peak spectra
  on the 1392-point model grid with a sloping background and noise, max-normalised like
  ``ramanedge.grid.preprocess`` output, with a stratified train/val/test split.
- ``tiny_keras_model`` (session): ``trainer.model.build_model`` with ``dense_units=64``,
  trained briefly on ``synthetic_data`` (classifies its test split essentially perfectly).
- ``tiny_artifact`` (session): a ``models/NAME``-style artifact folder of that model written by
  ``quantize.export.export_artifact``. Read-only for tests: use ``artifact_copy`` to tamper.
- ``artifact_copy`` (function): a private copy of ``tiny_artifact`` in ``tmp_path``.
- ``shared_data_root`` (session): ``Path`` of ``../shared/data/rruff`` next to the repo, or
  the test is skipped.

Helpers: :func:`run_cli` runs ``ramanedge ARGS`` in-process (exit code, stdout, stderr);
:func:`device_on_pty` serves a device store in a thread on a pty pair with a host client on
the other end.

TensorFlow is imported only inside the fixtures that need it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_RRUFF = REPO.parent / "shared" / "data" / "rruff"

SYNTH_LABELS = ("alphaite", "betaite", "gammaite", "deltaite")
# peak positions (grid indices) and relative heights per synthetic mineral
SYNTH_PEAKS = (
    ((265, 1.0), (700, 0.4), (1120, 0.25)),
    ((300, 0.5), (820, 1.0), (1200, 0.3)),
    ((465, 1.0), (900, 0.35), (1300, 0.5)),
    ((265, 0.6), (700, 1.0), (1000, 0.6)),  # shares peaks with class 0, other ratios
)


@dataclass(frozen=True)
class SyntheticData:
    """Synthetic spectra: ``X`` float32 (N, 1392), ``y`` int64, ``labels``, ``split``."""

    X: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    split: np.ndarray  # "train" | "val" | "test"

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of one split part."""
        m = self.split == name
        return self.X[m], self.y[m]


def make_synthetic(n_per_class: int = 100, seed: int = 0) -> SyntheticData:
    """Gaussian-peak spectra: jittered positions (+-3 points), widths, heights, background."""
    from ramanedge.grid import GRID_POINTS, normalise_max

    rng = np.random.default_rng(seed)
    k = np.arange(GRID_POINTS, dtype=np.float64)
    X, y = [], []
    for c, peaks in enumerate(SYNTH_PEAKS):
        for _ in range(n_per_class):
            s = np.zeros(GRID_POINTS)
            for pos, h in peaks:
                p = pos + rng.uniform(-3, 3)
                w = rng.uniform(4, 9)
                s += h * rng.uniform(0.8, 1.2) * np.exp(-0.5 * ((k - p) / w) ** 2)
            slope = rng.uniform(-0.3, 0.3)
            s += rng.uniform(0.0, 0.4) + slope * (k / GRID_POINTS)
            s += rng.normal(0, 0.02, GRID_POINTS)
            X.append(s)
            y.append(c)
    Xa = normalise_max(np.asarray(X))
    ya = np.asarray(y, dtype=np.int64)
    split = np.empty(ya.size, dtype=object)
    for c in range(len(SYNTH_PEAKS)):
        idx = rng.permutation(np.flatnonzero(ya == c))
        n_tr, n_va = int(0.6 * idx.size), int(0.2 * idx.size)
        split[idx[:n_tr]] = "train"
        split[idx[n_tr:n_tr + n_va]] = "val"
        split[idx[n_tr + n_va:]] = "test"
    return SyntheticData(Xa, ya, SYNTH_LABELS, split.astype(str))


def train_tiny(data: SyntheticData, *, activation: str = "leaky_relu", epochs: int = 8,
               dense_units: int = 64, seed: int = 0):
    """Build and briefly train a small pooled CNN on ``data``; returns ``(model, config)``."""
    import keras

    from trainer.model import ModelConfig, build_model

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(arch="paper", dense_units=dense_units, activation=activation)
    model = build_model(len(data.labels), cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    Xtr, ytr = data.part("train")
    model.fit(Xtr, ytr, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model, cfg


@pytest.fixture(scope="session")
def synthetic_data() -> SyntheticData:
    """4 classes x 100 seeded synthetic spectra with a 60/20/20 stratified split."""
    return make_synthetic()


@pytest.fixture(scope="session")
def tiny_keras_model(synthetic_data):
    """A small (dense_units=64) LeakyReLU model trained on ``synthetic_data``.

    The model has ``.ramanedge_config`` (its ``ModelConfig``) attached for convenience.
    """
    model, cfg = train_tiny(synthetic_data)
    model.ramanedge_config = cfg
    return model


def export_tiny(model, data: SyntheticData, out: Path, *, name: str = "tiny",
                calib_seed: int = 0) -> Path:
    """Quantise ``model`` into the artifact folder ``out`` (calibration draw ``calib_seed``:
    another seed gives another int8 model file of the same network)."""
    from quantize.export import QuantizeConfig, export_artifact, select_calibration

    Xtr, ytr = data.part("train")
    Xva, yva = data.part("val")
    Xte, yte = data.part("test")
    n_calib = 100 if calib_seed == 0 else 60
    calib = Xtr[select_calibration(ytr, n_calib, seed=calib_seed)]
    export_artifact(
        model,
        labels=list(data.labels),
        model_config=model.ramanedge_config,
        calib_X=calib,
        val_X=Xva,
        test_X=Xte,
        test_y=yte,
        val_y=yva,
        out_dir=out,
        name=name,
        training_meta={"dataset": "synthetic", "split_sha256": None, "run": "tests"},
        config=QuantizeConfig(calib_size=n_calib),
    )
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, synthetic_data, tiny_keras_model) -> Path:
    """Quantised artifact folder of ``tiny_keras_model``. Do not modify: use ``artifact_copy``."""
    return export_tiny(tiny_keras_model, synthetic_data,
                       tmp_path_factory.mktemp("artifacts") / "tiny")


@pytest.fixture(scope="session")
def tiny_artifact_b(tmp_path_factory, synthetic_data, tiny_keras_model) -> Path:
    """The same network quantised from another calibration draw: a second model file
    (another sha256, the same labels). Do not modify."""
    return export_tiny(tiny_keras_model, synthetic_data,
                       tmp_path_factory.mktemp("artifacts") / "tiny-v2", name="tiny-v2",
                       calib_seed=1)


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A private copy of ``tiny_artifact`` that a test may tamper with."""
    dst = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, dst)
    return dst


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """The real RRUFF data folder ``../shared/data/rruff`` (skip when it is absent)."""
    if not (SHARED_RRUFF / "manifest.csv").is_file():
        pytest.skip(f"real RRUFF data not found at {SHARED_RRUFF}")
    return SHARED_RRUFF


def record_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Record ``(x, y)`` of every ``keras.Model.train_on_batch`` call (the steps still run):
    what a trainer really stepped on."""
    import keras

    batches: list[tuple[np.ndarray, np.ndarray]] = []
    real_step = keras.Model.train_on_batch

    def step(self, x, y=None, **kw):
        batches.append((np.array(x), np.array(y)))
        return real_step(self, x, y, **kw)

    monkeypatch.setattr(keras.Model, "train_on_batch", step)
    return batches


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run ``ramanedge ARGS`` in-process (``ramanedge.cli.main``); returns (exit code, stdout,
    stderr) as captured by ``capsys``."""
    from ramanedge.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def device_on_pty(store: Any, loader: Any, *, baud: int | None = None, dev_faults: Any = None,
                  host_faults: Any = None, host_config: Any = None) -> Iterator[tuple[Any, Any]]:
    """``(device, host client)``: a :class:`device_sim.device.Device` serving ``store``
    (opened with ``loader``) in a thread on a pty slave, a
    :class:`device_sim.host.HostClient` on the master (default ``HostConfig(timeout=0.3,
    deadline=20)``); line faults per side; everything stopped and closed on exit."""
    from device_sim.device import Device, DeviceConfig
    from device_sim.host import HostClient, HostConfig
    from device_sim.transport import Link, open_port, open_pty_pair

    master, slave = open_pty_pair()
    dev_port = open_port(slave, baud=baud or 115200)
    dev = Device(Link(dev_port, baud=baud, faults=dev_faults, seed_offset=1), store, loader,
                 DeviceConfig(baud=baud, poll_seconds=0.02))
    th = threading.Thread(target=dev.serve, daemon=True)
    th.start()
    host = HostClient(Link(master, baud=baud, faults=host_faults),
                      host_config or HostConfig(timeout=0.3, deadline=20))
    try:
        yield dev, host
    finally:
        dev.stop()
        th.join(5)
        dev_port.close()
        master.close()
