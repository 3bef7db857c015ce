"""Edge-only probe: cold start and peak memory of a rover-side process (no TensorFlow).

Started in a fresh interpreter by :mod:`benchmarks.memory`::

    python -m benchmarks.edge_probe --model models/default SPECTRUM_FILES...

It imports only ``edge_runtime`` (and through it numpy, the TFLite runtime and
``ramanedge``'s core), loads the artifact (manifest and sha256 checks, interpreter), then
reads, preprocesses and classifies every file. It prints one JSON line: wall-clock stamps
(``time.time()``, so the parent can add the interpreter's own start-up), phase durations,
the peak RSS (``ru_maxrss``) and the list of heavy modules that got imported (must be empty).

Keep this module's imports minimal: everything imported here is part of what is measured.
"""

import time

T_MAIN = time.time()
P_MAIN = time.perf_counter()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

FORBIDDEN = ("tensorflow", "keras", "trainer", "quantize", "sklearn", "scipy", "matplotlib")


def _status_kib(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _vm_hwm_kib() -> int:
    """This process's own peak resident set (``VmHWM``, not inherited across fork/exec)."""
    return _status_kib("VmHWM")


RSS_START_KIB = _status_kib("VmRSS")


def main(argv: list[str]) -> dict:
    """Run the probe on ``argv`` = ``[--model DIR] [--threads N] [--no-unknown] FILES...``;
    returns the result. ``--no-unknown`` classifies without the artifact's unknown rule."""
    model = None
    threads = 1
    unknown = True
    files: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--model":
            model = next(it)
        elif a == "--threads":
            threads = int(next(it))
        elif a == "--no-unknown":
            unknown = False
        else:
            files.append(a)
    if model is None or not files:
        raise SystemExit("usage: python -m benchmarks.edge_probe --model DIR FILES...")
    p0 = time.perf_counter()
    from edge_runtime.classify import Classifier  # the whole rover-side stack

    p1 = time.perf_counter()
    rss_import = _status_kib("VmRSS")
    if unknown:
        clf = Classifier.from_dir(model, num_threads=threads, use_head_store=False)
    else:
        from edge_runtime.artifact import load_artifact
        from edge_runtime.interpreter import make_interpreter

        art = load_artifact(model)
        clf = Classifier(art, make_interpreter(art.model_path, num_threads=threads),
                         unknown=None)
    p2 = time.perf_counter()
    rss_load = _status_kib("VmRSS")
    hwm_load = _vm_hwm_kib()
    first = clf.classify_file(files[0])
    p3 = time.perf_counter()
    t_first = time.time()
    rss_after_first = _vm_hwm_kib()
    labels = [first.label]
    for f in files[1:]:
        labels.append(clf.classify_file(f).label)
    p4 = time.perf_counter()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    return {
        "t_main_wall": T_MAIN,
        "t_first_result_wall": t_first,
        "import_s": p1 - p0,
        "load_s": p2 - p1,
        "first_inference_s": p3 - p2,
        "cold_start_in_process_s": p3 - p0,
        "module_to_first_s": p3 - P_MAIN,
        "rest_s": p4 - p3,
        "n_classified": len(labels),
        "per_spectrum_rest_ms": 1e3 * (p4 - p3) / max(1, len(labels) - 1),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vm_hwm_kib": _vm_hwm_kib(),
        "peak_rss_after_first_kib": rss_after_first,
        "heavy_modules": heavy[:20],
        "unknown_rule": bool(unknown and clf.unknown_rule is not None),
        "rss_kib": {"start": RSS_START_KIB, "after_import": rss_import, "after_load": rss_load,
                    "hwm_after_load": hwm_load, "end": _status_kib("VmRSS")},
        "labels_head": labels[:5],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])), flush=True)
