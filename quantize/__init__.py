"""The ground side's int8 export: a training run becomes a checked rover artifact.

The stable API is the names below, importable from ``quantize`` itself; everything else in
the submodules may change with the code that uses it::

    from quantize import QuantizeConfig, check_edgetpu, quantize_run
    res = quantize_run("runs/NAME", "models/NAME",
                       config=QuantizeConfig(exemplars_per_class=10))   # ramanedge quantize
    print(res.manifest.data["metrics"]["gate"], res.sizes)
    print(check_edgetpu("models/NAME").format())                        # op-by-op report

* export (:mod:`quantize.export`): :func:`export_artifact` (in-memory model and arrays),
  :func:`quantize_run` (a run folder), :class:`QuantizeConfig`, :class:`ExportResult`,
  :func:`select_calibration` (the stratified representative set);
* parity gate (:mod:`quantize.gate`): :class:`ParityGateError`, :class:`ParityReport`,
  :func:`parity_report`, :func:`gate_failure`;
* conversion and running (:mod:`quantize.convert`, :mod:`quantize.runner`):
  :func:`dual_output_model`, :func:`export_saved_model`, :func:`convert`,
  :class:`TFLiteRunner` (the rover's int8 runtime path, on the ground);
* exemplars (:mod:`quantize.exemplars`): :func:`select_exemplars`, :func:`build_exemplars`,
  :class:`ExemplarBank`, :func:`attach_exemplars` (add them to an existing artifact);
* calibration sweep (:mod:`quantize.sweep`): :func:`calibration_sweep`, :func:`sweep_table`;
* Edge TPU check (:mod:`quantize.edgetpu`): :func:`check_edgetpu`, :class:`EdgeTPUReport`,
  :func:`read_graph`.

The artifact's names and manifest schema are :mod:`ramanedge.manifest`'s. ``import quantize``
stays light (PEP 562: a name is imported from its submodule on first use) and TensorFlow is
imported only inside the functions that convert or load Keras models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ramanedge.lazy import lazy_exports

if TYPE_CHECKING:
    from quantize.convert import convert, dual_output_model, export_saved_model
    from quantize.edgetpu import EdgeTPUReport, check_edgetpu, read_graph
    from quantize.exemplars import (
        ExemplarBank,
        attach_exemplars,
        build_exemplars,
        select_exemplars,
    )
    from quantize.export import (
        ExportResult,
        QuantizeConfig,
        export_artifact,
        quantize_run,
        select_calibration,
    )
    from quantize.gate import ParityGateError, ParityReport, gate_failure, parity_report
    from quantize.runner import TFLiteRunner
    from quantize.sweep import calibration_sweep, sweep_table

#: submodule -> the public names it defines (imported on first use)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "export": ("ExportResult", "QuantizeConfig", "export_artifact", "quantize_run",
               "select_calibration"),
    "gate": ("ParityGateError", "ParityReport", "gate_failure", "parity_report"),
    "convert": ("convert", "dual_output_model", "export_saved_model"),
    "runner": ("TFLiteRunner",),
    "exemplars": ("ExemplarBank", "attach_exemplars", "build_exemplars", "select_exemplars"),
    "sweep": ("calibration_sweep", "sweep_table"),
    "edgetpu": ("EdgeTPUReport", "check_edgetpu", "read_graph"),
}

__all__ = [
    "EdgeTPUReport",
    "ExemplarBank",
    "ExportResult",
    "ParityGateError",
    "ParityReport",
    "QuantizeConfig",
    "TFLiteRunner",
    "attach_exemplars",
    "build_exemplars",
    "calibration_sweep",
    "check_edgetpu",
    "convert",
    "dual_output_model",
    "export_artifact",
    "export_saved_model",
    "gate_failure",
    "parity_report",
    "quantize_run",
    "read_graph",
    "select_calibration",
    "select_exemplars",
    "sweep_table",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
