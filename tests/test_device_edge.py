"""The device with the real edge runtime (``tiny_artifact``): answers equal local
classification, uplink and rollback of real artifacts, onboard learning, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from device_sim.backend import edge_loader
from device_sim.device import Device, open_store
from device_sim.host import DeviceError, HostClient, HostConfig
from device_sim.transport import Link, open_port
from device_sim.uplink import ModelStore
from ramanedge.manifest import read_manifest, write_manifest
from tests.conftest import device_on_pty

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def edge_device(store_root: Path, factory: Path, *, baud: int | None = None
                ) -> Iterator[tuple[Device, HostClient]]:
    """The real edge runtime (1 thread) serving a store opened with ``factory``."""
    loader = edge_loader(1)
    store = open_store(store_root, loader, factory=factory)
    with device_on_pty(store, loader, baud=baud,
                       host_config=HostConfig(timeout=0.5, deadline=30)) as pair:
        yield pair


def _raw_version(grid_y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid spectrum as a spectrometer would send it: its own irregular axis, counts."""
    rng = np.random.default_rng(seed)
    x = np.sort(np.concatenate([[150.0, 1700.0], rng.uniform(150, 1700, 1200)]))
    g = 200.0 + np.arange(1392)
    y = np.interp(x, g, grid_y) * 4000.0 + 120.0
    return x, y


def _last_line_of_fresh_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet); its last stdout line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_device_modules_never_import_tensorflow(tiny_artifact):
    code = (
        "import importlib, pkgutil, sys\n"
        "import device_sim, device_sim.backend\n"
        "mods = [m.name for m in pkgutil.iter_modules(device_sim.__path__)]\n"
        "assert {'protocol', 'transport', 'uplink', 'host', 'replay', 'cli'} <= set(mods)\n"
        "for name in mods:  # every module of the package\n"
        "    importlib.import_module('device_sim.' + name)\n"
        f"b = device_sim.backend.EdgeBackend({str(tiny_artifact)!r})\n"
        "import numpy as np\n"
        "b.classify(200 + np.arange(1392.0), 1 + np.arange(1392.0) % 7, 3)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'trainer', 'quantize', 'matplotlib', 'psutil')]\n"
        "print(bad)\n")
    assert _last_line_of_fresh_python(code) == "[]"


def test_answers_equal_local_classification(tiny_artifact, synthetic_data, tmp_path):
    from edge_runtime.classify import Classifier

    local = Classifier.from_dir(tiny_artifact, use_head_store=False)
    X, y = synthetic_data.part("test")
    with edge_device(tmp_path / "store", tiny_artifact, baud=None) as (dev, host):
        info = host.wait_ready(10)
        assert info["model"] == "tiny" and info["n_labels"] == len(synthetic_data.labels)
        n_ok = 0
        for i in range(0, len(X), 4):
            want = local.classify_grid(X[i])
            r_grid, _ = host.classify(X[i])
            x_raw, y_raw = _raw_version(X[i], i)
            r_raw, _ = host.classify(y_raw, x_raw)
            assert r_grid.label == want.label
            assert r_raw.label == want.label
            assert abs(r_grid.top[0][2] - want.prob) < 0.02
            assert r_grid.infer_us > 0 and r_grid.compute_us >= r_grid.infer_us
            n_ok += want.label == synthetic_data.labels[y[i]]
        assert n_ok >= 0.9 * len(range(0, len(X), 4))
        assert dev.stats["classify_computed"] == 2 * len(range(0, len(X), 4))


def _renamed_copy(src: Path, dst: Path, name: str) -> Path:
    shutil.copytree(src, dst)
    m = read_manifest(dst).data
    m = {k: v for k, v in m.items() if k != "manifest_sha256"}
    m["name"] = name
    m["files"] = {k: {} for k in m["files"]}
    write_manifest(dst, m)
    return dst


def test_real_artifact_uplink_rejection_and_rollback(tiny_artifact, synthetic_data, tmp_path):
    v2 = _renamed_copy(tiny_artifact, tmp_path / "v2", "tiny-v2")
    broken = _renamed_copy(tiny_artifact, tmp_path / "broken", "tiny-broken")
    (broken / "model.tflite").write_bytes(b"TFL3 but not really" * 50)
    m = read_manifest(broken, verify_files=False).data
    write_manifest(broken, {**{k: v for k, v in m.items() if k != "manifest_sha256"},
                            "files": {k: {} for k in m["files"]}})
    X, _ = synthetic_data.part("test")
    with edge_device(tmp_path / "store", tiny_artifact, baud=1_000_000) as (dev, host):
        first = host.wait_ready(10)
        before = host.classify(X[0])[0]
        with pytest.raises(DeviceError, match="UPLOAD"):
            host.upload_model(broken)  # right checksums, not a TFLite model: cannot load
        assert host.classify(X[0])[0].model_tag == before.model_tag
        res = host.upload_model(v2, chunk_size=2048)
        assert res["model"] == "tiny-v2"
        after = host.classify(X[0])[0]
        assert after.model_tag == res["model_tag"] != before.model_tag
        assert after.label == before.label  # same weights
        rb = host.rollback()
        assert rb["model"] == "tiny" and rb["slot"] == first["slot"]
    # the store keeps the rolled-back state across a reboot
    assert read_manifest(ModelStore.open(tmp_path / "store").current_dir()).name == "tiny"


def test_onboard_learning_over_the_link(tiny_artifact, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    g = np.arange(1392.0)
    rng = np.random.default_rng(0)

    def newite(seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        s = sum(h * np.exp(-0.5 * ((g - p - r.uniform(-3, 3)) / 5) ** 2)
                for p, h in ((150, 1.0), (600, 0.8), (1050, 0.9)))
        return s + 0.05 + r.normal(0, 0.01, g.size)

    with edge_device(tmp_path / "store", art) as (dev, host):
        host.wait_ready(10)
        for i in range(6):
            out = host.head_add("newite", newite(i))
        assert out["n_label"] == 6 and out["created"]
        again = host.head_add("newite", newite(0))  # the same spectrum is not stored twice
        assert not again["created"] and again["n_label"] == 6
        res = host.head_retrain()
        assert res["head"] == "v0001" and res["new_labels"] == ["newite"]
        hits = sum(host.classify(newite(100 + i))[0].label == "newite" for i in range(5))
        assert hits >= 4
        assert host.info()["head"] == "v0001"
    del rng


def _start_serve(args: list[str], seen: list[str] | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """Start ``ramanedge device serve ARGS``; return it and its port once it serves (the
    stderr lines before that are appended to ``seen``)."""
    proc = subprocess.Popen([sys.executable, "-m", "ramanedge.cli", "device", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stderr.readline()
    t_end = time.time() + 60
    while "serving" not in line and time.time() < t_end and proc.poll() is None:
        if seen is not None:
            seen.append(line)
        line = proc.stderr.readline()
    assert "serving" in line, line
    return proc, line.split(" on ")[1].split(" ")[0]


def test_cli_serve_ping_info_flash_rollback(tiny_artifact, tmp_path):
    from ramanedge.cli import main

    v2 = _renamed_copy(tiny_artifact, tmp_path / "v2", "tiny-v2")
    proc, path = _start_serve(["--port", "pty", "--model", str(tiny_artifact),
                               "--store", str(tmp_path / "store"), "--cpus", "1"])
    try:
        def run(*argv: str) -> str:
            import io
            from contextlib import redirect_stdout

            buf = io.StringIO()
            with redirect_stdout(buf):
                main(list(argv))
            return buf.getvalue()

        assert "pong in" in run("sim", "ping", "--port", path, "--count", "2")
        x = np.arange(100.0, 1700.0, 1.7)
        np.savetxt(tmp_path / "s.txt", np.c_[x, 100 + 900 * np.exp(-((x - 465) / 6) ** 2)],
                   delimiter=",")
        rec = json.loads(run("sim", "classify", "--port", path, "--baud", "0",
                             str(tmp_path / "s.txt")))
        assert len(rec["top"]) == 3 and rec["compute_ms"] > 0
        info = json.loads(run("sim", "info", "--port", path))
        assert info["model"] == "tiny" and len(info["cpus"]) == 1 and info["threads"] == 1
        # a bad file is one error line and the batch goes on (issue 16.6)
        bad = tmp_path / "bad.npy"
        bad.write_bytes(b"\x93NUMPY\x01\x00" + b"garbage")
        out = subprocess.run([sys.executable, "-m", "ramanedge.cli", "sim", "head-add",
                              "--port", path, "--label", "newite", str(bad),
                              str(tmp_path / "s.txt")], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        recs = [json.loads(ln) for ln in out.stdout.splitlines()]
        assert out.returncode == 0 and "Traceback" not in out.stderr  # one file was stored
        assert "not a readable .npy" in recs[0]["error"] and recs[1]["sample"] == "000001"
        assert "stored 1 of 2 files; 1 failed" in out.stderr
        # one schema and one exit rule for local and device classification (issue 13.4)
        from edge_runtime.classify import RECORD_KEYS

        xp = np.arange(100.0, 1300.0, 1.7)  # an instrument ending at 1300 cm-1 (issue 13.1)
        np.savetxt(tmp_path / "p.txt", np.c_[xp, 100 + 900 * np.exp(-((xp - 465) / 6) ** 2)],
                   delimiter=",")
        xf = np.arange(1600.0, 3000.0, 1.7)  # entirely outside the model grid
        np.savetxt(tmp_path / "far.txt", np.c_[xf, 100 + 900 * np.exp(-((xf - 2000) / 6) ** 2)],
                   delimiter=",")
        both = [str(bad), str(tmp_path / "s.txt"), str(tmp_path / "p.txt"),
                str(tmp_path / "far.txt")]
        sim = subprocess.run([sys.executable, "-m", "ramanedge.cli", "sim", "classify",
                              "--port", path, *both], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        local = subprocess.run([sys.executable, "-m", "ramanedge.cli", "classify", "--json",
                                "--model", str(tiny_artifact), *both], capture_output=True,
                               text=True, cwd=REPO, timeout=60)
        assert sim.returncode == local.returncode == 0, sim.stderr + local.stderr
        s_recs = [json.loads(ln) for ln in sim.stdout.splitlines()]
        l_recs = [json.loads(ln) for ln in local.stdout.splitlines()]
        assert set(s_recs[0]) == set(l_recs[0]) == {"path", "top", "set", "unknown", "error"}
        assert tuple(s_recs[1]) == tuple(l_recs[1]) == RECORD_KEYS
        # the prediction set travels in the RESULT frame: the same minerals, same order
        assert s_recs[1]["set"] == l_recs[1]["set"] and l_recs[1]["set"]
        assert l_recs[1]["set"][0] == l_recs[1]["top"][0]["label"]
        assert [t["label"] for t in s_recs[1]["top"]] == [t["label"] for t in l_recs[1]["top"]]
        # the RESULT frame carries probabilities in 1/65535 steps
        assert [t["prob"] for t in s_recs[1]["top"]] == pytest.approx(
            [t["prob"] for t in l_recs[1]["top"]], abs=1e-4)
        assert s_recs[1]["head"] == l_recs[1]["head"] == "base"
        # partial coverage: padded on the device exactly as locally, the fraction in both
        assert s_recs[1]["coverage"] == l_recs[1]["coverage"] == 1.0
        assert l_recs[2]["coverage"] == pytest.approx(1099 / 1392, abs=1e-4)
        assert s_recs[2]["coverage"] == pytest.approx(l_recs[2]["coverage"], abs=1e-4)
        assert [t["label"] for t in s_recs[2]["top"]] == [t["label"] for t in l_recs[2]["top"]]
        # a spectrum outside the grid is one error record on both paths, not a broken link
        assert "covers" in s_recs[3]["error"] and "covers" in l_recs[3]["error"]
        assert len(s_recs) == len(l_recs) == 4
        # a scan too dense for one frame (5,000 points in the window) is the file's error
        xd = np.arange(150.0, 1650.0, 0.3)
        np.savetxt(tmp_path / "dense.txt", np.c_[xd, 100 + 900 * np.exp(-((xd - 465) / 6) ** 2)],
                   delimiter=",")
        dense = subprocess.run([sys.executable, "-m", "ramanedge.cli", "sim", "classify",
                                "--port", path, str(tmp_path / "dense.txt"),
                                str(tmp_path / "s.txt")], capture_output=True, text=True,
                               cwd=REPO, timeout=60)
        d_recs = [json.loads(ln) for ln in dense.stdout.splitlines()]
        assert dense.returncode == 0 and len(d_recs) == 2, dense.stderr
        assert "one frame carries at most 16384 bytes" in d_recs[0]["error"]
        assert d_recs[1]["top"]
        for argv in (["sim", "classify", "--port", path], ["classify", "--model",
                                                          str(tiny_artifact)]):
            only_bad = subprocess.run([sys.executable, "-m", "ramanedge.cli", *argv, str(bad)],
                                      capture_output=True, text=True, cwd=REPO, timeout=60)
            assert only_bad.returncode == 1, only_bad.stderr  # every file failed
        res = json.loads(run("sim", "flash", "--port", path, "--model", str(v2),
                             "--baud", "0"))
        assert res["model"] == "tiny-v2"
        assert json.loads(run("sim", "rollback", "--port", path))["model"] == "tiny"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped" in err
    # offline rollback on the store folder (the device is down)
    out = subprocess.run([sys.executable, "-m", "ramanedge.cli", "device", "rollback",
                          "--store", str(tmp_path / "store")], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and "rolled back" in out.stdout
    assert read_manifest(ModelStore.open(tmp_path / "store").current_dir()).name == "tiny-v2"
    # serving that store again with --model: the factory image does not replace its model,
    # and the device says so
    seen: list[str] = []
    proc, _ = _start_serve(["--port", "pty", "--model", str(tiny_artifact),
                            "--store", str(tmp_path / "store"), "--cpus", "1"], seen)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert any("already holds a model" in ln for ln in seen), seen
    assert read_manifest(ModelStore.open(tmp_path / "store").current_dir()).name == "tiny-v2"


@pytest.mark.parametrize("argv,msg", [
    (["device", "serve", "--port", "/dev/no-such-tty", "--model", "{art}"], "cannot open"),
    (["device", "serve", "--port", "loop://", "--model", "/no/such/model"], "does not exist"),
    (["device", "serve", "--port", "loop://", "--model", "{art}", "--faults", "bogus=1"],
     "fault"),
    (["device", "rollback", "--store", "/no/such/store"], "not a device model store"),
    (["device", "serve", "--port", "loop://", "--model", "{art}", "--store",
      "{art}/model.tflite"], "is not a folder"),
    (["sim", "ping", "--port", "/dev/no-such-tty"], "cannot open"),
    (["sim", "replay", "--model", "{art}", "--data", "/no/such/data"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(tiny_artifact, argv, msg):
    argv = [a.replace("{art}", str(tiny_artifact)) for a in argv]
    out = subprocess.run([sys.executable, "-m", "ramanedge.cli", *argv], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and msg in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_device_process_does_not_load_openssl_hashlib(tiny_artifact, tmp_path):
    """The device path hashes with CPython's built-in SHA-256/BLAKE2b (``ramanedge.hashing``):
    ``hashlib`` loads OpenSSL's libcrypto (~3.8 MB RSS), a big slice of the 60 MB budget."""
    code = (
        "import sys\n"
        "import ramanedge.cli, device_sim.cli, device_sim.device, device_sim.backend\n"
        "from device_sim.uplink import ModelStore\n"
        f"b = device_sim.backend.EdgeBackend({str(tiny_artifact)!r})\n"
        "import numpy as np\n"
        "b.classify(200 + np.arange(1392.0), 1 + np.arange(1392.0) % 7, 3)\n"
        f"s = ModelStore.open({str(tmp_path / 'store')!r}, factory={str(tiny_artifact)!r})\n"
        "assert s.current\n"
        "print(sorted(m for m in ('hashlib', '_hashlib') if m in sys.modules))\n")
    assert _last_line_of_fresh_python(code) == "[]"


def test_builtin_hashes_equal_hashlib():
    import hashlib

    from ramanedge.hashing import blake2b, sha256

    rng = np.random.default_rng(0)
    for n in (0, 1, 63, 64, 65, 4096 + 7):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
        h = sha256()
        h.update(data[: n // 2])
        h.update(data[n // 2:])
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()
        assert blake2b(data, digest_size=8).digest() == \
            hashlib.blake2b(data, digest_size=8).digest()


def _peaks(seed: int, centres=(150, 600, 1050)) -> np.ndarray:
    g = np.arange(1392.0)
    r = np.random.default_rng(seed)
    s = sum(h * np.exp(-0.5 * ((g - p - r.uniform(-3, 3)) / 5) ** 2)
            for p, h in zip(centres, (1.0, 0.8, 0.9), strict=True))
    return s + 0.05 + r.normal(0, 0.01, g.size)


def test_uplinks_and_rollbacks_keep_acknowledged_samples_and_each_models_head(
        tiny_artifact, tiny_artifact_b, tmp_path):
    """Issue 16.1: flash B, flash A again, roll back: every acknowledged sample stays on disk
    and each model keeps the head learned on it."""
    v2 = tiny_artifact_b  # another model file: heads are per model file
    root = tmp_path / "store"
    with edge_device(root, tiny_artifact) as (dev, host):
        host.wait_ready(10)
        acks = [host.head_add("newite", _peaks(i)) for i in range(5)]
        assert [a["sample"] for a in acks] == [f"{i:06d}" for i in range(1, 6)]
        assert host.head_retrain()["head"] == "v0001"
        res = host.upload_model(v2, chunk_size=4096)
        assert res["model"] == "tiny-v2" and res["head"] == "base"  # v0001 is A's head
        # the backend validation loaded in staging/ serves, its files found in the slot
        assert dev.backend.clf.artifact.folder == dev.store.current_dir()
        # B retrains on the same samples (features recomputed for its model file)
        out = host.head_retrain()
        assert out["n_samples"] == 5 and out["new_labels"] == ["newite"]
        b_head = out["head"]
        res = host.upload_model(tiny_artifact, chunk_size=4096)  # A again: a new slot
        assert res["model"] == "tiny" and res["head"] == "v0001"
        assert host.head_add("newite", _peaks(10))["n_samples"] == 6
        rb = host.rollback()
        assert rb["model"] == "tiny-v2" and rb["head"] == b_head
        assert host.classify(_peaks(20))[0].label == "newite"
    files = sorted(p.name for p in (root / "headstore" / "samples").iterdir())
    assert [f[:6] for f in files] == [f"{i:06d}" for i in range(1, 7)]
    assert not any((s / "headstore").exists() for s in (root / "slots").iterdir())


def test_offline_rollback_refuses_while_a_device_serves_the_store(tiny_artifact, tmp_path):
    """Issue 16.4: one writer per store; the offline tool says who holds it."""
    v2 = _renamed_copy(tiny_artifact, tmp_path / "v2", "tiny-v2")
    store = tmp_path / "store"
    proc, path = _start_serve(["--port", "pty", "--model", str(tiny_artifact),
                               "--store", str(store)])
    try:
        host = HostClient(Link(open_port(path)), HostConfig(timeout=0.5, deadline=30))
        host.wait_ready(10)
        host.upload_model(v2, chunk_size=4096)
        out = subprocess.run([sys.executable, "-m", "ramanedge.cli", "device", "rollback",
                              "--store", str(store)], capture_output=True, text=True,
                             cwd=REPO, timeout=60)
        assert out.returncode == 2, out
        assert f"in use by another process (pid {proc.pid})" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert host.info()["model"] == "tiny-v2"
        host.link.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert read_manifest(ModelStore.open(store).current_dir()).name == "tiny-v2"


def test_kill_dash_nine_during_uplinks_and_onboard_learning_loses_nothing_acknowledged(
        tiny_artifact, tiny_artifact_b, tmp_path):
    """Issue 16: a real device process is SIGKILLed at random moments while the host adds
    samples, retrains the head and flashes models in turn; after every kill the store
    holds every acknowledged sample and serves the last acknowledged model (or the one
    whose commit was in flight), and the next boot answers."""
    import random

    from ramanedge.errors import LinkError

    store = tmp_path / "store"
    sha = {p: read_manifest(p).data["manifest_sha256"] for p in (tiny_artifact, tiny_artifact_b)}
    rnd = random.Random(0)
    acked: set[str] = set()
    serving = sha[tiny_artifact]
    step = 0
    kills = 0
    rounds = int(os.environ.get("RAMANEDGE_KILL_ROUNDS", "6"))  # campaign: docs/results.md
    for _ in range(rounds):
        proc, path = _start_serve(["--port", "pty", "--model", str(tiny_artifact),
                                   "--store", str(store)])
        port = open_port(path)
        host = HostClient(Link(port), HostConfig(timeout=0.3, deadline=4))
        killer = threading.Timer(rnd.uniform(0.3, 2.5), proc.kill)
        in_flight = None
        try:
            host.wait_ready(10)
            killer.start()
            while True:
                op = ("add", "add", "retrain", "flash")[step % 4]
                step += 1
                if op == "add":
                    acked.add(host.head_add("newite", _peaks(step))["sample"])
                elif op == "retrain":
                    assert host.head_retrain()["n_samples"] >= len(acked)
                else:
                    target = tiny_artifact_b if serving == sha[tiny_artifact] else tiny_artifact
                    in_flight = sha[target]
                    res = host.upload_model(target, chunk_size=2048)
                    serving, in_flight = res["model_sha256"], None
        except (LinkError, OSError):
            kills += 1  # the device died under a request
        finally:
            killer.cancel()
            proc.kill()
            proc.wait(20)
            port.close()
        on_disk = {p.name[:6] for p in (store / "headstore" / "samples").glob("*.npz")}
        assert acked <= on_disk, sorted(acked - on_disk)
        now = read_manifest(ModelStore(store).current_dir()).data["manifest_sha256"]
        assert now in {serving, in_flight}
        serving = now
    assert kills >= rounds - 1 and len(acked) >= 5
    print(f"\nkill -9 campaign: {rounds} rounds, {kills} kills under a request, {step} "
          f"operations, {len(acked)} acknowledged samples, 0 lost")
    proc, path = _start_serve(["--port", "pty", "--store", str(store)])
    try:
        port = open_port(path)
        host = HostClient(Link(port), HostConfig(timeout=0.5, deadline=30))
        host.wait_ready(10)
        assert host.info()["model_sha256"] == serving
        assert host.head_retrain()["n_samples"] >= len(acked)
        port.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_factory_model_that_cannot_classify_is_refused(tiny_artifact, tmp_path):
    """Issue 16.10: the factory image passes the same load-and-classify check as an uplink."""
    broken = _renamed_copy(tiny_artifact, tmp_path / "broken", "tiny-broken")
    (broken / "model.tflite").write_bytes(b"TFL3 but not really" * 50)
    m = read_manifest(broken, verify_files=False).data
    write_manifest(broken, {**{k: v for k, v in m.items() if k != "manifest_sha256"},
                            "files": {k: {} for k in m["files"]}})
    out = subprocess.run([sys.executable, "-m", "ramanedge.cli", "device", "serve", "--port",
                          "loop://", "--model", str(broken), "--store", str(tmp_path / "s")],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "artifact rejected" in out.stderr
    assert not list((tmp_path / "s" / "slots").iterdir())


def test_a_commit_hashes_each_file_once_and_loads_the_model_once(tiny_artifact, tmp_path,
                                                                 monkeypatch):
    """Issue 14.4: on commit the device hashes each file once (the store verifies; the real
    edge runtime it hands the folder to does not hash again) and loads the model once."""
    from collections import Counter

    import device_sim.uplink as uplink_mod
    import ramanedge.manifest as manifest_mod
    from device_sim.uplink import artifact_files

    v2 = _renamed_copy(tiny_artifact, tmp_path / "v2", "tiny-v2")
    loads: list[Path] = []
    real_loader = edge_loader()

    def loader(folder: Path, headstore: Path):
        loads.append(Path(folder))
        return real_loader(folder, headstore)

    store = open_store(tmp_path / "store", loader, factory=tiny_artifact)
    files = artifact_files(v2)
    hashed: Counter[str] = Counter()
    real_sha = uplink_mod.sha256_file

    def counting_sha(path, *a, **kw):
        hashed[Path(path).name] += 1
        return real_sha(path, *a, **kw)

    monkeypatch.setattr(uplink_mod, "sha256_file", counting_sha)
    monkeypatch.setattr(manifest_mod, "sha256_file", counting_sha)
    loads.clear()
    up = store.begin_upload(files)  # (a file the store holds is checked here, once)
    for i, m in enumerate(files):
        up.write_chunk(i, 0, (v2 / m["name"]).read_bytes())
    hashed.clear()
    slot = store.commit_upload(up.upload_id)
    assert dict(hashed) == {m["name"]: 1 for m in files}
    assert len(loads) == 1 and store.take_loaded(slot) is not None
