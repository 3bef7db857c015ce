"""Replay spectra to a device process over a pty pair and measure the link end to end.

:func:`replay` starts ``ramanedge device serve`` as a separate process
(:class:`~device_sim.launcher.DeviceProcess`) on the slave end of a pty pair (no hardware),
keeps the master end, and sends every spectrum (:mod:`device_sim.spectra`) as a CLASSIFY
request through a :class:`~device_sim.host.HostClient` (paced to the baud rate, with optional
line faults and device restarts). The report gives wire time (from the bytes actually sent
both ways), device compute time, end-to-end latency percentiles, throughput, accuracy, device
RSS (peak and growth) and the retry counters; :func:`~device_sim.report.write_report` writes
it as JSON plus a PNG.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.host import HostClient, HostConfig, session_first_seq
from device_sim.launcher import DeviceProcess
from device_sim.profiles import get_profile
from device_sim.spectra import ReplayItem
from device_sim.stats import percentiles, rss_slope
from device_sim.transport import FaultConfig, Link, open_port, open_pty_pair
from ramanedge.errors import DataError, LinkError
from ramanedge.machine import machine_info


@dataclass(frozen=True)
class ReplayConfig:
    """Replay settings (see ``ramanedge sim replay --help``).

    ``baud``: line rate both ways (``None`` = no pacing, full speed); ``cpus`` / ``threads``:
    ``pace``: pace both ends in software (off for a real UART with ``port``);
    the device's core pinning and interpreter threads; ``faults``: line faults (both
    directions) and device restarts; ``limit``: number of spectra (cycles through the
    items when larger); ``rss_every``: sample the device RSS every N spectra; ``port``:
    talk to an already running device on this port instead of starting one; ``profile``:
    start the device as that board class (:data:`device_sim.profiles.PROFILES`; its cores
    replace ``cpus``).
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
    profile: str | None = None


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
                            log_path=log_path, pace=config.pace,
                            profile=get_profile(config.profile) if config.profile else None)
    else:
        if faults.restart or config.profile:
            raise LinkError("the restart fault and --profile need a device started by the "
                            "replay (no --port)")
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

    # a device this replay did not start may have served other sessions: do not reuse
    # their numbering (docs/protocol.md section 2); its own device starts at seq 1
    client = HostClient(link, HostConfig(), on_sent=on_sent,
                        first_seq=1 if dev is not None else session_first_seq())
    records: list[dict[str, Any]] = []
    answered: dict[int, str] = {}
    double = 0
    rss_i: list[int] = []
    rss_v: list[int] = []
    rss_pid: list[int] = []
    try:
        if dev is not None:
            dev.start()
        try:
            info0 = client.wait_ready(config.boot_timeout,
                                      alive=dev.alive if dev is not None else None)
        except LinkError as e:
            if dev is None or dev.alive():
                raise
            status = dev.proc.returncode if dev.proc is not None else None
            mem = dev.profile.memory_mib if dev.profile is not None else None
            raise LinkError(f"{e} (exit status {status})"
                            + (f"; profile {dev.profile.name} limits its address space to "
                               f"{mem} MiB: too little for the runtime?" if mem else "")
                            + (f"; see {log_path}" if log_path else "")) from None
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
                   "link": dev_link, "restarts": restarts,
                   "profile": asdict(dev.profile) if dev and dev.profile else None,
                   "cpu_limit": dev.limits[-1] if dev and dev.limits else None},
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
