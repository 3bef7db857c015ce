"""Uplink times over the paced serial link: full, head-only and interrupted-then-resumed flashes.

A real ``ramanedge device serve`` process (the rover side, factory model ``--factory``) is
started on a pty pair; the ground's :class:`device_sim.host.HostClient` flashes artifacts to
it at each baud rate, paced 8N1 in software, and the wall time of each ``upload_model`` (BEGIN,
chunks, COMMIT with the device's verification and model load) is measured, with the bytes
put on the line both ways. Cases:

- ``full``: ``--model`` onto a device serving ``--factory`` (no file in common);
- ``head-only``: the same model with a new ``head.npz`` (what a ground-retrained head or
  new minerals send; built here from ``--model`` with its head perturbed, manifest rewritten),
  onto the device serving ``--model``: the model file is held, only head + manifest go;
- ``link cut``: the full flash cut when half the bytes are on the device (the host stops
  sending, as at the end of a relay pass), then the same flash again (it resumes);
- ``power cut``: the device process killed (SIGKILL) at half the bytes and restarted; the
  same ``upload_model`` call carries on (the device resumes from its snapshot).

    python -m benchmarks.uplink --factory A --model B --bauds 115200,921600 \\
        --head-only-bauds 9600,115200,921600 --out bench_out/uplink
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from ramanedge.errors import LinkError
from ramanedge.machine import machine_info
from ramanedge.manifest import HEAD_FILE, MANIFEST_NAME, read_manifest, write_manifest


def head_only_variant(model: Path, out: Path, *, seed: int = 0) -> Path:
    """``model`` with a new head (weights perturbed by 1 %, same shape, dtype and labels) and
    its manifest rewritten: an artifact that differs from ``model`` only in head + manifest."""
    from device_sim.uplink import artifact_files

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    src = read_manifest(model)
    for m in artifact_files(model):
        if m["name"] != MANIFEST_NAME:
            shutil.copyfile(model / m["name"], out / m["name"])
    with np.load(model / HEAD_FILE, allow_pickle=False) as z:
        head = {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    head["W"] = (head["W"] * (1 + 0.01 * rng.standard_normal(head["W"].shape))
                 ).astype(head["W"].dtype)  # stored as the exporter stored it
    np.savez(out / HEAD_FILE, **head)
    data = {k: v for k, v in src.data.items() if k != "manifest_sha256"}
    data["name"] = f"{src.data.get('name', 'model')}-head2"
    data["files"] = {name: {} for name in src.flight_files}
    data.pop("variants", None)
    write_manifest(out, data)
    return out


class Rig:
    """A device process on a pty slave and a host client on the master, paced at ``baud``."""

    def __init__(self, factory: Path, store: Path, baud: int, log_path: Path) -> None:
        from device_sim.host import HostClient, HostConfig
        from device_sim.launcher import DeviceProcess
        from device_sim.transport import FaultConfig, Link, open_pty_pair

        self.master, slave = open_pty_pair()
        self.dev = DeviceProcess(slave, factory, store, threads=1, cpus=None, baud=baud,
                                 faults=FaultConfig(), log_path=log_path)
        self.link = Link(self.master, baud=baud)
        self.client = HostClient(self.link, HostConfig())
        self.dev.start()
        self.client.wait_ready(120)

    def flash(self, model: Path, progress: Callable[[int, int], None] | None = None
              ) -> dict[str, Any]:
        """One ``upload_model``: its answer plus wall seconds and line bytes both ways."""
        b0 = (self.link.bytes_out, self.link.bytes_in)
        t0 = time.perf_counter()
        try:
            res = self.client.upload_model(model, progress=progress)
        except LinkError as e:
            res = {"error": str(e)}
        res["seconds"] = time.perf_counter() - t0
        res["wire_out"] = self.link.bytes_out - b0[0]
        res["wire_in"] = self.link.bytes_in - b0[1]
        return res

    def close(self) -> None:
        """Stop the device and close the port."""
        self.dev.stop()
        self.master.close()


def at_half(action: Callable[[], None]) -> Callable[[int, int], None]:
    """A progress callback that runs ``action`` once, when half the bytes are on the device."""
    done = [False]

    def progress(have: int, total: int) -> None:
        if not done[0] and have >= total // 2:
            done[0] = True
            action()

    return progress


def _row(case: str, baud: int, res: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keep = ("seconds", "sent_bytes", "file_bytes", "wire_out", "wire_in", "held", "resumed",
            "model", "error")
    return {"case": case, "baud": baud, **{k: res[k] for k in keep if k in res}, **extra}


def measure(factory: Path, model: Path, head_only: Path, *, bauds: list[int],
            head_only_bauds: list[int], cut_baud: int | None, work: Path,
            log: Callable[[str], None] = click.echo) -> list[dict[str, Any]]:
    """Every case at every baud rate asked for; one row each."""
    rows: list[dict[str, Any]] = []

    def rig(baud: int, name: str) -> Rig:
        store = work / f"store-{name}-{baud}"
        shutil.rmtree(store, ignore_errors=True)
        return Rig(factory, store, baud, work / f"device-{name}-{baud}.log")

    for baud in sorted(set(bauds) | set(head_only_bauds)):
        if baud in bauds:  # full flash first; the head-only update then lands on its model
            r = rig(baud, "plain")
        else:  # head-only alone: a device that already serves --model
            r = Rig(model, work / f"store-ho-{baud}", baud, work / f"device-ho-{baud}.log")
        try:
            if baud in bauds:
                rows.append(_row("full", baud, r.flash(model)))
            if baud in head_only_bauds:
                rows.append(_row("head-only", baud, r.flash(head_only)))
        finally:
            r.close()
        log(f"  {baud} baud: " + "; ".join(
            f"{x['case']} {x['seconds']:.1f} s" for x in rows if x["baud"] == baud))
    if cut_baud:
        full = next((x for x in rows if x["case"] == "full" and x["baud"] == cut_baud), None)
        r = rig(cut_baud, "cut")
        try:
            def cut_link() -> None:
                raise LinkError("link cut (end of the pass)")

            first = r.flash(model, progress=at_half(cut_link))
            second = r.flash(model)
            total_s = first["seconds"] + second["seconds"]
            rows.append(_row("link cut at 50 %, then resumed", cut_baud, second,
                             first_seconds=first["seconds"], total_seconds=total_s,
                             first_error=first.get("error", ""),
                             ratio=total_s / full["seconds"] if full else None))
        finally:
            r.close()
        r = rig(cut_baud, "power")
        try:
            def power_cut() -> None:
                r.dev.kill()  # SIGKILL: the device loses everything not on disk
                r.dev.start()

            res = r.flash(model, progress=at_half(power_cut))
            rows.append(_row("device power cut at 50 %, same call resumes", cut_baud, res,
                             total_seconds=res["seconds"],
                             ratio=res["seconds"] / full["seconds"] if full else None))
        finally:
            r.close()
        log("  cuts: " + "; ".join(f"{x['case']} {x.get('total_seconds', 0):.1f} s"
                                   for x in rows if "cut" in x["case"]))
    return rows


def random_cuts(factory: Path, model: Path, work: Path, *, n: int = 100, seed: int = 0
                ) -> dict[str, Any]:
    """``n`` uploads of ``model`` into a store serving ``factory``, each cut at a random byte
    (every other one across a store restart, as after a power cut), then resumed with the
    gaps the store reports: how many ended identical to the source, and whether anything
    partial was ever active."""
    from device_sim.uplink import ModelStore, artifact_files

    rng = np.random.default_rng(seed)
    files = artifact_files(model)
    data = [(model / m["name"]).read_bytes() for m in files]
    total = sum(map(len, data))
    base = read_manifest(factory).data["manifest_sha256"]
    identical = partial = 0
    t0 = time.perf_counter()
    for k in range(n):
        root = work / f"cuts-{k}"
        store = ModelStore.open(root, factory=factory)
        cut, done = int(rng.integers(0, total + 1)), 0
        up = store.begin_upload(files)
        for fi, lo, hi in up.missing():
            for off in range(lo, hi, 4096):
                m = min(4096, hi - off, cut - done)
                if m <= 0:
                    break
                up.write_chunk(fi, off, data[fi][off:off + m])
                done += m
        if k % 2:
            store = ModelStore.open(root)  # restart: only the snapshot survives
        cur = read_manifest(store.current_dir()).data["manifest_sha256"]
        partial += cur != base  # before the commit only the old model may serve
        up = store.begin_upload(files)
        for fi, lo, hi in up.missing():
            up.write_chunk(fi, lo, data[fi][lo:hi])
        store.commit_upload(up.upload_id)
        cur_dir = store.current_dir()
        identical += all((cur_dir / m["name"]).read_bytes() == data[i]
                         for i, m in enumerate(files))
        shutil.rmtree(root, ignore_errors=True)
    return {"uploads": n, "identical": identical, "partial_activations": partial,
            "seconds": time.perf_counter() - t0}


def device_retrain(model: Path, data_root: Path, work: Path, *, baud: int = 921600,
                   minerals: int = 5, per: int = 5) -> dict[str, Any]:
    """``minerals`` x ``per`` spectra taught to a real device process over the paced link
    (HEAD_ADD, grid payload) and one HEAD_RETRAIN: its wall time at the host and the
    device's own fit time."""
    from ramanedge.dataset import build_dataset
    from ramanedge.paths import default_cache_dir

    ds = build_dataset(data_root, "rruff-raw", min_spectra=8, cache_dir=default_cache_dir())
    rng = np.random.default_rng(0)
    r = Rig(model, work / "store-retrain", baud, work / "device-retrain.log")
    try:
        for k, i in enumerate(rng.choice(len(ds.y), minerals * per, replace=False)):
            r.client.head_add(f"taught-{k % minerals}", ds.X[i])
        t0 = time.perf_counter()
        res = r.client.head_retrain()
        wall = time.perf_counter() - t0
    finally:
        r.close()
    return {"minerals": minerals, "per_mineral": per, "baud": baud, "wall_seconds": wall,
            "fit_seconds": res.get("fit_seconds"), "n_exemplars": res.get("n_exemplars"),
            "n_samples": res.get("n_samples")}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows."""
    out = ["| case | baud | seconds | file bytes | sent (payload) | on the wire out / in | "
           "held on the device | vs uninterrupted |", "|---|---|---|---|---|---|---|---|"]
    for x in rows:
        secs = x.get("total_seconds", x["seconds"])
        ratio = f"{x['ratio']:.2f}x" if x.get("ratio") else "-"
        out.append(f"| {x['case']} | {x['baud']:,} | {secs:.1f} | {x.get('file_bytes', 0):,} | "
                   f"{x.get('sent_bytes', 0):,} | {x['wire_out']:,} / {x['wire_in']:,} | "
                   f"{', '.join(x.get('held') or []) or '-'} | {ratio} |")
    return "\n".join(out)


def section(res: dict[str, Any]) -> str:
    """The "Uplink" section of docs/benchmarks.md from this bench's JSON."""
    mach = res.get("machine", {})
    L = ["## Uplink: full, head-only and interrupted flashes (`benchmarks/uplink.py`)", "",
         f"`{res.get('command', 'python -m benchmarks.uplink')}` on "
         f"{str(mach.get('date', ''))[:16]} UTC, {mach.get('cpu')} {mach.get('cores')}-core. "
         "A real `ramanedge device serve` process on a pty pair, both ends paced 8N1 in "
         "software; seconds = wall time of `HostClient.upload_model` (INFO, MODEL_BEGIN, the "
         "missing chunks acknowledged one by one, MODEL_COMMIT with the device's checks and "
         f"its model load). Device first serves `{res.get('factory')}`; flashed: "
         f"`{res.get('model')}`; head-only = the same model with a new float16 head (model "
         "and exemplars held on the device). Files travel zlib-compressed where that saves "
         ">= 5 %.", "", table(res["rows"]), ""]
    cuts = res.get("random_cuts")
    if cuts:
        L += [f"Random cuts: {cuts['uploads']} uploads of the same artifact cut at a random "
              "byte (every other one across a store restart), then resumed from the gaps the "
              f"store reported: {cuts['identical']} ended identical to the source, "
              f"{cuts['partial_activations']} partial activations "
              f"({cuts['seconds']:.1f} s, store level).", ""]
    rt = res.get("device_retrain")
    if rt:
        L += [f"Head retrain on the device: {rt['minerals']} minerals x {rt['per_mineral']} "
              f"spectra sent with HEAD_ADD at {rt['baud']:,} baud, then HEAD_RETRAIN: "
              f"{rt['wall_seconds']:.2f} s at the host (device fit {rt['fit_seconds']} s; "
              f"{rt['n_exemplars']} exemplars + {rt['n_samples']} samples).", ""]
    return "\n".join(L)


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


@click.command()
@click.option("--factory", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Artifact the device serves first.")
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Artifact to flash (no file in common with --factory).")
@click.option("--bauds", default="115200,921600", show_default=True,
              help="Baud rates of the full flash.")
@click.option("--head-only-bauds", default="9600,115200,921600", show_default=True)
@click.option("--cut-baud", type=int, default=115200, show_default=True,
              help="Baud rate of the cut-and-resume runs (0 = none).")
@click.option("--cuts", type=click.IntRange(0, 10**5), default=100, show_default=True,
              help="Uploads cut at a random byte and resumed (0 = skip).")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="RRUFF data root: also time a 5 x 5 head retrain on the device.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench_out/uplink"), show_default=True)
def main(factory: Path, model: Path, bauds: str, head_only_bauds: str, cut_baud: int,
         cuts: int, data: Path | None, out: Path) -> None:
    """Flash times (full, head-only, cut and resumed) over the paced serial link."""
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"machine": machine_info(), "factory": str(factory),
                           "model": str(model),
                           "command": "python -m benchmarks.uplink " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory(prefix="ramanedge-uplink-") as tmp:
        head_only = head_only_variant(model, Path(tmp) / "head-only")
        res["rows"] = measure(factory, model, head_only, bauds=_ints(bauds),
                              head_only_bauds=_ints(head_only_bauds),
                              cut_baud=cut_baud or None, work=Path(tmp))
        if cuts:
            res["random_cuts"] = random_cuts(factory, model, Path(tmp), n=cuts)
        if data is not None:
            res["device_retrain"] = device_retrain(model, data, Path(tmp))
    (out / "uplink.json").write_text(json.dumps(res, indent=1) + "\n")
    from benchmarks.report import rerender

    if rerender(out):  # --out docs: the section lands in docs/benchmarks.md
        click.echo(f"re-rendered {out / 'benchmarks.md'}", err=True)
    click.echo(table(res["rows"]))
    for key in ("random_cuts", "device_retrain"):
        if key in res:
            click.echo(f"{key}: {json.dumps(res[key])}")


if __name__ == "__main__":
    main()
