"""The device with the real edge runtime (``tiny_artifact``): answers equal local
classification, uplink and rollback of real artifacts, onboard learning, the CLI."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from device_sim.device import Device, DeviceConfig, edge_loader
from device_sim.host import DeviceError, HostClient, HostConfig
from device_sim.transport import Link, open_port, open_pty_pair
from device_sim.uplink import ModelStore
from ramanedge.manifest import read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def edge_device(store_root: Path, factory: Path, *, baud: int | None = None):
    store = ModelStore.open(store_root, factory=factory)
    master, slave = open_pty_pair()
    dev_port = open_port(slave)
    dev = Device(Link(dev_port, baud=baud), store, edge_loader(1),
                 DeviceConfig(baud=baud, poll_seconds=0.02))
    th = threading.Thread(target=dev.serve, daemon=True)
    th.start()
    host = HostClient(Link(master, baud=baud), HostConfig(timeout=0.5, deadline=30))
    try:
        yield dev, host
    finally:
        dev.stop()
        th.join(5)
        dev_port.close()
        master.close()


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
        "import sys\n"
        "import device_sim.protocol, device_sim.transport, device_sim.uplink, device_sim.host\n"
        "import device_sim.device, device_sim.replay, device_sim.cli, device_sim.testing\n"
        f"b = device_sim.device.EdgeBackend({str(tiny_artifact)!r})\n"
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


def _start_serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ramanedge.cli", "device", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = proc.stderr.readline()
    t_end = time.time() + 60
    while "serving" not in line and time.time() < t_end and proc.poll() is None:
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


@pytest.mark.parametrize("argv,msg", [
    (["device", "serve", "--port", "/dev/no-such-tty", "--model", "{art}"], "cannot open"),
    (["device", "serve", "--port", "loop://", "--model", "/no/such/model"], "does not exist"),
    (["device", "serve", "--port", "loop://", "--model", "{art}", "--faults", "bogus=1"],
     "fault"),
    (["device", "rollback", "--store", "/no/such/store"], "not a device model store"),
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
        "import ramanedge.cli, device_sim.cli, device_sim.device\n"
        "from device_sim.uplink import ModelStore\n"
        f"b = device_sim.device.EdgeBackend({str(tiny_artifact)!r})\n"
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
