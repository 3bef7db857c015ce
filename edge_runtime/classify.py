"""Classify raw spectra on the rover: :class:`Classifier` and :class:`Prediction`.

Usage (these names are part of the public API exported by :mod:`edge_runtime`)::

    art = load_artifact("models/NAME")
    clf = Classifier(art, make_interpreter(art.model_path))   # base head
    clf = Classifier.from_dir("models/NAME")                  # same, + active onboard head
    p = clf.classify_xy(x, y)        # raw spectrum (any axis covering the grid)
    p = clf.classify_grid(x1392)     # already preprocessed float32[1392]
    p.label, p.prob, p.top, p.set, p.unknown, p.compute_ms
    clf = clf.with_active_head(store)  # after HeadStore.retrain(): new head + unknown bank

Preprocessing is :func:`ramanedge.grid.preprocess`, the same code the trainer used. With the
artifact's own (base) head, the network's probabilities are ``softmax(features @ W + b)`` of
``head.npz`` on the dequantised int8 ``features`` output (``head.base_output = "head"``, what
the quantiser's parity gate checked; older artifacts: the model's int8 ``probs`` output),
blended with the artifact's spectral library when it has one (:mod:`ramanedge.library`).
With a head retrained on the rover they are that head's softmax alone.

A :class:`Classifier` owns no thread: TFLite interpreters are not thread-safe, so use one
classifier per thread.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_runtime import conformal, ood
from edge_runtime.artifact import Artifact, HeadWeights, load_artifact, softmax_and_max
from edge_runtime.headstore import HeadStore
from edge_runtime.interpreter import (
    check_tensor,
    get_output_float,
    make_interpreter,
    run_int8_batch,
    set_input_int8,
)
from ramanedge.errors import ModelError, RamanEdgeError, SpectrumError
from ramanedge.grid import CoveragePolicy, covered_span, preprocess_covered
from ramanedge.io import expand_paths, read_spectrum
from ramanedge.library import SpectralLibrary


@dataclass(frozen=True)
class Prediction:
    """The result of classifying one spectrum.

    ``top``: ``(label, probability)`` pairs, most probable first (``top_k`` of them).
    ``unknown``: True when the spectrum looks out of distribution (a mineral the model was not
    trained on) according to the artifact's calibrated ``unknown`` rule; ``top`` is still the
    closest known guess. ``unknown_score``: the rule's score (higher = more unknown).
    ``compute_ms``: wall time of quantisation, interpreter invoke, head, spectral library
    match and unknown check (not file reading or preprocessing). ``head``: the head version
    used (``"base"`` = artifact).
    ``coverage``: the fraction of the model grid the measured spectrum covered (1.0 = all of
    it; below 1 the rest was padded, :class:`~ramanedge.grid.CoveragePolicy`).
    ``set``: the conformal prediction set, most probable first: the minerals that hold the
    true one with the artifact's coverage level (:mod:`edge_runtime.conformal`); ``None``
    when the artifact has no ``conformal`` section.
    """

    top: tuple[tuple[str, float], ...]
    unknown: bool
    unknown_score: float
    compute_ms: float
    head: str = "base"
    coverage: float = 1.0
    set: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.top[0][0]

    @property
    def prob(self) -> float:
        """The probability of the most probable label."""
        return self.top[0][1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``top`` as ``[{"label", "prob"}]`` plus the other fields (an
        :func:`answer_record` without ``path`` and ``latency_ms``)."""
        d = answer_record("", top=self.top, set_=self.set, unknown=self.unknown,
                          unknown_score=self.unknown_score, coverage=self.coverage,
                          compute_ms=self.compute_ms, head=self.head, latency_ms=None)
        return {k: v for k, v in d.items() if k not in ("path", "latency_ms")}


class Classifier:
    """A model artifact plus an interpreter (plus optionally a retrained head).

    ``interpreter``: from :func:`~edge_runtime.interpreter.make_interpreter` on
    ``artifact.model_path`` (passed in so the caller chooses threads / Edge TPU).
    ``head``: a :class:`~edge_runtime.artifact.HeadWeights` retrained on the rover, or
    ``None`` for the artifact's own head. ``top_k``: number of labels in each prediction.
    ``unknown``: the unknown-detection section to apply; by default the artifact manifest's
    (``None`` in the manifest = nothing is ever flagged).
    ``ood_bank``: extra reference features (M, D) for the ``knn_cosine`` unknown rule, added to
    the artifact's exemplars (the head store's samples when a retrained head is active).
    ``coverage``: what to do with raw spectra that cover only part of the grid (default: pad,
    refuse below :data:`~ramanedge.grid.DEFAULT_MIN_COVERAGE`).
    Prediction sets follow the manifest's ``conformal`` section; with a retrained ``head`` its
    threshold is recomputed for that head from the artifact's calibration spectra
    (:func:`edge_runtime.conformal.recalibrate`, once, here), see :attr:`conformal_rule`.
    ``library``: blend the artifact's spectral library into the answer
    (:mod:`ramanedge.library`; its probabilities, top-k and sets; the kNN unknown rules'
    scores do not change, a ``max_prob`` rule reads the blended answer); ``False``: the
    network alone (the sets, and a ``max_prob`` rule, then recalibrated for it from the
    artifact's calibration spectra); a loaded :class:`~ramanedge.library.SpectralLibrary`
    is used as it is. Only with the artifact's own head: a head retrained on the rover
    names minerals the library holds no spectra of, so its answer is the head's alone.
    """

    def __init__(
        self,
        artifact: Artifact,
        interpreter: Any,
        *,
        head: HeadWeights | None = None,
        top_k: int = 3,
        unknown: dict[str, Any] | None | str = "artifact",
        ood_bank: np.ndarray | None = None,
        coverage: CoveragePolicy | None = None,
        library: bool | SpectralLibrary = True,
    ) -> None:
        if int(top_k) < 1:
            raise ModelError(f"top_k must be >= 1, got {top_k}")
        check_tensor(interpreter, artifact.input_q, output=False)
        check_tensor(interpreter, artifact.probs_q, output=True)
        check_tensor(interpreter, artifact.features_q, output=True)
        if head is not None and head.feature_dim != artifact.feature_dim:
            raise ModelError(f"head {head.version} expects {head.feature_dim}-d features but the "
                             f"model gives {artifact.feature_dim}")
        self.artifact = artifact
        self.interpreter = interpreter
        self.head = head
        self.top_k = int(top_k)
        self.load_problems: list[str] = []
        self._unknown_given = unknown  # what with_head() passes on (not a recalibration)
        # the float head the probabilities come from; None = the model's int8 probs output.
        # (base) the exported head on the int8 features avoids the int8 softmax's 1/256
        # steps, which tie near-equal classes (see docs/parts/quantize.md)
        self._probs_head = head if head is not None else (
            artifact.head if artifact.base_output == "head" else None)
        self.unknown_rule = artifact.unknown if unknown == "artifact" else unknown
        self._library_given = library  # what with_head() passes on
        self.library: SpectralLibrary | None = None
        if head is None and library is not False:
            self.library = (library if isinstance(library, SpectralLibrary)
                            else artifact.load_library())
            if self.library is not None and (
                    self.library.n_classes != len(artifact.labels)
                    or not self.library.fits(artifact.grid.n_points)):
                raise ModelError(f"spectral library of {self.library.n_classes} minerals x "
                                 f"{self.library.n_points} points (bins of "
                                 f"{self.library.config.bin_width}) for a model of "
                                 f"{len(artifact.labels)} minerals x "
                                 f"{artifact.grid.n_points} points")
        # the artifact's own head answered without the library the artifact holds: its sets
        # (and a max_prob rule) were calibrated on the blended answer, so they are redone
        # for the network alone from the calibration spectra, as for a retrained head
        self._unblended = (head is None and self.library is None
                           and artifact.library_file is not None)
        self.ood_bank = ood_bank
        self.coverage = CoveragePolicy() if coverage is None else coverage
        self._bank_unit: ood.Int8Bank | None = None
        self._unknown_threshold = 0.0
        self._calibration: tuple[np.ndarray, np.ndarray | None] | None = None
        if self.unknown_rule is not None:
            ood.check_section(self.unknown_rule)  # once: the per-spectrum path trusts it
            if self.unknown_rule["method"] in ood.BANK_METHODS:
                self._bank_unit = self._make_bank(ood_bank)
            if self.unknown_rule["method"] in ood.LOGIT_METHODS and head is not None:
                self.unknown_rule = self._recalibrated_unknown()
            if self.unknown_rule["method"] == "max_prob" and self._unblended:
                F, _ = self._calibration_arrays("unknown rule")
                self.unknown_rule = {**ood.calibrate_unknown(
                    artifact.head.probs(F), target_tpr=self.unknown_rule["target_tpr"]),
                    "recalibrated": True}
            self._unknown_threshold = ood.threshold_score(self.unknown_rule)
        self._logit_rule = (self.unknown_rule if self.unknown_rule is not None
                            and self.unknown_rule["method"] in ood.LOGIT_METHODS else None)
        self.conformal_rule = self._conformal_rule()
        self._set_threshold = (None if self.conformal_rule is None
                               else float(self.conformal_rule["threshold"]))
        self._head_version = self.head_version

    def _calibration_arrays(self, why: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The artifact's calibration spectra: (dequantised features (N, D), class ids or
        None), read once; :class:`ModelError` naming ``why`` when there are none."""
        if self._calibration is not None:
            return self._calibration
        path = self.artifact.calibration_file
        if path is None:
            raise ModelError(f"the artifact's {why} was calibrated for its own head and it "
                             "holds no calibration spectra to redo that for head "
                             f"{self.head_version}; re-export it with 'ramanedge quantize'")
        from edge_runtime.artifact import load_npz_arrays
        from edge_runtime.interpreter import dequantize_int8

        arrays = load_npz_arrays(path, ("features",), optional=("y",))  # one read
        codes, y = arrays["features"], arrays.get("y")
        d, k = self.artifact.feature_dim, len(self.artifact.labels)
        if codes.dtype != np.int8 or codes.ndim != 2 or codes.shape[1] != d or not len(codes):
            raise ModelError(f"{path}: 'features' must be int8 (N, {d}) with N >= 1, got "
                             f"{codes.dtype} {codes.shape}")
        if y is not None and (y.dtype.kind not in "iu" or y.shape != (codes.shape[0],)
                              or (y.size and not 0 <= y.min() <= y.max() < k)):
            raise ModelError(f"{path}: 'y' must hold one integer class id in 0..{k - 1} per "
                             "row")
        if y is not None:
            y = y.astype(np.int64)
        self._calibration = (dequantize_int8(codes, self.artifact.features_q), y)
        return self._calibration

    def _recalibrated_unknown(self) -> dict[str, Any]:
        """The ``knn_logit`` rule recomputed for this classifier's head and bank."""
        F, _ = self._calibration_arrays("unknown rule")
        return ood.recalibrate_knn_logit(self.unknown_rule, F, self.head.logits(F),
                                         self._bank_unit)

    def _conformal_rule(self) -> dict[str, Any] | None:
        """The prediction-set rule for this classifier's head (``None``: no sets)."""
        rule = self.artifact.conformal
        if rule is None:
            return None
        conformal.check_section(rule)
        if self.head is None and not self._unblended:
            return rule
        head = self.head if self.head is not None else self.artifact.head
        what = (f"head {head.version}" if self.head is not None
                else "the network without its spectral library")
        F, y = self._calibration_arrays("prediction sets")
        if y is None:
            raise ModelError(f"{self.artifact.calibration_file}: no class ids ('y') to "
                             f"recalibrate the prediction sets for {what}")
        probs = head.probs(F)
        names = [self.artifact.labels[i] for i in y]
        try:
            return conformal.recalibrate(rule, probs, head.labels, names)
        except ValueError as e:
            raise ModelError(f"cannot recalibrate the prediction sets for {what}: {e}") \
                from None

    def _make_bank(self, extra: np.ndarray | None) -> ood.Int8Bank:
        from edge_runtime.artifact import load_npz_arrays

        d = self.artifact.feature_dim
        codes = np.zeros((0, d), dtype=np.int8)
        if self.artifact.exemplars_file is not None:
            # straight from the stored int8 features: never a full float32 copy of the bank
            codes = load_npz_arrays(self.artifact.exemplars_file, ("features",))["features"]
            if codes.dtype != np.int8 or codes.ndim != 2 or codes.shape[1] != d:
                raise ModelError(f"{self.artifact.exemplars_file}: 'features' must be int8 "
                                 f"(N, {d}), got {codes.dtype} {codes.shape}")
        bank = ood.Int8Bank(codes, self.artifact.features_q.zero_point,
                            None if extra is None else np.asarray(extra, dtype=np.float32))
        if not len(bank):
            raise ModelError("the artifact's unknown rule is knn_cosine but it has no "
                             "exemplars.npz to compare with")
        return bank

    @classmethod
    def from_dir(
        cls,
        model_dir: str | os.PathLike,
        *,
        num_threads: int = 1,
        edgetpu: bool = False,
        top_k: int = 3,
        use_head_store: bool = True,
        head_store: str | os.PathLike | None = None,
        coverage: CoveragePolicy | None = None,
        verify_files: bool = True,
    ) -> Classifier:
        """Load an artifact folder, make its interpreter and pick the active head.

        With ``use_head_store`` the active head of the head store (``head_store``, default
        ``model_dir/headstore``) for this model is used when one was trained (see
        :mod:`edge_runtime.headstore`); otherwise the base head. Problems met in the store
        (corrupt files skipped) are listed in ``load_problems``. ``verify_files=False`` skips
        re-hashing the files when the caller has just verified them (the device's model
        store does, once per commit).
        """
        artifact = load_artifact(model_dir, verify_files=verify_files)
        interpreter = make_interpreter(artifact.model_path, num_threads=num_threads,
                                       edgetpu=edgetpu)
        clf = cls(artifact, interpreter, top_k=top_k, coverage=coverage)
        if use_head_store:
            store = HeadStore.open_existing(artifact, head_store)
            if store is not None:
                clf = clf.with_active_head(store)
        return clf

    def with_head(self, head: HeadWeights | None, *,
                  ood_bank: np.ndarray | None | str = "same",
                  library: bool | SpectralLibrary | str = "same") -> Classifier:
        """A classifier sharing this one's interpreter but using ``head`` (None = base).

        ``ood_bank``: extra unknown-rule references for the new classifier (default: this
        one's); see :meth:`with_active_head` to take both from a head store. ``library``:
        as the constructor's (default: this one's choice; a library already loaded is
        shared, not read again).
        """
        bank = self.ood_bank if isinstance(ood_bank, str) and ood_bank == "same" else ood_bank
        if isinstance(library, str) and library == "same":
            library = (self.library if self.library is not None
                       and self._library_given is not False else self._library_given)
        return Classifier(self.artifact, self.interpreter, head=head, top_k=self.top_k,
                          unknown=self._unknown_given, ood_bank=bank, coverage=self.coverage,
                          library=library)

    def with_active_head(self, store: HeadStore) -> Classifier:
        """A classifier using ``store``'s active head (a
        :class:`~edge_runtime.headstore.HeadStore` of this artifact) and, for the
        ``knn_cosine`` unknown rule, that head's samples as extra references."""
        head = store.active_head()
        bank = store.sample_features(head.labels) if head is not None else None
        clf = self.with_head(head, ood_bank=bank)
        clf.load_problems = list(store.problems)
        return clf

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the active head, in probability order."""
        return self.head.labels if self.head is not None else self.artifact.labels

    @property
    def head_version(self) -> str:
        """``"base"`` or the retrained head's version."""
        return self.head.version if self.head is not None else "base"

    def _invoke(self, x_grid: np.ndarray) -> None:
        x = np.asarray(x_grid, dtype=np.float32)
        n = self.artifact.input_q.shape[-1]
        if x.shape != (n,) and x.shape != (1, n):
            raise SpectrumError(f"classify_grid needs a preprocessed spectrum of {n} points, "
                                f"got shape {x.shape}")
        # two reductions instead of an elementwise isfinite array: max and min carry any NaN
        # or inf, and their difference in Python floats (double) cannot overflow
        if not math.isfinite(float(x.max()) - float(x.min())):
            raise SpectrumError("spectrum contains NaN or infinite values")
        set_input_int8(self.interpreter, x, self.artifact.input_q)
        self.interpreter.invoke()

    def features(self, x_grid: np.ndarray) -> np.ndarray:
        """The dequantised D-dimensional ``features`` output (float32) for one grid spectrum.

        These are what the onboard head retrainer fits on.
        """
        self._invoke(x_grid)
        return get_output_float(self.interpreter, self.artifact.features_q).reshape(-1)

    def features_int8(self, x_grid: np.ndarray) -> np.ndarray:
        """The model's raw int8 ``features`` output (D,) for one grid spectrum (a copy)."""
        self._invoke(x_grid)
        q = self.interpreter.get_tensor(self.artifact.features_q.index)
        return np.array(q, dtype=np.int8).reshape(-1)

    def features_batch(self, X_grid: np.ndarray) -> np.ndarray:
        """:meth:`features` for each row of ``X_grid`` (N, grid points) -> (N, D) float32."""
        X = np.asarray(X_grid, dtype=np.float32)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise SpectrumError(f"features_batch needs finite spectra of shape (N, points), "
                                f"got shape {X.shape}")
        return run_int8_batch(self.interpreter, X, self.artifact.input_q,
                              {"features": self.artifact.features_q})["features"]

    def scores(self, x_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities over :attr:`labels` (float64), dequantised features) of one grid
        spectrum, from a single interpreter invoke."""
        probs, feats, _ = self._outputs(x_grid)
        return probs, feats

    def _outputs(self, x_grid: np.ndarray, span: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, float]:
        """(probabilities, features, the float head's largest logit or NaN when not
        computed) from one invoke."""
        self._invoke(x_grid)
        feats = get_output_float(self.interpreter, self.artifact.features_q).reshape(-1)
        if self._probs_head is not None:
            probs, mx = softmax_and_max(self._probs_head.logits(feats))
        else:
            probs = get_output_float(self.interpreter,
                                     self.artifact.probs_q).reshape(-1).astype(np.float64)
            mx = math.nan
            if self._logit_rule is not None:
                mx = float(self.artifact.head.logits(feats).max())
        if self.library is not None:  # the answer, not the unknown rule's largest logit
            probs = self.library.blend(probs, x_grid, span)
        return probs, feats, mx

    def predict_proba_batch(self, X_grid: np.ndarray) -> np.ndarray:
        """Probabilities over :attr:`labels` (float64) for each row of ``X_grid`` (N, grid
        points): the int8 batch loop, then the same head as :meth:`scores`."""
        X = np.asarray(X_grid, dtype=np.float32)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise SpectrumError(f"predict_proba_batch needs finite spectra of shape (N, "
                                f"points), got shape {X.shape}")
        if self._probs_head is not None:
            F = run_int8_batch(self.interpreter, X, self.artifact.input_q,
                               {"features": self.artifact.features_q})["features"]
            P = self._probs_head.probs(F)
        else:
            P = run_int8_batch(self.interpreter, X, self.artifact.input_q,
                               {"probs": self.artifact.probs_q})["probs"].astype(np.float64)
        return P if self.library is None else self.library.blend_batch(P, X)

    def occlusion(self, x_grid: np.ndarray, label: str | None = None, *,
                  half_width: int = 10, stride: int = 5) -> np.ndarray:
        """Which wavenumbers the answer rests on, TF-free: the occlusion map (grid points,
        [0, 1]) of ``label`` (default: the top answer) for one preprocessed spectrum, through
        this classifier's own int8 path (:func:`ramanedge.attribution.occlusion_map`; about
        ``1392 / stride`` extra invokes)."""
        from ramanedge.attribution import occlusion_map

        x = np.asarray(x_grid, dtype=np.float32).reshape(-1)
        probs = self.predict_proba(x)
        labels = list(self.labels)
        if label is None:
            cls = int(np.argmax(probs))
        elif label in labels:
            cls = labels.index(label)
        else:
            raise ModelError(f"label {label!r} is not one of the classifier's "
                             f"{len(labels)} minerals")
        return occlusion_map(self.predict_proba_batch, x, cls, half_width=half_width,
                             stride=stride)

    def predict_proba(self, x_grid: np.ndarray) -> np.ndarray:
        """Probabilities over :attr:`labels` (float64) for one grid spectrum."""
        return self.scores(x_grid)[0]

    def classify_grid(self, x_grid: np.ndarray, *,
                      span: tuple[int, int] | None = None) -> Prediction:
        """Classify one preprocessed spectrum (float32, the artifact's grid points).
        ``span``: the grid points ``[lo, hi)`` a partially covering spectrum measured (the
        rest padded; :meth:`classify_xy` passes it), for a library that matches over the
        covered part only (``LibraryConfig.window_norm``)."""
        # the rover's per-spectrum path: every numpy call here costs about a microsecond
        # against a ~0.1 ms model invoke (issue 12 bounds the whole check at 0.3x the invoke),
        # so scalars leave numpy as Python floats early, each array is touched once and no
        # value is computed twice (the same arithmetic as scores() and the batch paths).
        # The spectral library's lag search (in _outputs) is one product over the library
        # rows of the 20 candidate minerals (about 1 M multiply-adds over bins of 4 cm-1):
        # the largest part of the answer, about 0.25 ms on a slow host (docs/results.md
        # section 4)
        t0 = time.perf_counter()
        probs, feats, max_logit = self._outputs(x_grid, span)
        n_set = 0
        if self._set_threshold is not None:
            n_set = conformal.set_size(probs, self._set_threshold)
        # the top-k and the set are one prefix of the ranking
        ranked = np.argsort(-probs, kind="stable")[:max(self.top_k, n_set)].tolist()
        p = probs[ranked].tolist()
        labels = self.labels
        top = tuple(zip([labels[i] for i in ranked[:self.top_k]], p[:self.top_k], strict=True))
        pset = (None if self._set_threshold is None
                else tuple([labels[i] for i in ranked[:n_set]]))
        if self.unknown_rule is None:
            score, unknown = 0.0, False
        else:
            if self._bank_unit is None:
                score = 1.0 - p[0]  # max_prob (ood.unknown_score)
            else:
                score, length = self._bank_unit.distance_and_norm(feats)
                if self._logit_rule is not None:
                    score = ood.knn_logit_score_1(score, max_logit, self._logit_rule, length)
            unknown = score > self._unknown_threshold
        ms = (time.perf_counter() - t0) * 1e3
        return Prediction(top=top, unknown=unknown, unknown_score=score, compute_ms=ms,
                          head=self._head_version, set=pset)

    def preprocess(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Raw spectrum -> the model's grid (:func:`ramanedge.grid.preprocess_covered` with
        this classifier's coverage policy)."""
        return self.preprocess_covered(x, y)[0]

    def preprocess_covered(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Raw spectrum -> ``(the model's grid, covered fraction of the grid)``. A spectrum
        that is flat on the grid (every point equal, e.g. a saturated detector) raises
        :class:`~ramanedge.errors.SpectrumError`: it holds no band to name a mineral by."""
        grid, frac = preprocess_covered(x, y, self.artifact.grid, self.coverage)
        if float(grid.min()) == float(grid.max()):
            raise SpectrumError("spectrum is flat on the model grid (every point the same "
                                "value): no Raman bands to classify; expected a measured "
                                "spectrum")
        return grid, frac

    def classify_xy(self, x: np.ndarray, y: np.ndarray) -> Prediction:
        """Classify a raw spectrum: wavenumbers ``x`` (cm-1), intensities ``y``.

        Raises :class:`~ramanedge.errors.SpectrumError` (or its subclass ``CoverageError``)
        when the spectrum is empty, holds NaN/inf, has no positive maximum, is flat on the
        model grid, or covers less of the model grid than the coverage policy accepts.
        """
        grid, frac = self.preprocess_covered(x, y)
        span = covered_span(x, self.artifact.grid) if frac < 1.0 else None
        return replace(self.classify_grid(grid, span=span), coverage=frac)

    def classify_file(self, path: str | os.PathLike) -> Prediction:
        """Read one spectrum file (:func:`ramanedge.io.read_spectrum`) and classify it."""
        s = read_spectrum(path)
        try:
            return self.classify_xy(s.x, s.y)
        except SpectrumError as e:
            if str(path) in str(e):
                raise
            raise type(e)(f"{e} ({path})") from None


#: Keys of one answer record, the same for ``ramanedge classify --json`` and ``ramanedge sim
#: classify`` (docs/parts/edge.md): a field one path cannot know is ``null`` there.
RECORD_KEYS = ("path", "top", "set", "unknown", "unknown_score", "coverage", "compute_ms",
               "head", "latency_ms")


def answer_record(path: str, *, top: Iterable[tuple[str, float]],
                  set_: Iterable[str] | None, unknown: bool,
                  unknown_score: float | None, coverage: float, compute_ms: float,
                  head: str | None, latency_ms: float | None) -> dict[str, Any]:
    """One answer as a JSON-ready record with :data:`RECORD_KEYS` (``top`` as
    ``[{"label", "prob"}]``, best first; ``set``: the conformal prediction set's labels, most
    probable first, or ``None`` without one; ``coverage``: the fraction of the model grid the
    spectrum covered, 1.0 = all)."""
    return {"path": str(path),
            "top": [{"label": lab, "prob": round(float(p), 6)} for lab, p in top],
            "set": None if set_ is None else [str(lab) for lab in set_],
            "unknown": bool(unknown),
            "unknown_score": None if unknown_score is None else round(float(unknown_score), 6),
            "coverage": round(float(coverage), 4),
            "compute_ms": round(float(compute_ms), 4), "head": head,
            "latency_ms": None if latency_ms is None else round(float(latency_ms), 3)}


def error_record(path: str, error: str) -> dict[str, Any]:
    """The record of a file that got no answer: ``{"path", "top": [], "set": null,
    "unknown": null, "error"}``."""
    return {"path": str(path), "top": [], "set": None, "unknown": None, "error": str(error)}


@dataclass(frozen=True)
class FileResult:
    """Outcome for one input file: a prediction, or the error that stopped it.

    ``latency_ms``: file read + preprocessing + classification, wall time.
    """

    path: str
    prediction: Prediction | None = None
    error: str | None = field(default=None)
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        """True when the file was classified."""
        return self.prediction is not None

    def to_dict(self) -> dict[str, Any]:
        """One JSON-lines record (:func:`answer_record` / :func:`error_record`)."""
        p = self.prediction
        if p is None:
            return error_record(self.path, self.error or "")
        return answer_record(self.path, top=p.top, set_=p.set, unknown=p.unknown,
                             unknown_score=p.unknown_score, coverage=p.coverage,
                             compute_ms=p.compute_ms, head=p.head, latency_ms=self.latency_ms)


def classify_paths(
    classifier: Classifier, paths: Iterable[str | os.PathLike]
) -> Iterator[FileResult]:
    """Classify every file of ``paths`` (files and folders, :func:`ramanedge.io.expand_paths`);
    a bad file never stops the batch.

    Each failure (missing file, unreadable, not a spectrum, NaN/inf, not covering the grid,
    ...) becomes a :class:`FileResult` with ``error`` set to a one-line reason.
    """
    for path, err in expand_paths(paths):
        if err is not None:
            yield FileResult(path, error=err)
            continue
        try:
            t0 = time.perf_counter()
            pred = classifier.classify_file(path)
            yield FileResult(path, prediction=pred,
                             latency_ms=(time.perf_counter() - t0) * 1e3)
        except RamanEdgeError as e:  # the record carries the path: keep the message short
            yield FileResult(path, error=str(e).replace(f" ({path})", ""))
        except OSError as e:
            yield FileResult(path, error=f"cannot read {path}: {e.strerror or e}")
