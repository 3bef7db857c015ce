"""The uplink and hardware-profile benchmarks: their pieces run, and their sections render."""

from __future__ import annotations

import json

import numpy as np
from device_fakes import write_fake_artifact

from benchmarks.report import companion_sections
from benchmarks.uplink import at_half, head_only_variant, random_cuts, section
from device_sim.uplink import artifact_files
from ramanedge.manifest import read_manifest


def test_head_only_variant_differs_in_head_and_manifest_only(tmp_path):
    src = write_fake_artifact(tmp_path / "a", ["x", "y"], name="a")
    np.savez(src / "head.npz", W=np.ones((8, 2), np.float16), b=np.zeros(2, np.float32))
    data = read_manifest(src, verify_files=False).data
    from ramanedge.manifest import write_manifest

    write_manifest(src, {**{k: v for k, v in data.items() if k != "manifest_sha256"},
                         "files": {k: {} for k in data["files"]}})
    out = head_only_variant(src, tmp_path / "b")
    a = {m["name"]: m["sha256"] for m in artifact_files(src)}
    b = {m["name"]: m["sha256"] for m in artifact_files(out)}
    assert [n for n in a if a[n] != b[n]] == ["head.npz", "manifest.json"]
    with np.load(out / "head.npz") as z:
        assert z["W"].dtype == np.float16  # stored as the exporter stored it


def test_random_cuts_end_identical_with_no_partial_activation(tmp_path):
    old = write_fake_artifact(tmp_path / "old", ["x", "y"], name="old")
    new = write_fake_artifact(tmp_path / "new", ["x", "y", "z"], name="new")
    res = random_cuts(old, new, tmp_path / "work", n=6)
    assert res["uploads"] == res["identical"] == 6 and res["partial_activations"] == 0


def test_at_half_fires_once():
    seen: list[int] = []
    cb = at_half(lambda: seen.append(1))
    for have in (10, 49, 50, 80, 100):
        cb(have, 100)
    assert seen == [1]


def test_companion_sections_render_into_the_benchmarks_page(tmp_path):
    row = {"case": "full", "baud": 115200, "seconds": 32.1, "sent_bytes": 361088,
           "file_bytes": 461394, "wire_out": 364334, "wire_in": 2597, "held": [],
           "resumed": False}
    (tmp_path / "uplink.json").write_text(json.dumps({
        "machine": {"cpu": "AMD EPYC", "cores": 2, "date": "2026-12-04T12:00"},
        "factory": "A", "model": "B", "command": "python -m benchmarks.uplink ...",
        "rows": [row], "random_cuts": {"uploads": 100, "identical": 100,
                                       "partial_activations": 0, "seconds": 4.6}}))
    prof = {"profile": "pi4", "baud": None, "cpu_fraction": 0.126, "cpu_limit": "duty cycle",
            "latency_p50_ms": 1.0, "latency_p95_ms": 2.0, "compute_p50_ms": 0.5,
            "compute_p95_ms": 0.6, "board_compute_estimate_ms": 4.0, "spectra_per_s": 100.0,
            "peak_rss_mib": 47.0, "top1": 0.8}
    (tmp_path / "profiles.json").write_text(json.dumps({
        "machine": {"cpu": "AMD EPYC", "cores": 2, "date": "2026-12-04T12:00"},
        "model": "B", "rows": [prof]}))
    up, pr = companion_sections(tmp_path)
    assert up == section(json.loads((tmp_path / "uplink.json").read_text()))
    assert "| full | 115,200 | 32.1 | 461,394 | 361,088 |" in up
    assert "100 ended identical" in up and "0 partial activations" in up
    assert "| pi4 | unpaced | 0.126 (duty cycle) |" in pr and "zero2" in pr
