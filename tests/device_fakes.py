"""Test doubles for ``device_sim``: a fake artifact writer, a fake backend (no TFLite) and a
manual clock. Test code only (``tests/`` is on pytest's ``pythonpath``): nothing here ships
to the rover.

They let the protocol, the store and the retry logic be tested in milliseconds; the real
runtime (:class:`~device_sim.backend.EdgeBackend`) is tested on the ``tiny_artifact`` fixture.
A fake artifact is a folder with a valid manifest whose ``model.tflite`` starts with
``FAKEMODEL`` (anything else makes :class:`FakeBackend` refuse to load it, which is how tests
make a model whose checksums are right but which cannot run).
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.backend import Classification
from ramanedge.errors import HeadStoreError, ModelError
from ramanedge.grid import preprocess
from ramanedge.manifest import read_manifest, write_manifest

FAKE_MAGIC = b"FAKEMODEL"


def write_fake_artifact(folder: str | os.PathLike, labels: list[str], *, name: str = "fake",
                        model_bytes: bytes | None = None, size: int = 20000) -> Path:
    """Write a fake artifact (``model.tflite``, ``head.npz``, ``manifest.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model_bytes is None:
        # a stable seed (str hashes change per process with PYTHONHASHSEED)
        rng = np.random.default_rng(zlib.crc32("\0".join([name, *labels]).encode()))
        model_bytes = FAKE_MAGIC + rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    (folder / "model.tflite").write_bytes(model_bytes)
    np.savez(folder / "head.npz", W=np.zeros((8, len(labels)), np.float32),
             b=np.zeros(len(labels), np.float32))
    write_manifest(folder, {
        "name": name, "labels": list(labels),
        "grid": {"start": 200.0, "step": 1.0, "n_points": 1392},
        "normalisation": {"method": "max"},
        "model": {"file": "model.tflite", "precision": "int8", "config": {}},
        "quantization": {}, "head": {"file": "head.npz", "feature_dim": 8},
        "files": {"model.tflite": {}, "head.npz": {}},
    })
    return folder


class FakeBackend:
    """Classifies by the position of the strongest peak: the grid is cut into K equal bands
    and the band of the maximum is the label. ``compute_s`` adds a fixed compute time.
    Head learning keeps examples in memory; retraining appends new labels."""

    def __init__(self, folder: str | os.PathLike, *, compute_s: float = 0.0) -> None:
        folder = Path(folder)
        manifest = read_manifest(folder)
        if not (folder / "model.tflite").read_bytes().startswith(FAKE_MAGIC):
            raise ModelError(f"{folder}/model.tflite is not a loadable model")
        self.folder = folder
        self.name = manifest.name
        self.manifest_sha256 = str(manifest.data["manifest_sha256"])
        self.labels: tuple[str, ...] = tuple(manifest.labels)
        self.compute_s = compute_s
        self.examples: list[tuple[str, np.ndarray]] = []
        self._head = "base"
        self.calls = 0

    @property
    def head_version(self) -> str:
        """``"base"`` or ``"vNNNN"`` after retraining."""
        return self._head

    def classify(self, x: np.ndarray, y: np.ndarray, top_k: int) -> Classification:
        """Band-of-the-maximum classification with softmax-like probabilities."""
        t0 = time.perf_counter()
        g = preprocess(x, y)
        self.calls += 1
        k = len(self.labels)
        band = np.array_split(g, k)
        scores = np.array([float(b.max()) for b in band]) * 10.0
        p = np.exp(scores - scores.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")[:top_k]
        if self.compute_s:
            time.sleep(self.compute_s)
        top = tuple((int(i), self.labels[i], float(p[i])) for i in order)
        # a prediction set as a real model gives one: the labels with p >= 0.05, best first
        full = np.argsort(-p, kind="stable")
        pset = tuple((int(i), self.labels[i]) for i in full[:max(1, int((p >= 0.05).sum()))])
        return Classification(top, bool(p.max() < 0.3),
                              int((time.perf_counter() - t0) * 1e6), set=pset)

    def head_add(self, label: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Remember one example."""
        self.examples.append((label, preprocess(x, y)))
        n = sum(1 for lab, _ in self.examples if lab == label)
        return {"label": label, "n_label": n, "n_total": len(self.examples)}

    def head_retrain(self, options: dict[str, Any]) -> dict[str, Any]:
        """Add the new labels; needs at least one example."""
        if not self.examples:
            raise HeadStoreError("no examples were added; send HEAD_ADD first")
        new = sorted({lab for lab, _ in self.examples} - set(self.labels))
        self.labels = self.labels + tuple(new)
        v = int(self._head[1:]) + 1 if self._head != "base" else 1
        self._head = f"v{v:04d}"
        return {"head": self._head, "n_labels": len(self.labels), "new_labels": new}

    def relocate(self, folder: Path) -> None:
        """The artifact folder was renamed (staging -> slot): remember where it is now."""
        self.folder = Path(folder)


def fake_loader(compute_s: float = 0.0):
    """A device loader building :class:`FakeBackend` objects."""
    def load(folder: Path, headstore: Path | None = None) -> FakeBackend:
        return FakeBackend(folder, compute_s=compute_s)
    return load


def peak_spectrum(label_index: int, n_labels: int, *, raw: bool = False, seed: int = 0
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """A spectrum the fake backend classifies as ``label_index``: one peak in that band.

    ``raw=True`` returns ``(x, y)`` on an irregular axis 150-1700 cm-1 with a background;
    otherwise ``(None, y)`` on the 1392-point grid.
    """
    rng = np.random.default_rng(seed)
    width = 1392 / n_labels
    centre = 200.0 + (label_index + 0.5) * width + rng.uniform(-width / 4, width / 4)
    if raw:
        x = np.sort(rng.uniform(150.0, 1700.0, 900))
        x[0], x[-1] = 150.0, 1700.0
        y = 300 + 0.1 * x + 1000 * np.exp(-0.5 * ((x - centre) / 6.0) ** 2)
        y += rng.normal(0, 2, x.size)
        return x, y
    g = 200.0 + np.arange(1392)
    y = 0.05 + np.exp(-0.5 * ((g - centre) / 6.0) ** 2) + rng.normal(0, 0.005, 1392)
    return None, y


class FakeClock:
    """A manual :class:`~device_sim.transport.Clock` for tests: :meth:`sleep` advances time
    instantly and is recorded."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Current fake time."""
        return self.t

    def sleep(self, seconds: float) -> None:
        """Advance the fake time by ``seconds``."""
        if seconds > 0:
            self.sleeps.append(seconds)
            self.t += seconds

    def advance(self, seconds: float) -> None:
        """Let time pass without a sleep (e.g. work done between sends)."""
        self.t += seconds
