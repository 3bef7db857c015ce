"""Load a model artifact (``models/NAME/``) and check it before anything runs.

An artifact is ``model.tflite`` (full int8, input ``[1, 1392]``, outputs ``probs`` ``[1, K]``
and ``features`` ``[1, D]``), ``head.npz`` (``W`` (D, K) float16 or float32, ``b`` (K,);
computed in float32), optionally ``exemplars.npz`` (written on the ground by
:mod:`quantize.exemplars`) and ``manifest.json``; the names and every check of the contract live in
:mod:`ramanedge.manifest`. :func:`load_artifact` reads the manifest with
:func:`~ramanedge.manifest.read_manifest` (schema version, the manifest's own sha256 and
every file's sha256) and :func:`~ramanedge.manifest.check_tensors` (quantisation entries vs
grid, labels and head section), then loads ``head.npz`` and builds the :class:`Artifact`.
Nothing is loaded into an interpreter here; see
:func:`edge_runtime.interpreter.make_interpreter`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ramanedge.errors import ManifestError, ModelError
from ramanedge.grid import GridSpec
from ramanedge.manifest import Manifest, QuantParams, check_tensors, read_manifest

if TYPE_CHECKING:  # pragma: no cover
    from ramanedge.library import SpectralLibrary


@dataclass(frozen=True)
class HeadWeights:
    """A float softmax head on the D-dimensional features: ``probs = softmax(f @ W + b)``
    (D = 192 for the flight model, 2048 for the paper family).

    ``W`` float32 (D, K), ``b`` float32 (K,), ``labels`` K names in output order.
    ``version`` names where the head came from (``"base"`` for the artifact's own head,
    ``"v0003"`` etc. for heads retrained on the rover).
    """

    W: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    labels: tuple[str, ...]
    version: str = "base"

    def __post_init__(self) -> None:
        W = np.ascontiguousarray(self.W, dtype=np.float32)
        b = np.ascontiguousarray(self.b, dtype=np.float32).reshape(-1)
        labels = tuple(str(s) for s in self.labels)
        if W.ndim != 2 or W.shape[1] != b.size or b.size != len(labels):
            raise ModelError(
                f"head shapes disagree: W {W.shape}, b {b.shape}, {len(labels)} labels; "
                "expected W (D, K), b (K,) and K labels"
            )
        if len(set(labels)) != len(labels):
            raise ModelError("head labels contain duplicates")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ModelError("head weights contain NaN or infinite values")
        W.setflags(write=False)
        b.setflags(write=False)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "labels", labels)

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return len(self.labels)

    @property
    def feature_dim(self) -> int:
        """Feature dimension D."""
        return int(self.W.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``features @ W + b`` for (D,) or (N, D) float features."""
        return np.asarray(features, dtype=np.float32) @ self.W + self.b

    def probs(self, features: np.ndarray) -> np.ndarray:
        """Softmax probabilities for (D,) or (N, D) float features (float64)."""
        return softmax(self.logits(features))


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64), in place on one float64
    copy of ``z`` (no other temporaries: it is on the classifier's per-spectrum path)."""
    e = np.array(z, dtype=np.float64)
    e -= e.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def softmax_and_max(logits: np.ndarray) -> tuple[np.ndarray, float]:
    """(:func:`softmax` of one logit vector (K,), its largest logit as a Python float), the
    same arithmetic as :func:`softmax` with the maximum taken once: the per-spectrum path
    needs both (the ``knn_logit`` unknown rule reads the largest logit)."""
    mx = float(logits.max())
    e = np.subtract(logits, mx, dtype=np.float64)
    np.exp(e, out=e)
    e /= e.sum()
    return e, mx


def load_npz_arrays(path: str | os.PathLike, keys: tuple[str, ...],
                    optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load the named arrays of an ``.npz`` without pickle (``optional`` ones only when
    present); :class:`ModelError` if unusable."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array under an .npz name
            raise ValueError("a single .npy array, not an archive of named arrays")
        with z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise ModelError(f"{path} lacks array(s) {', '.join(missing)}; has {z.files}")
            return {k: np.array(z[k]) for k in (*keys, *optional) if k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # numpy's own words for a non-zip file suggest loading it with pickle: never here
        why = ("not a zip archive of arrays" if "pickle" in str(e)
               else getattr(e, "strerror", None) or e)
        raise ModelError(f"{path} is not a readable .npz file ({why}); expected the file "
                         "'ramanedge quantize' wrote") from None


@dataclass(frozen=True)
class Artifact:
    """A validated model artifact. Build with :func:`load_artifact`."""

    folder: Path
    manifest: Manifest = field(repr=False)
    input_q: QuantParams
    probs_q: QuantParams
    features_q: QuantParams
    head: HeadWeights = field(repr=False)

    @property
    def name(self) -> str:
        """The artifact's name from the manifest."""
        return self.manifest.name

    @property
    def labels(self) -> tuple[str, ...]:
        """Mineral labels in the model's ``probs`` output order."""
        return tuple(self.manifest.labels)

    @property
    def grid(self) -> GridSpec:
        """The spectral grid the model expects (preprocessing target)."""
        return self.manifest.grid

    @property
    def model_path(self) -> Path:
        """Path of the ``.tflite`` file."""
        return self.folder / self.manifest.model_file

    @property
    def feature_dim(self) -> int:
        """Dimension D of the ``features`` output (192 flight, 2048 paper family)."""
        return int(self.features_q.shape[-1])

    @property
    def unknown(self) -> dict[str, Any] | None:
        """The manifest's ``unknown`` section (calibrated OOD threshold) or ``None``."""
        sec = self.manifest.data.get("unknown")
        return dict(sec) if isinstance(sec, dict) and sec else None

    @property
    def conformal(self) -> dict[str, Any] | None:
        """The manifest's ``conformal`` section (prediction-set rule, see
        :mod:`edge_runtime.conformal`) or ``None`` (older artifacts: no sets)."""
        sec = self.manifest.data.get("conformal")
        return dict(sec) if isinstance(sec, dict) and sec else None

    @property
    def calibration_file(self) -> Path | None:
        """Path of the conformal calibration features when the artifact has them, else
        ``None``."""
        name = self.manifest.calibration_file
        return self.folder / name if name is not None else None

    @property
    def base_output(self) -> str:
        """How the base (not retrained) classifier gets its probabilities.

        ``"head"``: softmax of ``head.npz`` over the dequantised int8 features, the same maths
        as a retrained head (the parity gate judged this path); ``"probs"``: the model's own
        int8 softmax output (older artifacts, or Edge-TPU-only deployments).
        """
        return self.manifest.base_output

    @property
    def exemplars_file(self) -> Path | None:
        """Path of the exemplar-features file when the artifact has one, else ``None``."""
        name = self.manifest.exemplars_file
        return self.folder / name if name is not None else None

    @property
    def library_file(self) -> Path | None:
        """Path of the spectral library (:mod:`ramanedge.library`) when the artifact has
        one, else ``None``."""
        name = self.manifest.library_file
        return self.folder / name if name is not None else None

    def load_library(self) -> SpectralLibrary | None:
        """The artifact's :class:`~ramanedge.library.SpectralLibrary`, or ``None`` without
        one; :class:`ModelError` when its file does not fit the manifest."""
        from ramanedge.library import LibraryConfig, SpectralLibrary

        path = self.library_file
        if path is None:
            return None
        config = LibraryConfig.from_dict(self.manifest.data["library"])
        arrays = load_npz_arrays(path, ("spectra", "y"))
        S = arrays["spectra"]
        rows = self.manifest.data["library"]["rows"]
        points = -(-self.grid.n_points // config.bin_width)  # bins of bin_width grid points
        if S.ndim != 2 or S.shape != (rows, points):
            raise ModelError(f"{path}: 'spectra' must be (M, {points}) with M = {rows} (the "
                             f"manifest's library.rows), got {S.shape}")
        try:
            return SpectralLibrary(S, arrays["y"], len(self.labels), config,
                                   grid_points=self.grid.n_points)
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from None


def load_artifact(folder: str | os.PathLike, *, verify_files: bool = True) -> Artifact:
    """Read and check an artifact folder; raise :class:`ManifestError` / :class:`ModelError`.

    Checks (before anything is used): the manifest schema version and its own sha256, the
    sha256 of every listed file (unless ``verify_files=False``), the quantisation entries of
    the input and both outputs against the grid, the labels and the head section
    (:func:`ramanedge.manifest.check_tensors`), and ``head.npz`` (``W`` (D, K), ``b`` (K,),
    no pickle).
    """
    folder = Path(folder)
    manifest = read_manifest(folder, verify_files=verify_files)
    tensors = check_tensors(manifest)
    head_path = folder / manifest.head_file
    arrays = load_npz_arrays(head_path, ("W", "b"))
    head = HeadWeights(arrays["W"], arrays["b"], tuple(manifest.labels), version="base")
    if head.feature_dim != tensors.feature_dim:
        raise ManifestError(f"{head_path}: W has {head.feature_dim} rows but the model's "
                            f"features have {tensors.feature_dim} dimensions")
    return Artifact(
        folder=folder,
        manifest=manifest,
        input_q=tensors.input,
        probs_q=tensors.probs,
        features_q=tensors.features,
        head=head,
    )
