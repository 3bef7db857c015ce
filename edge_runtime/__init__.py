"""The rover side: load a checked int8 artifact, classify spectra, learn new minerals onboard.

Never imports TensorFlow, Keras, ``trainer`` or ``quantize`` (the rover computer has none of
them). The stable API is the names below, importable from ``edge_runtime`` itself; everything
else in the submodules may change with the code that uses it::

    from edge_runtime import Classifier, HeadStore, add_spectra, load_artifact

    art = load_artifact("models/NAME")                   # Artifact: manifest + sha256 checked
    clf = Classifier.from_dir("models/NAME")             # + the head store's active head
    p = clf.classify_xy(x, y)                            # Prediction: label, prob, top, unknown
    for r in classify_paths(clf, ["spectra/"]): ...      # FileResult per file, never raises
    store = HeadStore.open(art, create=True)             # onboard samples and heads
    for path, sample, created, err in add_spectra(store, clf, "Jarosite", files): ...
    store.retrain(); clf = clf.with_active_head(store)

* artifact (:mod:`edge_runtime.artifact`): :func:`load_artifact`, :class:`Artifact`,
  :class:`HeadWeights`;
* one int8 runtime path (:mod:`edge_runtime.interpreter`): :func:`make_interpreter`,
  :func:`model_tensors`, :func:`run_int8_batch`, :class:`QuantParams`;
* classification (:mod:`edge_runtime.classify`): :class:`Classifier`, :class:`Prediction`,
  :func:`classify_paths`, :class:`FileResult`, and the JSON answer records shared with
  ``ramanedge sim classify``: :func:`answer_record`, :func:`error_record`,
  :data:`RECORD_KEYS`;
* unknown minerals (:mod:`edge_runtime.ood`): :func:`calibrate_unknown` (the manifest's
  ``unknown`` section);
* onboard learning (:mod:`edge_runtime.head`, :mod:`edge_runtime.headstore`):
  :class:`SoftmaxHead`, :class:`HeadStore`, :class:`HeadInfo`, :class:`Sample`,
  :func:`add_spectra`.

``import edge_runtime`` stays light: a name is imported from its submodule on first use
(PEP 562), so the TFLite runtime is loaded only when an interpreter is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ramanedge.lazy import lazy_exports

if TYPE_CHECKING:
    from edge_runtime.artifact import Artifact, HeadWeights, load_artifact
    from edge_runtime.classify import (
        RECORD_KEYS,
        Classifier,
        FileResult,
        Prediction,
        answer_record,
        classify_paths,
        error_record,
    )
    from edge_runtime.head import SoftmaxHead
    from edge_runtime.headstore import HeadInfo, HeadStore, Sample, add_spectra
    from edge_runtime.interpreter import (
        QuantParams,
        make_interpreter,
        model_tensors,
        run_int8_batch,
    )
    from edge_runtime.ood import calibrate_unknown

#: submodule -> the public names it defines (imported on first use)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "artifact": ("Artifact", "HeadWeights", "load_artifact"),
    "interpreter": ("QuantParams", "make_interpreter", "model_tensors", "run_int8_batch"),
    "classify": ("RECORD_KEYS", "Classifier", "FileResult", "Prediction", "answer_record",
                 "classify_paths", "error_record"),
    "ood": ("calibrate_unknown",),
    "head": ("SoftmaxHead",),
    "headstore": ("HeadInfo", "HeadStore", "Sample", "add_spectra"),
}

__all__ = [
    "RECORD_KEYS",
    "Artifact",
    "Classifier",
    "FileResult",
    "HeadInfo",
    "HeadStore",
    "HeadWeights",
    "Prediction",
    "QuantParams",
    "Sample",
    "SoftmaxHead",
    "add_spectra",
    "answer_record",
    "calibrate_unknown",
    "classify_paths",
    "error_record",
    "load_artifact",
    "make_interpreter",
    "model_tensors",
    "run_int8_batch",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
