"""``ramanedge device ...`` (the rover side) and ``ramanedge sim ...`` (the ground side).

Every command turns bad input into a :class:`~ramanedge.errors.RamanEdgeError`, which the
top-level CLI prints as one line (exit status 2).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from device_sim.transport import FaultConfig
from edge_runtime.interpreter import MAX_THREADS
from ramanedge.cli_options import coverage_options, coverage_policy
from ramanedge.errors import DataError, LinkError

BAUD_HELP = "line rate in baud, 10 bits per byte (8N1); 0 = no pacing (full speed)"
PACE_HELP = ("pace writes to --baud in software (a pty never throttles); use --no-pace on a "
             "real UART, which paces in hardware")


def _baud(value: int) -> int | None:
    if value < 0:
        raise LinkError(f"--baud must be >= 0, got {value}")
    return value or None


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


# --------------------------------------------------------------------------------------------
# device (rover side)
# --------------------------------------------------------------------------------------------


@click.group()
def device() -> None:
    """The rover computer: serve the edge runtime behind a serial port."""


@device.command("serve")
@click.option("--port", required=True,
              help="serial port: /dev/ttyUSB0, a pty path, any pyserial URL (loop://, "
                   "spy://...), or 'pty' (= pty://) to create a pty pair and print its path")
@click.option("--model", "model", type=click.Path(path_type=Path), default=None,
              help="artifact folder (factory model; installed when the store has none)")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="model store folder (slots, uploads, rollback); default: a temporary one")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True,
              help="interpreter threads")
@click.option("--cpus", type=click.IntRange(1, 1024), default=None,
              help="pin the device process to this many cores (sched_setaffinity)")
@click.option("--baud", type=int, default=0, show_default=True, help=BAUD_HELP)
@click.option("--faults", default="", help="inject faults into the device's own frames, "
              "e.g. corrupt=0.01,garbage=0.005,seed=1")
@click.option("--seed-offset", type=int, default=1, show_default=True,
              help="offset of the fault RNG seed (replay changes it per restart)")
@click.option("--pace/--no-pace", default=True, show_default=True, help=PACE_HELP)
@click.option("--edgetpu", is_flag=True, help="run the model on a Coral Edge TPU")
@coverage_options
def serve(port: str, model: Path | None, store: Path | None, threads: int, cpus: int | None,
          baud: int, faults: str, seed_offset: int, pace: bool, edgetpu: bool,
          coverage_mode: str, min_coverage: float) -> None:
    """Answer framed requests (docs/protocol.md) on PORT until SIGTERM or the port closes."""
    from device_sim.device import DeviceConfig, run_device
    from device_sim.transport import PTY_URL

    if model is None and store is None:
        raise LinkError("give --model DIR (an artifact folder) and/or --store DIR")
    cfg = DeviceConfig(threads=threads, cpus=cpus, baud=_baud(baud), pace=pace,
                       faults=FaultConfig.parse(faults), edgetpu=edgetpu,
                       coverage=coverage_policy(coverage_mode, min_coverage))

    def announce(msg: str) -> None:
        click.echo(msg, err=True)
        sys.stderr.flush()

    if model is not None and store is not None and (store / "ACTIVE.json").is_file():
        announce(f"device: {store} already holds a model; --model {model} is the factory "
                 "image, installed only if none of the store's models verifies (replace the "
                 "current one with 'ramanedge sim flash')")

    stats = run_device(PTY_URL if port == "pty" else port, model, store=store, config=cfg,
                       announce=announce, seed_offset=seed_offset)
    click.echo(f"device: stopped; {stats['requests']} requests, "
               f"{stats['classify_computed']} classified, {stats['cache_replays']} replayed "
               f"from cache, {stats['errors_sent']} errors sent", err=True)


@device.command("status")
@click.option("--store", type=click.Path(path_type=Path), required=True)
def device_status(store: Path) -> None:
    """Show the store's current and previous model (offline)."""
    from device_sim.uplink import ModelStore

    if not (store / "ACTIVE.json").is_file():
        raise LinkError(f"{store} is not a device model store (no ACTIVE.json)")
    status = ModelStore(store).status()
    _echo_json(status)
    for p in status["problems"]:  # a damaged store is not a status to exit 0 on
        click.echo(f"warning: {p}", err=True)
    if status["problems"]:
        sys.exit(1)


@device.command("rollback")
@click.option("--store", type=click.Path(path_type=Path), required=True)
def device_rollback(store: Path) -> None:
    """Make the previous model current again (offline, on the store folder)."""
    from device_sim.uplink import ModelStore

    if not (store / "ACTIVE.json").is_file():
        raise LinkError(f"{store} is not a device model store (no ACTIVE.json)")
    ms = ModelStore.open(store, lock=True)
    slot = ms.rollback()
    click.echo(f"rolled back: current model is now {slot}")


# --------------------------------------------------------------------------------------------
# sim (ground side)
# --------------------------------------------------------------------------------------------


@click.group()
def sim() -> None:
    """The ground side: replay spectra over a simulated serial link, flash, roll back."""


@contextmanager
def _connected(port: str, baud: int, pace: bool = True) -> Iterator[Any]:
    """A :class:`~device_sim.host.HostClient` on ``port``; the link is closed when the block
    ends (normally or by an error)."""
    from device_sim.host import HostClient, HostConfig, session_first_seq
    from device_sim.transport import Link, open_port

    b = _baud(baud)
    link = Link(open_port(port, baud=b or 115200), baud=b, pace=pace)
    try:
        # the device may have served other sessions: never reuse their numbering
        yield HostClient(link, HostConfig(deadline=30.0), first_seq=session_first_seq())
    finally:
        link.close()


port_option = click.option("--port", required=True,
                           help="the device's serial port (path or pyserial URL)")
_baud_opt = click.option("--baud", type=int, default=115200, show_default=True, help=BAUD_HELP)
_pace_opt = click.option("--pace/--no-pace", default=True, show_default=True, help=PACE_HELP)


def baud_option(f):
    """``--baud`` and ``--pace/--no-pace``."""
    return _baud_opt(_pace_opt(f))


@sim.command("ping")
@port_option
@baud_option
@click.option("--count", type=click.IntRange(1, 10000), default=3, show_default=True)
def ping(port: str, baud: int, pace: bool, count: int) -> None:
    """PING the device and print round-trip times."""
    with _connected(port, baud, pace) as client:
        for _ in range(count):
            click.echo(f"pong in {client.ping() * 1e3:.2f} ms")


@sim.command("info")
@port_option
@baud_option
def info(port: str, baud: int, pace: bool) -> None:
    """Print the device's INFO (model, labels hash, memory, CPU limits, counters)."""
    with _connected(port, baud, pace) as client:
        _echo_json(client.info())


@sim.command("flash")
@port_option
@baud_option
@click.option("--model", "model", type=click.Path(path_type=Path), required=True,
              help="artifact folder to upload")
@click.option("--chunk", type=click.IntRange(64, 16000), default=4096, show_default=True,
              help="bytes per MODEL_CHUNK")
def flash(port: str, baud: int, pace: bool, model: Path, chunk: int) -> None:
    """Upload a new model artifact; the device verifies and swaps it in atomically.

    Only what the device lacks is sent (files it holds are copied on the device; an
    interrupted upload resumes where it stopped: run the same command again); files travel
    zlib-compressed where that pays. Progress with an ETA goes to stderr."""
    import time

    with _connected(port, baud, pace) as client:
        last, start = [-1], [0.0, 0]

        def progress(have: int, total: int) -> None:
            if not start[0]:
                start[:] = [time.monotonic(), have]
            pct = int(100 * have / max(total, 1))
            if pct // 10 != last[0]:
                last[0] = pct // 10
                rate = (have - start[1]) / max(time.monotonic() - start[0], 1e-6)
                eta = f", ETA {(total - have) / rate:.0f} s" if rate > 0 and have < total else ""
                click.echo(f"  {have}/{total} bytes on the device ({pct}%){eta}", err=True)

        _echo_json(client.upload_model(model, chunk_size=chunk, progress=progress))


@sim.command("rollback")
@port_option
@baud_option
def rollback(port: str, baud: int, pace: bool) -> None:
    """Make the device's previous model current again (one ROLLBACK message)."""
    with _connected(port, baud, pace) as client:
        _echo_json(client.rollback())


def _each_file(port: str, baud: int, pace: bool, files: tuple[Path, ...], verb: str,
               send: Any) -> None:
    """Read each spectrum file, crop it to the model window and ``send(client, path, x, y)``
    it; print one JSON line per file (the answer record, or the error record of a bad file
    or a refusal: the batch goes on) and a summary line on stderr. Exit status as
    ``ramanedge classify``: 0 when at least one file succeeded, 1 when every file failed;
    a broken link stops the batch (exit 2)."""
    from device_sim.host import DeviceError
    from device_sim.spectra import crop_to_window
    from edge_runtime.classify import error_record
    from ramanedge.errors import RamanEdgeError
    from ramanedge.io import read_spectrum

    failed = 0
    with _connected(port, baud, pace) as client:
        for f in files:
            try:
                s = read_spectrum(f)
                x, y = crop_to_window(s.x, s.y)
                out = send(client, str(f), x, y)
            except (RamanEdgeError, OSError) as e:
                if isinstance(e, LinkError) and not isinstance(e, DeviceError):
                    raise
                failed += 1
                click.echo(json.dumps(error_record(str(f), str(e)), ensure_ascii=False))
                continue
            click.echo(json.dumps(out, ensure_ascii=False))
    ok = len(files) - failed
    click.echo(f"{verb} {ok} of {len(files)} files" + (f"; {failed} failed" if failed else ""),
               err=True)
    if ok == 0:
        sys.exit(1)


@sim.command("classify")
@port_option
@baud_option
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def classify(port: str, baud: int, pace: bool, top_k: int, files: tuple[Path, ...]) -> None:
    """Send raw spectrum files to the device (cropped to the model window); one JSON record
    per file, the same schema as 'ramanedge classify --json' (``unknown_score`` is null: the
    RESULT frame carries only the flag; ``latency_ms`` is request sent -> answer)."""
    from edge_runtime.classify import answer_record

    head: list[str | None] = []

    def send(client: Any, path: str, x: Any, y: Any) -> dict[str, Any]:
        if not head:
            head.append(client.info().get("head"))
        r, ex = client.classify(y, x, top_k=top_k, want_set=True)
        return answer_record(path, top=[(lab, p) for _, lab, p in r.top],
                             set_=None if r.set is None else [lab for _, lab in r.set],
                             unknown=r.unknown,
                             unknown_score=None, coverage=r.coverage,
                             compute_ms=r.compute_us / 1e3, head=head[0],
                             latency_ms=ex.latency_s * 1e3)

    _each_file(port, baud, pace, files, "classified", send)


@sim.command("head-add")
@port_option
@baud_option
@click.option("--label", required=True, help="mineral name of the examples")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def head_add(port: str, baud: int, pace: bool, label: str, files: tuple[Path, ...]) -> None:
    """Send labelled spectra for onboard learning (one HEAD_ADD each); a bad file is one
    JSON error record and the batch goes on (exit 1 only when every file failed)."""
    _each_file(port, baud, pace, files, "stored",
               lambda client, path, x, y: {"path": path, **client.head_add(label, y, x)})


@sim.command("head-retrain")
@port_option
@baud_option
def head_retrain(port: str, baud: int, pace: bool) -> None:
    """Retrain the device's softmax head on the examples sent (HEAD_RETRAIN)."""
    with _connected(port, baud, pace) as client:
        _echo_json(client.head_retrain())


@sim.command("replay")
@click.option("--model", "model", type=click.Path(path_type=Path), required=True,
              help="artifact folder the device serves")
@click.option("--data", "data", type=click.Path(path_type=Path), default=None,
              help="RRUFF data root (default: $RAMANEDGE_DATA or ../shared/data/rruff)")
@click.option("--dataset", default="rruff-raw", show_default=True)
@click.option("--min-spectra", type=int, default=8, show_default=True,
              help="data set filter (must match the model's training)")
@click.option("--split-file", type=click.Path(path_type=Path), default=None,
              help="split CSV (e.g. runs/NAME/split.csv); default: grouped split, seed 0")
@click.option("--part", type=click.Choice(["train", "val", "test"]), default="test",
              show_default=True)
@click.option("--payload", type=click.Choice(["raw", "grid"]), default="raw", show_default=True,
              help="raw: the raw spectrum on its own axis (device preprocesses); grid: the "
                   "preprocessed 1392-point spectrum")
@baud_option
@click.option("--limit", type=click.IntRange(1, 10**7), default=None,
              help="number of spectra (cycles through the split when larger)")
@click.option("--cpus", type=click.IntRange(0, 1024), default=1, show_default=True,
              help="pin the device to this many cores; 0 = no pinning")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True)
@click.option("--profile", default=None, metavar="NAME",
              help="run the device as a board class: host, pi4, zero2 (one core, a share of "
                   "it and a memory limit; device_sim.profiles)")
@click.option("--faults", default="", help="e.g. corrupt=0.01,garbage=0.005,restart=100,seed=1")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--rss-every", type=click.IntRange(1, 10**6), default=10, show_default=True)
@click.option("--port", default=None, help="use an already running device on this port")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="write replay.json, answers.jsonl, latency.png and device.log here")
def replay_cmd(model: Path, data: Path | None, dataset: str, min_spectra: int,
               split_file: Path | None, part: str, payload: str, baud: int, limit: int | None,
               pace: bool, cpus: int, threads: int, profile: str | None, faults: str,
               top_k: int, rss_every: int, port: str | None, out: Path | None) -> None:
    """Replay RRUFF spectra to a device process on a pty pair and measure the link."""
    from device_sim.profiles import get_profile
    from device_sim.replay import ReplayConfig, replay
    from device_sim.report import write_report
    from device_sim.spectra import load_items
    from ramanedge.manifest import read_manifest
    from ramanedge.paths import default_data_root

    manifest = read_manifest(model)  # fail fast on a bad artifact
    hw = get_profile(profile) if profile else None
    root = data if data is not None else default_data_root()
    if not root.exists():
        raise DataError(f"data root {root} does not exist (give --data DIR)")

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    if part in manifest.library_parts:
        say(f"note: the artifact's spectral library holds the {part} spectra, so they are "
            f"matched against themselves: their top-1 is not a held-out figure")
    items = load_items(root, dataset=dataset, split_file=split_file, part=part,
                       payload=payload, min_spectra=min_spectra, progress=say)
    cfg = ReplayConfig(model=model, baud=_baud(baud), pace=pace, limit=limit,
                       cpus=cpus or None,
                       threads=threads, faults=FaultConfig.parse(faults), top_k=top_k,
                       rss_every=rss_every, port=port, profile=hw.name if hw else None)
    say(f"replaying {limit or len(items)} of {len(items)} {part} spectra ({payload}) at "
        f"{cfg.baud or 'unpaced'} baud, faults: {cfg.faults.to_spec()}"
        + (f", profile {hw.name}: {hw.boards}" if hw else ""))
    log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log = out / "device.log"
    report = replay(items, cfg, progress=say, log_path=log)
    report["config"].update({"data": str(root), "dataset": dataset, "split_file":
                             str(split_file) if split_file else None, "part": part,
                             "payload": payload, "min_spectra": min_spectra,
                             "command": "ramanedge " + " ".join(sys.argv[1:])})
    if out is not None:
        paths = write_report(report, out)
        say(f"wrote {paths['json']}, {paths['png']}")
    summary = {k: report[k] for k in ("counts", "accuracy", "latency_ms", "wire_ms",
                                      "device_compute_ms", "overhead_ms", "target",
                                      "throughput")}
    summary["device"] = {k: report["device"][k] for k in
                         ("cpus", "threads", "peak_rss_bytes_reported", "rss_slope", "profile",
                          "cpu_limit")}
    summary["host"] = report["host"]
    _echo_json(summary)
