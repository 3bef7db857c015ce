"""The model runtime behind the device: the :class:`Backend` protocol and its real
implementation :class:`EdgeBackend` (an ``edge_runtime`` classifier), the :data:`Loader` that
builds one for an artifact folder, and :func:`validate_artifact`, the load-and-classify check
every model passes before it may serve.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ramanedge.grid import CoveragePolicy


@dataclass(frozen=True)
class Classification:
    """A backend's answer: ``top`` ``(index, label, prob)`` best first, ``unknown``,
    ``infer_us`` (interpreter + head time as measured by the runtime), ``coverage`` (the
    fraction of the model grid the spectrum covered), ``set`` (the conformal prediction set
    as ``(index, label)`` pairs, most probable first; ``None`` without one)."""

    top: tuple[tuple[int, str, float], ...]
    unknown: bool
    infer_us: int
    coverage: float = 1.0
    set: tuple[tuple[int, str], ...] | None = None


class Backend(Protocol):
    """What the device needs from a model runtime (the real one is :class:`EdgeBackend`)."""

    name: str
    manifest_sha256: str
    labels: tuple[str, ...]

    @property
    def head_version(self) -> str:
        """Version of the active softmax head."""
        ...

    def classify(self, x: np.ndarray, y: np.ndarray, top_k: int) -> Classification:
        """Preprocess a raw spectrum (axis ``x``, intensities ``y``) and classify it."""
        ...

    def head_add(self, label: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Store one labelled example for onboard head retraining."""
        ...

    def head_retrain(self, options: dict[str, Any]) -> dict[str, Any]:
        """Retrain the softmax head on the stored examples and activate it."""
        ...

    def relocate(self, folder: Path) -> None:
        """The artifact folder it was loaded from now lives at ``folder`` (the model store
        validates an upload in its staging folder, then renames that into a slot): refer to
        the artifact's files there from now on, without loading anything again."""
        ...


class EdgeBackend:
    """The real backend: an ``edge_runtime`` :class:`~edge_runtime.classify.Classifier`
    built from an artifact folder.

    ``headstore``: the onboard head store folder (the device passes the model store's
    ``headstore/``, outside every slot, so samples outlive any model); ``None`` = the
    artifact folder's own ``headstore/`` (local use). ``coverage``: the policy for spectra
    covering part of the grid (default: pad, :class:`~ramanedge.grid.CoveragePolicy`).
    """

    def __init__(self, folder: str | os.PathLike, *, threads: int = 1, edgetpu: bool = False,
                 top_k_max: int = 10, headstore: str | os.PathLike | None = None,
                 coverage: CoveragePolicy | None = None) -> None:
        from edge_runtime.classify import Classifier

        self.folder = Path(folder)
        self.threads = int(threads)
        self.headstore_dir = None if headstore is None else Path(headstore)
        self._store: Any = None
        # the model store verified every file's sha256 before handing the folder over (at
        # boot, commit, install and rollback): hashing again here would only cost time
        self.clf = Classifier.from_dir(self.folder, num_threads=self.threads, edgetpu=edgetpu,
                                       top_k=top_k_max, head_store=self.headstore_dir,
                                       coverage=coverage, verify_files=False)
        manifest = self.clf.artifact.manifest
        self.name = manifest.name
        self.manifest_sha256 = str(manifest.data.get("manifest_sha256", ""))
        self._index_labels()

    def _index_labels(self) -> None:
        self.labels = tuple(self.clf.labels)
        self._index = {lab: i for i, lab in enumerate(self.labels)}

    @property
    def head_version(self) -> str:
        """The active head's version (``"base"`` = the artifact's own)."""
        return self.clf.head_version

    def classify(self, x: np.ndarray, y: np.ndarray, top_k: int) -> Classification:
        """Preprocess with the artifact's grid, classify, keep ``top_k``."""
        pred = self.clf.classify_xy(x, y)
        top = tuple((self._index.get(lab, 0xFFFF), lab, float(p))
                    for lab, p in pred.top[:top_k])
        pset = None if pred.set is None else tuple(
            (self._index.get(lab, 0xFFFF), lab) for lab in pred.set)
        return Classification(top, bool(pred.unknown), int(pred.compute_ms * 1000),
                              pred.coverage, pset)

    def relocate(self, folder: Path) -> None:
        """Refer to the artifact's files (the exemplars a head retrain reads) at ``folder``;
        the interpreter, the heads and the unknown-rule bank are already in memory."""
        self.folder = Path(folder)
        self.clf.artifact = dataclasses.replace(self.clf.artifact, folder=self.folder)
        self._store = None  # reopened on the next HEAD_ADD / RETRAIN with the new paths

    def _headstore(self) -> Any:
        """The head store, opened once per backend: its sample index stays in memory, so a
        HEAD_ADD costs the same with 10 or 10,000 stored samples."""
        from edge_runtime.headstore import HeadStore

        if self._store is None:
            self._store = HeadStore.open(self.clf.artifact, self.headstore_dir, create=True)
        return self._store

    def head_add(self, label: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Store one labelled raw spectrum durably in the artifact's head store (its
        preprocessed grid and the int8 model's features)."""
        store = self._headstore()
        grid = self.clf.preprocess(x, y)
        sample, created = store.add_sample(label, grid, self.clf.features_int8(grid), raw=(x, y),
                                           source="link")
        per_label = store.sample_counts()
        return {"label": sample.label, "sample": sample.id, "created": bool(created),
                "n_label": per_label.get(sample.label, 0), "n_samples": sum(per_label.values())}

    def head_retrain(self, options: dict[str, Any]) -> dict[str, Any]:
        """Refit the softmax head on every stored sample (+ the artifact's exemplars) and
        serve it from now on (it stays active across reboots: the head store's pointer)."""
        store = self._headstore()
        # the classifier it will serve must build first (its recalibration included): a head
        # the artifact cannot answer with is refused, not stored and made active
        info = store.retrain(features_fn=self.clf.features_batch,
                             check=lambda head, bank: self.clf.with_head(head, ood_bank=bank))
        self.clf = self.clf.with_active_head(store)
        self._index_labels()
        meta = info.meta
        return {"head": self.head_version, "n_labels": len(self.labels),
                "new_labels": meta.get("new_labels", []),
                "n_samples": meta.get("n_samples"), "n_exemplars": meta.get("n_exemplars"),
                "train_accuracy": meta.get("train_accuracy"),
                "fit_seconds": meta.get("fit_seconds")}


#: ``loader(artifact folder, head store folder) -> Backend``: how the device builds a runtime.
Loader = Callable[[Path, Path], Backend]


def edge_loader(threads: int = 1, edgetpu: bool = False,
                coverage: CoveragePolicy | None = None) -> Loader:
    """A loader building :class:`EdgeBackend` objects with the given thread count and
    coverage policy."""
    def load(folder: Path, headstore: Path) -> Backend:
        return EdgeBackend(folder, threads=threads, edgetpu=edgetpu, headstore=headstore,
                           coverage=coverage)
    return load


def validate_artifact(loader: Loader, folder: Path, headstore: Path) -> Backend:
    """Load a candidate artifact with ``loader`` and classify one synthetic spectrum: what
    every model (uplinked or the factory image) passes before it may become active. Returns
    the loaded backend, so the model that passed is the one that serves (one load per
    model)."""
    from ramanedge.manifest import read_manifest

    grid = read_manifest(folder, verify_files=False).grid  # the store verified the files
    backend = loader(folder, headstore)
    x = np.linspace(grid.start - 10.0, grid.stop + 10.0, 800)
    y = 1.0 + np.exp(-0.5 * ((x - (grid.start + grid.stop) / 2) / 8.0) ** 2)
    backend.classify(x, y, 1)
    return backend
