"""Replay spectra to a device process over a pty pair and measure the link end to end.

:func:`replay` starts ``ramanedge device serve`` as a separate process on the slave end of
a pty pair (``os.openpty``; no hardware), keeps the master end, and sends every spectrum as
a CLASSIFY request through a :class:`~device_sim.host.HostClient` (paced to the baud rate,
with optional line faults and device restarts). It reports wire time (from the bytes
actually sent both ways), device compute time, end-to-end latency percentiles, throughput,
accuracy, device RSS (peak and growth) and the retry counters, as JSON plus a PNG.

What travels: by default (``payload="raw"``) each spectrum is the **raw** RRUFF spectrum
on its own axis, cut to the window the model needs (the last point <= 200 cm-1 to the first
point >= 1591 cm-1, ~720 points for LR-Raman broad scans), 2 bytes per point for the axis
and 2 for the intensity; the device resamples and normalises (:func:`ramanedge.grid.preprocess`).
``payload="grid"`` sends the already preprocessed 1392-point spectrum with a grid id.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.host import HostClient, HostConfig
from device_sim.protocol import labels_hash
from device_sim.transport import FaultConfig, Link, open_port, open_pty_pair
from ramanedge import jsonio
from ramanedge.errors import DataError, LinkError
from ramanedge.grid import DEFAULT_GRID

PAYLOADS = ("raw", "grid")


@dataclass(frozen=True)
class ReplayItem:
    """One spectrum to replay: ``x`` (None = on the model grid), ``y``, true ``label``, id."""

    y: np.ndarray
    x: np.ndarray | None
    label: str
    ident: str


@dataclass(frozen=True)
class ReplayConfig:
    """Replay settings (see ``ramanedge sim replay --help``).

    ``baud``: line rate both ways (``None`` = no pacing, full speed); ``cpus`` / ``threads``:
    ``pace``: pace both ends in software (off for a real UART with ``port``);
    the device's core pinning and interpreter threads; ``faults``: line faults (both
    directions) and device restarts; ``limit``: number of spectra (cycles through the
    items when larger); ``rss_every``: sample the device RSS every N spectra; ``port``:
    talk to an already running device on this port instead of starting one.
    """

    model: Path
    baud: int | None = 115200
    pace: bool = True
    limit: int | None = None
    cpus: int | None = 1
    threads: int = 1
    faults: FaultConfig = field(default_factory=FaultConfig)
    top_k: int = 3
    rss_every: int = 10
    warmup_fraction: float = 0.1
    port: str | None = None
    boot_timeout: float = 120.0
    store: Path | None = None


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def crop_to_window(x: np.ndarray, y: np.ndarray, start: float = DEFAULT_GRID.start,
                   stop: float = DEFAULT_GRID.stop) -> tuple[np.ndarray, np.ndarray]:
    """Keep the points from the last one <= ``start`` to the first one >= ``stop``.

    Linear interpolation onto the grid only uses the neighbours of each grid point, so the
    device's preprocessing of the cropped spectrum equals that of the full one. A spectrum
    that starts above ``start`` (ends below ``stop``) keeps its own first (last) point: the
    device pads it under its coverage policy exactly as it would the whole file.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        return x, y
    below = x[x <= start]
    above = x[x >= stop]
    lo = below.max() if below.size else x.min()
    hi = above.min() if above.size else x.max()
    m = (x >= lo) & (x <= hi)
    return x[m], y[m]


def load_items(data_root: str | os.PathLike, *, dataset: str = "rruff-raw",
               split_file: str | os.PathLike | None = None, part: str = "test",
               payload: str = "raw", min_spectra: int = 8,
               cache_dir: str | os.PathLike | None = None,
               progress: Callable[[str], None] | None = None) -> list[ReplayItem]:
    """The spectra of one split part of an RRUFF data set, in data-set order.

    The split is ``split_file`` (e.g. the training run's ``split.csv``) or the default
    grouped split (seed 0). ``payload="raw"`` re-reads each raw file (cached under
    ``cache_dir``) and crops it to the model window; ``"grid"`` uses the data set's
    preprocessed rows.
    """
    from ramanedge.dataset import build_dataset
    from ramanedge.paths import default_cache_dir
    from ramanedge.splits import complete_split, make_split, read_split_csv

    if payload not in PAYLOADS:
        raise DataError(f"payload must be one of {PAYLOADS}, got {payload!r}")
    say = progress or (lambda _m: None)
    ds = build_dataset(data_root, dataset, min_spectra=min_spectra)
    if split_file is not None:  # a subset without val is completed as training did (seed 0)
        split, notes = complete_split(ds, read_split_csv(split_file, ds))
        for note in notes:
            say(note)
    else:
        split = make_split(ds, kind="grouped", seed=0)
    idx = np.flatnonzero(np.asarray(split) == part)
    if idx.size == 0:
        raise DataError(f"the split has no {part!r} spectra")
    labels = [ds.labels[int(ds.y[i])] for i in idx]
    paths = [ds.paths[i] for i in idx]
    if payload == "grid":
        return [ReplayItem(ds.X[i].astype(np.float64), None, lab, p)
                for i, lab, p in zip(idx, labels, paths, strict=True)]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps([ds.cache_key, dataset, paths]).encode()).hexdigest()[:16]
    cfile = cache / f"replay-raw-{key}.npz"
    if cfile.is_file():
        with np.load(cfile, allow_pickle=False) as z:
            xs, ys, offs = z["x"], z["y"], z["offsets"]
        say(f"raw spectra from cache {cfile}")
    else:
        say(f"reading {len(paths)} raw spectra from {data_root} (once; cached)")
        xs, ys, offs = _read_raw(Path(data_root), paths)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(".tmp.npz")
        np.savez(tmp, x=xs, y=ys, offsets=offs)
        os.replace(tmp, cfile)
    return [ReplayItem(ys[offs[j]:offs[j + 1]], xs[offs[j]:offs[j + 1]], labels[j], paths[j])
            for j in range(len(paths))]


def _read_raw(root: Path, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ramanedge.io.rruff import parse_rruff
    from ramanedge.io.sources import iter_spectrum_files

    wanted = set(paths)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sf in iter_spectrum_files(root, accept=lambda rel: rel in wanted):
        if sf.path in wanted and sf.path not in found:
            s = parse_rruff(sf.data, sf.path)
            found[sf.path] = crop_to_window(s.x, s.y)
        if len(found) == len(wanted):
            break
    missing = [p for p in paths if p not in found]
    if missing:
        raise DataError(f"{len(missing)} spectra of the split were not found under {root}, "
                        f"e.g. {missing[0]}")
    offs = np.zeros(len(paths) + 1, dtype=np.int64)
    for j, p in enumerate(paths):
        offs[j + 1] = offs[j] + found[p][0].size
    xs = np.concatenate([found[p][0] for p in paths])
    ys = np.concatenate([found[p][1] for p in paths])
    return xs, ys, offs


# --------------------------------------------------------------------------------------------
# the device process
# --------------------------------------------------------------------------------------------


class DeviceProcess:
    """``ramanedge device serve`` in a child process on a given port; restartable."""

    def __init__(self, port: str, model: Path, store: Path, *, threads: int,
                 cpus: int | None, baud: int | None, faults: FaultConfig,
                 log_path: Path | None = None, pace: bool = True) -> None:
        self.port = port
        self.model = Path(model)
        self.store = Path(store)
        self.threads = threads
        self.cpus = cpus
        self.baud = baud
        self.pace = pace
        self.faults = FaultConfig(corrupt=faults.corrupt, drop=faults.drop, flip=faults.flip,
                                  garbage=faults.garbage, seed=faults.seed)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.starts = 0

    def command(self) -> list[str]:
        """The command line of the device process."""
        cmd = [sys.executable, "-m", "ramanedge.cli", "device", "serve", "--port", self.port,
               "--model", str(self.model), "--store", str(self.store),
               "--threads", str(self.threads), "--baud", str(self.baud or 0),
               "--faults", self.faults.to_spec(), "--seed-offset", str(1 + 7919 * self.starts)]
        if self.cpus:
            cmd += ["--cpus", str(self.cpus)]
        if not self.pace:
            cmd.append("--no-pace")
        return cmd

    def start(self) -> int:
        """Start the process; returns its pid."""
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(self.threads)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.starts += 1
        self.pids.append(self.proc.pid)
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        """The running process's pid."""
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL the process (a power cut) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def percentiles(values: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ..., "mean", "max"}`` of ``values`` (empty -> {})."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {}
    out = {f"p{p}": float(np.percentile(v, p)) for p in ps}
    out["mean"] = float(v.mean())
    out["max"] = float(v.max())
    return out


def rss_slope(index: Sequence[float], rss: Sequence[float], warmup_fraction: float = 0.1
              ) -> dict[str, float]:
    """Least-squares RSS growth after warm-up: bytes per 1000 spectra (+ the fit's range)."""
    i = np.asarray(index, dtype=np.float64)
    r = np.asarray(rss, dtype=np.float64)
    if i.size < 3:
        return {"bytes_per_1000": float("nan"), "n_samples": int(i.size)}
    keep = i >= i.min() + warmup_fraction * (i.max() - i.min())
    if keep.sum() < 3:
        keep = np.ones_like(i, dtype=bool)
    slope, intercept = np.polyfit(i[keep], r[keep], 1)
    return {"bytes_per_1000": float(slope * 1000.0), "n_samples": int(keep.sum()),
            "first_bytes": float(r[keep][0]), "last_bytes": float(r[keep][-1]),
            "min_bytes": float(r[keep].min()), "max_bytes": float(r[keep].max())}


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------


def replay(items: Sequence[ReplayItem], config: ReplayConfig, *,
           progress: Callable[[str], None] | None = None,
           log_path: Path | None = None) -> dict[str, Any]:
    """Replay ``items`` through a device and return the report (see module docstring)."""
    import psutil

    if not items:
        raise DataError("nothing to replay: no spectra")
    say = progress or (lambda _m: None)
    n = config.limit if config.limit is not None else len(items)
    if n < 1:
        raise DataError(f"--limit must be >= 1, got {n}")
    faults = config.faults
    tmp = None
    store = config.store
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ramanedge-replay-store-")
        store = Path(tmp.name)
    dev: DeviceProcess | None = None
    if config.port is None:
        master, slave = open_pty_pair()
        port_obj: Any = master
        dev = DeviceProcess(slave, config.model, store, threads=config.threads,
                            cpus=config.cpus, baud=config.baud, faults=faults,
                            log_path=log_path, pace=config.pace)
    else:
        if faults.restart:
            raise LinkError("the restart fault needs a device started by the replay (no --port)")
        port_obj = open_port(config.port, baud=config.baud or 115200)
    link = Link(port_obj, baud=config.baud, faults=faults, seed_offset=0, pace=config.pace)
    restarts: list[dict[str, Any]] = []
    arm = {"kill": False}

    def on_sent(seq: int, attempt: int) -> None:
        if arm["kill"] and dev is not None:
            arm["kill"] = False
            old = dev.pid
            dev.kill()
            dev.start()
            restarts.append({"at_seq": seq, "killed_pid": old, "new_pid": dev.pid,
                             "time": time.time()})

    client = HostClient(link, HostConfig(), on_sent=on_sent)
    records: list[dict[str, Any]] = []
    answered: dict[int, str] = {}
    double = 0
    rss_i: list[int] = []
    rss_v: list[int] = []
    rss_pid: list[int] = []
    try:
        if dev is not None:
            dev.start()
        info0 = client.wait_ready(config.boot_timeout)
        say(f"device up: {info0.get('model')} pid {info0.get('pid')} cpus {info0.get('cpus')} "
            f"threads {info0.get('threads')}")
        model_labels = set()
        with contextlib.suppress(Exception):
            from ramanedge.manifest import read_manifest

            model_labels = set(read_manifest(config.model, verify_files=False).labels)
        t0 = time.perf_counter()
        bytes0 = (link.bytes_out, link.bytes_in)
        host0 = asdict(client.stats)
        for i in range(n):
            item = items[i % len(items)]
            if faults.restart and i > 0 and i % faults.restart == 0:
                arm["kill"] = True
            if dev is not None and not dev.alive():
                status = dev.proc.returncode if dev.proc is not None else None
                raise LinkError(f"the device process exited (status {status})"
                                + (f"; see {log_path}" if log_path else ""))
            try:
                result, ex = client.classify(item.y, item.x, top_k=config.top_k)
            except LinkError as e:
                records.append({"i": i, "id": item.ident, "label": item.label,
                                "error": str(e)})
                continue
            if i in answered:
                double += 1
            answered[i] = result.label
            records.append({
                "i": i, "id": item.ident, "label": item.label, "pred": result.label,
                "top": [[lab, round(p, 5)] for _, lab, p in result.top],
                "correct": result.label == item.label,
                "in_top_k": any(lab == item.label for _, lab, _ in result.top),
                "unknown": result.unknown, "latency_ms": ex.latency_s * 1e3,
                "wire_ms": ex.wire_s * 1e3, "compute_ms": result.compute_us / 1e3,
                "infer_ms": result.infer_us / 1e3, "attempts": ex.attempts,
                "bytes_out": ex.bytes_out, "bytes_in": ex.bytes_in, "send_ms": ex.send_s * 1e3,
                "model_tag": result.model_tag})
            if dev is not None and (i % config.rss_every == 0 or i == n - 1):
                with contextlib.suppress(psutil.Error):
                    rss_v.append(psutil.Process(dev.pid).memory_info().rss)
                    rss_i.append(i)
                    rss_pid.append(int(dev.pid or 0))
            if (i + 1) % max(1, n // 10) == 0:
                say(f"  {i + 1}/{n} spectra")
        elapsed = time.perf_counter() - t0
        run_bytes = (link.bytes_out - bytes0[0], link.bytes_in - bytes0[1])
        info1 = client.info()
    finally:
        if dev is not None:
            dev.stop()
        link.close()
        if tmp is not None:
            tmp.cleanup()
    host_run = {k: (v - host0[k] if isinstance(v, int) else v)
                for k, v in asdict(client.stats).items()}
    return _report(records, config, info0, info1, host_run, link, elapsed, run_bytes, double,
                   restarts, (rss_i, rss_v, rss_pid), model_labels, dev)


def _report(records: list[dict[str, Any]], config: ReplayConfig, info0: dict[str, Any],
            info1: dict[str, Any], host_run: dict[str, Any], link: Link, elapsed: float,
            run_bytes: tuple[int, int], double: int, restarts: list[dict[str, Any]],
            rss: tuple[list[int], list[int], list[int]], model_labels: set[str],
            dev: DeviceProcess | None) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    lat = [r["latency_ms"] for r in ok]
    wire = [r["wire_ms"] for r in ok]
    comp = [r["compute_ms"] for r in ok]
    overhead = [r["latency_ms"] - r["wire_ms"] - r["compute_ms"] for r in ok]
    clean = [r for r in ok if r["attempts"] == 1]
    known = [r for r in ok if r["label"] in model_labels] if model_labels else ok
    n_ok = len(ok)
    digest = hashlib.sha256("\n".join(
        f"{r['i']}:{r['pred']}:{r['top']}:{r['unknown']}" for r in ok).encode()).hexdigest()
    rss_i, rss_v, rss_pid = rss
    # RSS growth only within the last device process (a restart resets memory)
    last_pid = rss_pid[-1] if rss_pid else None
    sel = [j for j, p in enumerate(rss_pid) if p == last_pid]
    slope = rss_slope([rss_i[j] for j in sel], [rss_v[j] for j in sel], config.warmup_fraction)
    baud = config.baud
    total_bytes = run_bytes[0] + run_bytes[1]
    dev_link = info1.get("link", {})
    send_ms = sum(r["send_ms"] for r in ok)
    out_bytes = sum(r["bytes_out"] for r in ok)
    med_lat = float(np.median(lat)) if lat else float("nan")
    med_budget = float(np.median(np.add(wire, comp))) if lat else float("nan")
    report: dict[str, Any] = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v)
                      for k, v in asdict(config).items() if k != "faults"},
                   "faults": config.faults.to_spec()},
        "machine": machine_info(),
        "model": {k: info0.get(k) for k in ("model", "model_sha256", "labels_hash", "n_labels",
                                            "slot", "head")},
        "device": {"pids": dev.pids if dev else [info0.get("pid")],
                   "cpus": info1.get("cpus"), "threads": info1.get("threads"),
                   "peak_rss_bytes_reported": info1.get("peak_rss_bytes"),
                   "rss_bytes_reported_end": info1.get("rss_bytes"),
                   "peak_rss_bytes_sampled": max(rss_v) if rss_v else None,
                   "rss_slope": slope, "stats": info1.get("stats"),
                   "link": dev_link, "restarts": restarts},
        "counts": {"spectra": len(records), "answered": n_ok,
                   "answered_exactly_once": len(records) == n_ok and double == 0,
                   "double_answers": double, "failed": len(records) - n_ok,
                   "retried": n_ok - len(clean)},
        "accuracy": {
            "top1": float(np.mean([r["correct"] for r in ok])) if ok else float("nan"),
            "top_k": float(np.mean([r["in_top_k"] for r in ok])) if ok else float("nan"),
            "top1_known_labels": (float(np.mean([r["correct"] for r in known]))
                                  if known else float("nan")),
            "n_known_labels": len(known), "unknown_flagged": sum(r["unknown"] for r in ok),
            "answers_sha256": digest},
        "latency_ms": percentiles(lat),
        "wire_ms": percentiles(wire),
        "device_compute_ms": percentiles(comp),
        "device_infer_ms": percentiles([r["infer_ms"] for r in ok]),
        "overhead_ms": percentiles(overhead),
        "latency_clean_ms": percentiles([r["latency_ms"] for r in clean]),
        "target": {"median_latency_ms": med_lat, "median_wire_plus_compute_ms": med_budget,
                   "median_overhead_ms": float(np.median(overhead)) if overhead else None,
                   "ok": bool(lat) and float(np.median(overhead)) <= 5.0},
        "wire": {"baud": baud, "bits_per_byte": 10, "host_bytes_out": run_bytes[0],
                 "host_bytes_in": run_bytes[1],
                 "wire_s_from_bytes": total_bytes * 10.0 / baud if baud else 0.0,
                 "host_send_s_measured": send_ms / 1e3,
                 "host_send_s_from_bytes": out_bytes * 10.0 / baud if baud else 0.0,
                 "device_bytes_in_total": dev_link.get("bytes_in"),
                 "device_bytes_out_total": dev_link.get("bytes_out"),
                 "request_bytes_p50": float(np.median([r["bytes_out"] for r in ok])) if ok
                 else None,
                 "response_bytes_p50": float(np.median([r["bytes_in"] for r in ok])) if ok
                 else None},
        "throughput": {"elapsed_s": elapsed,
                       "spectra_per_s": n_ok / elapsed if elapsed > 0 else None,
                       "bytes_per_s": total_bytes / elapsed if elapsed > 0 else None},
        "host": host_run,
        "faults_injected": {"host_to_device": dict(link.faults.stats),
                            "device_to_host": info1.get("faults_injected")},
        "rss_samples": {"index": rss_i, "rss_bytes": rss_v, "pid": rss_pid},
    }
    report["_records"] = records
    return report


def write_report(report: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``replay.json``, ``answers.jsonl`` and ``latency.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = report.get("_records", [])
    body = {k: v for k, v in report.items() if k != "_records"}
    paths = {"json": out / "replay.json", "answers": out / "answers.jsonl",
             "png": out / "latency.png"}
    # strict JSON: a statistic of no samples is null, never a bare NaN
    paths["json"].write_text(jsonio.dumps(body, indent=2) + "\n")
    with open(paths["answers"], "w") as f:
        for r in records:
            f.write(jsonio.dumps(r) + "\n")
    plot_report(report, paths["png"])
    return paths


def plot_report(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Latency histogram (p50/p95/p99 marked, wire+compute budget) and device RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in report.get("_records", []) if "error" not in r]
    lat = np.array([r["latency_ms"] for r in recs]) if recs else np.zeros(0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    if lat.size:
        ax.hist(lat, bins=min(60, max(10, lat.size // 5)), color="#4477aa", alpha=0.85)
        for key, col in (("p50", "k"), ("p95", "#cc6677"), ("p99", "#aa3377")):
            v = report["latency_ms"][key]
            ax.axvline(v, color=col, ls="--", lw=1, label=f"{key} {v:.1f} ms")
        wc = report["target"]["median_wire_plus_compute_ms"]
        ax.axvline(wc, color="#228833", lw=1, label=f"median wire+compute {wc:.1f} ms")
    cfg = report["config"]
    ax.set_title(f"end-to-end latency, {len(recs)} spectra, baud {cfg.get('baud') or 'unpaced'}")
    ax.set_xlabel("ms")
    ax.set_ylabel("spectra")
    ax.legend(fontsize=8)
    ax = axes[1]
    rs = report.get("rss_samples", {})
    if rs.get("index"):
        idx, val, pid = (np.asarray(rs[k]) for k in ("index", "rss_bytes", "pid"))
        for j, p in enumerate(dict.fromkeys(pid.tolist())):  # one colour per device boot
            m = pid == p
            ax.plot(idx[m], val[m] / 2**20, ".", ms=3, label=f"pid {p}",
                    color=("#4477aa", "#ee6677", "#228833", "#ccbb44")[j % 4])
        slope = report["device"]["rss_slope"].get("bytes_per_1000", float("nan"))
        ax.set_title(f"device RSS (last boot: slope {slope / 1024:.1f} KiB / 1000 spectra)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend(fontsize=8)
    else:
        ax.set_title("device RSS (not sampled)")
    ax.set_xlabel("spectrum #")
    ax.set_ylabel("MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_labels(items: Sequence[ReplayItem], model_labels: Sequence[str]) -> dict[str, Any]:
    """How many items have a label the model knows (accuracy is over those)."""
    known = set(model_labels)
    k = sum(1 for it in items if it.label in known)
    return {"items": len(items), "known": k, "labels_hash": labels_hash(list(model_labels))}
