"""The device model store: verified uploads, atomic swap, rollback, kill -9 during a commit."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from device_fakes import FakeBackend, write_fake_artifact
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.uplink import ModelStore, Upload, UploadError, artifact_files
from ramanedge.errors import ManifestError
from ramanedge.manifest import read_manifest

LABELS = ["a", "b", "c"]


def _validate(folder: Path) -> None:
    FakeBackend(folder)


def _sha(folder: Path) -> str:
    return read_manifest(folder).data["manifest_sha256"]


@pytest.fixture
def arts(tmp_path):
    old = write_fake_artifact(tmp_path / "old", LABELS, name="old")
    new = write_fake_artifact(tmp_path / "new", LABELS + ["d"], name="new")
    return old, new


def _upload(store: ModelStore, folder: Path, *, chunk: int = 777, skip_last: bool = False,
            tamper: bool = False) -> Upload:
    files = artifact_files(folder)
    up = store.begin_upload(files)
    for i, m in enumerate(files):
        data = (folder / m["name"]).read_bytes()
        offs = list(range(0, len(data), chunk))
        if skip_last and i == 0:
            offs = offs[:-1]
        for off in offs:
            piece = data[off:off + chunk]
            if tamper and m["name"] == "model.tflite" and off == 0:
                piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
            up.write_chunk(i, off, piece)
    return up


def test_empty_store_needs_a_factory_model(tmp_path):
    with pytest.raises(ManifestError, match="no usable model"):
        ModelStore.open(tmp_path / "s")


def test_factory_install_upload_and_rollback(tmp_path, arts):
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    assert _sha(store.current_dir()) == _sha(old) and store.previous is None
    up = _upload(store, new)
    assert up.complete
    # chunks resent (retries) and out of order change nothing
    data = (new / "head.npz").read_bytes()
    idx = [m["name"] for m in up.files].index("head.npz")
    up.write_chunk(idx, 0, data[:100])
    assert up.bytes_received(idx) == len(data)
    slot = store.commit_upload(up.upload_id)
    assert store.current == slot and _sha(store.current_dir()) == _sha(new)
    assert not list((tmp_path / "s" / "staging").iterdir())
    # factory is ignored once the store has a model (uplinks survive reboots)
    again = ModelStore.open(tmp_path / "s", factory=old)
    assert _sha(again.current_dir()) == _sha(new)
    back = again.rollback()
    assert _sha(again.current_dir()) == _sha(old) and again.current == back
    again.rollback()  # rolling back twice returns to the newer model
    assert _sha(again.current_dir()) == _sha(new)
    st = again.status()
    assert st["current"] and st["previous"] and st["generation"] >= 4
    assert st["problems"] == []
    # both pointers garbage: the status says so (and which slot a boot would recover)
    # instead of a quiet "current": null
    for name in ("ACTIVE.json", "ACTIVE.json.bak"):
        (tmp_path / "s" / name).write_text("garbage")
    st = ModelStore(tmp_path / "s").status()
    assert st["current"] is None and len(st["problems"]) == 1
    assert "both unreadable" in st["problems"][0] and "newest good slot" in st["problems"][0]
    r = subprocess.run([sys.executable, "-m", "ramanedge.cli", "device", "status", "--store",
                        str(tmp_path / "s")], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 1 and r.stderr.startswith("warning: ACTIVE.json and")
    assert "Traceback" not in r.stderr


def test_comparison_variants_are_not_flashed(tmp_path, arts):
    """An artifact exported with ``--also float32`` uplinks without the float32 model."""
    from ramanedge.manifest import write_manifest

    old, new = arts
    (new / "model_float32.tflite").write_bytes(os.urandom(50_000))
    d = json.loads((new / "manifest.json").read_text())
    d["files"] = {k: {} for k in d["files"]} | {"model_float32.tflite": {}}
    d["variants"] = {"float32": {"file": "model_float32.tflite"}}
    for k in ("manifest_sha256",):
        d.pop(k, None)
    write_manifest(new, d)
    names = [m["name"] for m in artifact_files(new)]
    assert names == ["head.npz", "model.tflite", "manifest.json"]
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    store.commit_upload(_upload(store, new).upload_id)
    assert _sha(store.current_dir()) == _sha(new)
    assert not (store.current_dir() / "model_float32.tflite").exists()
    # a local install leaves it behind too
    store2 = ModelStore.open(tmp_path / "s2", factory=new, validate=_validate)
    assert sorted(p.name for p in store2.current_dir().iterdir()) == [
        "head.npz", "manifest.json", "model.tflite"]


def test_rollback_without_previous_is_an_error(tmp_path, arts):
    store = ModelStore.open(tmp_path / "s", factory=arts[0])
    with pytest.raises(UploadError, match="no previous"):
        store.rollback()


@pytest.mark.parametrize("how", ["tamper", "unloadable", "manifest"])
def test_bad_upload_is_rejected_and_changes_nothing(tmp_path, arts, how):
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    before = (store.read_pointer(), sorted(p.name for p in store.slots_dir.iterdir()))
    if how == "unloadable":
        new = write_fake_artifact(tmp_path / "junk", LABELS, name="junk",
                                  model_bytes=b"garbage model")
        up = _upload(store, new)
        match = "not a loadable model"
    elif how == "manifest":
        # a file replaced *and* announced with its new sha256: only the manifest catches it
        (new / "head.npz").write_bytes(b"PK not the head")
        files = _files_unchecked(new)
        up = store.begin_upload(files)
        for i, m in enumerate(files):
            up.write_chunk(i, 0, (new / m["name"]).read_bytes())
        match = "does not match its sha256"
    else:
        up = _upload(store, new, tamper=True)
        match = "sha256"
    with pytest.raises(UploadError, match=match):
        store.commit_upload(up.upload_id)
    after = (store.read_pointer(), sorted(p.name for p in store.slots_dir.iterdir()))
    assert after == before
    assert _sha(store.current_dir()) == _sha(old)
    assert not list((tmp_path / "s" / "staging").iterdir())
    with pytest.raises(UploadError, match="no upload"):
        store.commit_upload(up.upload_id)


def _files_unchecked(folder: Path) -> list[dict]:
    import hashlib

    out = []
    for name in ["head.npz", "model.tflite", "manifest.json"]:
        data = (folder / name).read_bytes()
        out.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


@pytest.mark.parametrize("files", [
    [],
    [{"name": "../evil", "bytes": 1, "sha256": "0" * 64},
     {"name": "manifest.json", "bytes": 1, "sha256": "0" * 64}],
    [{"name": "model.tflite", "bytes": 1, "sha256": "0" * 64}],
    [{"name": "manifest.json", "bytes": 1, "sha256": "xyz"}],
    [{"name": "manifest.json", "bytes": -1, "sha256": "0" * 64}],
    [{"name": "manifest.json"}],
    "not a list",
])
def test_begin_upload_rejects_bad_announcements(tmp_path, arts, files):
    store = ModelStore.open(tmp_path / "s", factory=arts[0])
    with pytest.raises(UploadError):
        store.begin_upload(files)


def test_chunk_outside_the_file_is_rejected(tmp_path, arts):
    store = ModelStore.open(tmp_path / "s", factory=arts[0])
    up = store.begin_upload(artifact_files(arts[1]))
    with pytest.raises(UploadError, match="outside"):
        up.write_chunk(0, up.files[0]["bytes"] - 2, b"abcd")
    with pytest.raises(UploadError, match="file #9"):
        up.write_chunk(9, 0, b"x")


def test_boot_recovers_from_leftovers_and_a_rotten_current_slot(tmp_path, arts):
    old, new = arts
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old)
    store.install(new)
    # leftovers named as the store names them (an upload, an unreferenced slot)
    (root / "staging" / "upload-0000dead").mkdir(parents=True)
    (root / "slots" / "000099-0123456789ab").mkdir()
    # bit rot in the current model: boot falls back to the previous one
    model = store.current_dir() / "model.tflite"
    data = model.read_bytes()  # one byte flipped: always a change, whatever it held
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    rebooted = ModelStore.open(root)
    assert _sha(rebooted.current_dir()) == _sha(old)
    assert not (root / "staging" / "upload-0000dead").exists()
    assert not (root / "slots" / "000099-0123456789ab").exists()


# --- kill -9 during a commit -------------------------------------------------------------


def _commit_and_die(root: str, new: str, step: str) -> None:  # runs in a forked child
    def hook(s: str) -> None:
        if s == step:
            os.kill(os.getpid(), signal.SIGKILL)

    store = ModelStore.open(root, validate=_validate, crash_hook=hook)
    up = _upload(store, Path(new))
    store.commit_upload(up.upload_id)
    os._exit(0)


@pytest.mark.parametrize("step,expect", [("staged", "old"), ("renamed", "old"),
                                         ("pointed", "new")])
def test_commit_killed_at_each_step_boots_old_or_new(tmp_path, arts, step, expect):
    old, new = arts
    root = tmp_path / "s"
    ModelStore.open(root, factory=old)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_commit_and_die, args=(str(root), str(new), step))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    booted = ModelStore.open(root)  # no factory: must boot from what is on disk
    want = old if expect == "old" else new
    assert _sha(booted.current_dir()) == _sha(want)
    FakeBackend(booted.current_dir())  # and it loads
    assert not (root / "staging").exists() or not list((root / "staging").iterdir())


CHURN = r"""
import sys
from pathlib import Path
from device_sim.uplink import ModelStore
root, a, b = sys.argv[1:4]
store = ModelStore.open(root)
i = 0
while True:
    store.install(a if i % 2 else b)
    i += 1
    print(i, flush=True)
"""


def test_kill_dash_nine_at_random_moments_never_leaves_no_model(tmp_path, arts):
    """A process committing models in a loop is SIGKILLed at random times: every reboot
    finds a complete, verified model (old or new, never neither)."""
    old, new = arts
    root = tmp_path / "s"
    ModelStore.open(root, factory=old)
    rng = random.Random(0)
    shas = {_sha(old), _sha(new)}
    seen = set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(root), str(old), str(new)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()  # at least one commit done: imports are over
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
        booted = ModelStore.open(root)
        sha = _sha(booted.current_dir())  # verifies every file
        assert sha in shas
        seen.add(sha)
        ptr = json.loads((root / "ACTIVE.json").read_text())
        assert (root / "slots" / ptr["current"]).is_dir()
    assert seen  # (both usually; which one depends on timing)


# --- issue 16: the pointer, foreign files, the head store --------------------------------


def _two_slot_store(tmp_path, arts) -> tuple[Path, str, str]:
    old, new = arts
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old, validate=_validate)
    slot_old = store.current
    slot_new = store.commit_upload(_upload(store, new).upload_id)
    (root / "headstore" / "samples").mkdir(parents=True)
    (root / "headstore" / "samples" / "000001-0123456789abcdef.npz").write_bytes(b"sample")
    return root, str(slot_old), slot_new


@pytest.mark.parametrize("damage", [
    b'{"current": 5}', b"", b"\x00\x13garbage", b"[1, 2]", b'{"current": null}',
    b'{"current": "../../../outside/evil_slot", "previous": null, "generation": 3}',
    b'{"current": "000001-0123456789ab", "previous": "../x", "generation": 1}',
    b'{"current": "000077-0123456789ab", "previous": null, "generation": 9}',  # no such slot
])
@pytest.mark.parametrize("backup_too", [False, True])
def test_a_damaged_pointer_never_deletes_a_slot_or_leaves_the_store(tmp_path, arts, damage,
                                                                     backup_too):
    root, slot_old, slot_new = _two_slot_store(tmp_path, arts)
    outside = write_fake_artifact(tmp_path / "outside" / "evil_slot", LABELS, name="evil")
    third = write_fake_artifact(tmp_path / "third", LABELS, name="third")
    (root / "ACTIVE.json").write_bytes(damage)
    if backup_too:
        (root / "ACTIVE.json.bak").write_bytes(damage)
    store = ModelStore.open(root, factory=third)  # a factory image must not replace them
    assert store.current == slot_new and store.previous == slot_old
    assert store.current_dir().parent == root / "slots"
    assert _sha(store.current_dir()) == _sha(arts[1])
    assert sorted(p.name for p in (root / "slots").iterdir()) == sorted([slot_old, slot_new])
    assert (root / "headstore" / "samples" / "000001-0123456789abcdef.npz").is_file()
    assert read_manifest(outside).name == "evil"  # read, never served
    # the pointer is whole again (both copies), and a rollback works from it
    for name in ("ACTIVE.json", "ACTIVE.json.bak"):
        assert json.loads((root / name).read_text())["current"] == slot_new
    assert store.rollback() == slot_old


def test_store_deletes_only_what_it_made(tmp_path, arts):
    """Issue 16.13: files of others in ``staging/``, ``slots/`` and the root survive boot,
    uploads, commits and rollbacks."""
    old, new = arts
    root = tmp_path / "s"
    (root / "staging").mkdir(parents=True)
    (root / "slots" / "photos").mkdir(parents=True)
    (root / "staging" / "thesis.tex").write_text("chapter 1")
    (root / "slots" / "photos" / "a.jpg").write_bytes(b"jpg")
    (root / "slots" / "notes.txt").write_text("mine")
    store = ModelStore.open(root, factory=old, validate=_validate)
    store.commit_upload(_upload(store, new).upload_id)
    store.commit_upload(_upload(store, old).upload_id)  # the first slot is now unreferenced
    store.rollback()
    ModelStore.open(root)
    assert (root / "staging" / "thesis.tex").read_text() == "chapter 1"
    assert (root / "slots" / "photos" / "a.jpg").read_bytes() == b"jpg"
    assert (root / "slots" / "notes.txt").read_text() == "mine"
    made = [p.name for p in (root / "slots").iterdir() if p.name[0].isdigit()]
    assert len(made) == 2  # the unreferenced slot the store made was removed


def test_store_folder_must_be_a_folder(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ManifestError, match="is not a folder"):
        ModelStore.open(afile)
    assert afile.read_text() == "x"


def test_store_lock_admits_one_writer(tmp_path, arts):
    root = tmp_path / "s"
    held = ModelStore.open(root, factory=arts[0], lock=True)
    code = ("import sys\nfrom device_sim.uplink import ModelStore, UploadError\n"
            f"try:\n    ModelStore.open({str(root)!r}, lock=True)\n"
            "except UploadError as e:\n    print(e)\n    sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 3 and f"in use by another process (pid {os.getpid()})" in out.stdout
    held.unlock()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 40)), max_size=40))
def test_received_ranges_are_the_union_of_the_chunks(chunks):
    from device_sim.uplink import _Received

    r, cover = _Received(), set()
    for off, n in chunks:
        r.add(off, off + n)
        cover |= set(range(off, off + n))
        assert r.total == len(cover)
    assert all(e < s for e, s in zip(r.ends, r.starts[1:], strict=False))  # disjoint, sorted


def test_a_flood_of_one_byte_chunks_keeps_constant_state(tmp_path, arts):
    """Issue 16.9: 20,000 one-byte chunks in order leave one interval per file (per-chunk
    cost no longer grows with the chunks already received)."""
    store = ModelStore.open(tmp_path / "s", factory=arts[0], validate=_validate)
    files = artifact_files(arts[1])
    up = store.begin_upload(files)
    i = max(range(len(files)), key=lambda k: files[k]["bytes"])
    data = (arts[1] / files[i]["name"]).read_bytes()[:20_000]
    for off in range(len(data)):
        up.write_chunk(i, off, data[off:off + 1])
    assert up.received[i].starts == [0] and up.received[i].total == len(data)


def test_commit_is_idempotent_and_reflashing_the_current_model_changes_nothing(tmp_path,
                                                                                 arts):
    """Issue 16.5: a resent commit of the same upload, and an upload of what is already
    current, keep the rollback target."""
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    first = store.current
    up = _upload(store, new)
    slot = store.commit_upload(up.upload_id)
    assert store.commit_upload(up.upload_id) == slot  # the lost answer, asked again
    again = store.commit_upload(_upload(store, new).upload_id)
    assert again == slot and store.previous == first
    assert sorted(p.name for p in (tmp_path / "s" / "slots").iterdir()) == sorted([first, slot])
    assert _sha(store.slots_dir / store.rollback()) == _sha(old)


def test_what_validation_loaded_is_handed_over_once_per_activation(tmp_path, arts):
    """Issue 15.4: the store keeps what ``validate`` returned for the candidate that became
    current (an install, a commit, a rollback target) and hands it over once; nothing for an
    artifact that was not swapped in or was rejected."""
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=FakeBackend)
    first = store.current
    assert store.take_loaded(first).name == "old" and store.take_loaded(first) is None
    slot = store.commit_upload(_upload(store, new).upload_id)
    loaded = store.take_loaded(slot)
    assert loaded.name == "new" and loaded.folder.parent.name == "staging"  # before the swap
    assert store.commit_upload(_upload(store, new).upload_id) == slot  # identical: no swap
    assert store.take_loaded(slot) is None
    with pytest.raises(UploadError):
        store.commit_upload(_upload(store, new, tamper=True).upload_id)
    assert store.take_loaded(slot) is None
    assert store.rollback() == first
    assert store.take_loaded(first).folder == store.slots_dir / first
    assert store.take_loaded(store.current) is None  # handed over once


def test_a_stale_backup_pointer_is_caught_up_and_never_deletes_a_newer_slot(tmp_path, arts):
    """A crash between the main and the backup pointer writes leaves the backup a step
    behind: the next boot refreshes it; if the main copy is damaged first, booting from the
    stale backup deletes no slot."""
    old, new = arts
    third = write_fake_artifact(tmp_path / "third", LABELS, name="third")
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old, validate=_validate)
    s1 = store.current
    s2 = store.commit_upload(_upload(store, new).upload_id)
    stale = (root / "ACTIVE.json").read_text()
    assert json.loads(stale)["previous"] == s1
    s3 = store.commit_upload(_upload(store, third).upload_id)  # s1 removed, pointer (s3, s2)
    (root / "ACTIVE.json.bak").write_text(stale)
    ModelStore.open(root)  # main is fine: the backup is caught up
    assert json.loads((root / "ACTIVE.json.bak").read_text())["current"] == s3
    (root / "ACTIVE.json.bak").write_text(stale)
    (root / "ACTIVE.json").write_text("{bit flip")
    again = ModelStore.open(root)  # the newer verifying slot wins over the stale backup
    assert (again.current, again.previous) == (s3, s2)
    assert sorted(p.name for p in (root / "slots").iterdir()) == sorted([s2, s3])
    assert ModelStore.open(root).current == s3


# --- resumable and delta uploads (issue 14) ------------------------------------------------


def _write_ranges(up: Upload, folder: Path, gaps: list[list[int]], chunk: int = 777) -> None:
    for fi, lo, hi in gaps:
        data = (folder / up.files[fi]["name"]).read_bytes()
        for off in range(lo, hi, chunk):
            up.write_chunk(fi, off, data[off:min(off + chunk, hi)])


def test_an_incomplete_upload_is_refused_kept_and_resumed(tmp_path, arts):
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    before = store.read_pointer()
    up = _upload(store, new, skip_last=True)
    with pytest.raises(UploadError, match="incomplete.*kept"):
        store.commit_upload(up.upload_id)
    assert store.read_pointer() == before and _sha(store.current_dir()) == _sha(old)
    again = store.begin_upload(artifact_files(new))  # the same announcement resumes
    assert again is up and again.resumed
    size = up.files[0]["bytes"]
    assert again.missing() == [[0, (size - 1) // 777 * 777, size]]  # just the skipped chunk
    _write_ranges(again, new, again.missing())
    store.commit_upload(again.upload_id)
    assert _sha(store.current_dir()) == _sha(new)
    assert not list((tmp_path / "s" / "staging").iterdir())


def test_an_upload_survives_a_device_restart(tmp_path, arts, monkeypatch):
    """What was stored before the restart (snapshotted after an fsync) is not asked again;
    another announcement after the restart starts afresh."""
    import device_sim.uplink as U

    monkeypatch.setattr(U, "SNAPSHOT_BYTES", 3000)
    old, new = arts
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old, validate=_validate)
    files = artifact_files(new)
    up = store.begin_upload(files)
    big = max(range(len(files)), key=lambda k: files[k]["bytes"])
    data = (new / files[big]["name"]).read_bytes()
    for off in range(0, 10_000, 1000):  # 10 chunks: snapshots after 3,000 B, 6,000, 9,000
        up.write_chunk(big, off, data[off:off + 1000])
    store.unlock()
    rebooted = ModelStore.open(root, validate=_validate)  # a restart: no memory kept
    assert _sha(rebooted.current_dir()) == _sha(old)  # nothing activated
    resumed = rebooted.begin_upload(files)
    assert resumed.upload_id == up.upload_id and resumed.resumed
    assert resumed.bytes_received(big) == 9000  # the last snapshot; the 10th chunk is resent
    assert [g for g in resumed.missing() if g[0] == big] == [[big, 9000, files[big]["bytes"]]]
    _write_ranges(resumed, new, resumed.missing())
    rebooted.commit_upload(resumed.upload_id)
    assert _sha(rebooted.current_dir()) == _sha(new)
    # a different announcement discards a resumable upload
    other = write_fake_artifact(tmp_path / "other", LABELS + ["e"], name="other")
    half = rebooted.begin_upload(artifact_files(other))
    folder = half.folder
    ModelStore.open(root).begin_upload(artifact_files(old))
    assert not folder.exists()


@pytest.mark.parametrize("damage", ["state", "size"])
def test_an_upload_whose_state_does_not_fit_is_a_leftover(tmp_path, arts, damage):
    old, new = arts
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old)
    up = store.begin_upload(artifact_files(new))
    if damage == "state":
        (up.folder / ".upload.json").write_text('{"upload_id": 1, "files": [')
    else:
        with open(up.folder / up.files[0]["name"], "ab") as f:
            f.write(b"x")
    rebooted = ModelStore.open(root)
    assert rebooted.upload is None and not up.folder.exists()


def test_a_delta_upload_sends_only_what_the_device_lacks(tmp_path, arts):
    """A new head on the model the device serves: the model file is copied from the slot,
    not sent; the commit still checks every file against the manifest."""
    old, _new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    head_only = write_fake_artifact(tmp_path / "h", LABELS + ["d"], name="head-only",
                                    model_bytes=(old / "model.tflite").read_bytes())
    files = artifact_files(head_only)
    up = store.begin_upload(files)
    assert up.held == ["model.tflite"]
    missing = {files[fi]["name"] for fi, _lo, _hi in up.missing()}
    assert missing == {"head.npz", "manifest.json"}
    sent = sum(hi - lo for _fi, lo, hi in up.missing())
    assert sent == sum(m["bytes"] for m in files if m["name"] != "model.tflite")
    _write_ranges(up, head_only, up.missing())
    store.commit_upload(up.upload_id)
    assert _sha(store.current_dir()) == _sha(head_only)
    assert (store.current_dir() / "model.tflite").read_bytes() == \
        (old / "model.tflite").read_bytes()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.booleans())
def test_uploads_cut_anywhere_and_resumed_end_identical(tmp_path_factory, cut, restart):
    """Issue 14: 100 uploads cut at a random byte, optionally across a device restart, then
    resumed: each ends identical to the source and nothing partial is ever activated."""
    tmp = tmp_path_factory.mktemp("cut")
    old = write_fake_artifact(tmp / "old", LABELS, name="old")
    new = write_fake_artifact(tmp / "new", LABELS + ["d"], name="new")
    root = tmp / "s"
    store = ModelStore.open(root, factory=old, validate=_validate)
    files = artifact_files(new)
    total = sum(m["bytes"] for m in files)
    stop = cut % (total + 1)
    up, done = store.begin_upload(files), 0
    for fi, lo, hi in up.missing():
        for off in range(lo, hi, 500):
            n = min(500, hi - off, stop - done)
            if n <= 0:
                break
            up.write_chunk(fi, off, (new / files[fi]["name"]).read_bytes()[off:off + n])
            done += n
    if restart:
        store.unlock()
        store = ModelStore.open(root, validate=_validate)
    assert _sha(store.current_dir()) == _sha(old)  # nothing partial is active
    up = store.begin_upload(files)
    _write_ranges(up, new, up.missing(), chunk=500)
    store.commit_upload(up.upload_id)
    cur = store.current_dir()
    assert all((cur / m["name"]).read_bytes() == (new / m["name"]).read_bytes() for m in files)


def _zlib_files(folder: Path) -> tuple[list[dict], dict[str, bytes]]:
    import zlib

    files, wire = artifact_files(folder), {}
    for m in files:
        wire[m["name"]] = zlib.compress((folder / m["name"]).read_bytes(), 9)
        m["zlib"] = len(wire[m["name"]])
    return files, wire


def test_zlib_files_are_inflated_at_commit(tmp_path, arts):
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    files, wire = _zlib_files(new)
    up = store.begin_upload(files)
    assert sum(hi - lo for _f, lo, hi in up.missing()) == sum(map(len, wire.values()))
    for fi, lo, hi in up.missing():
        up.write_chunk(fi, lo, wire[files[fi]["name"]][lo:hi])
    store.commit_upload(up.upload_id)
    assert _sha(store.current_dir()) == _sha(new)
    assert sorted(p.name for p in store.current_dir().iterdir()) == sorted(
        m["name"] for m in files)  # no stream or state file left in the slot


@pytest.mark.parametrize("bad", ["stream", "bomb", "short"])
def test_a_bad_zlib_file_is_refused_and_changes_nothing(tmp_path, arts, bad):
    import zlib

    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    files, wire = _zlib_files(new)
    i = next(k for k, m in enumerate(files) if m["name"] == "model.tflite")
    if bad == "stream":
        wire["model.tflite"] = b"not zlib" + wire["model.tflite"][8:]
    elif bad == "bomb":  # inflates far beyond the announced size
        wire["model.tflite"] = zlib.compress(b"\0" * (50 * files[i]["bytes"]), 9)
    else:
        wire["model.tflite"] = zlib.compress((new / "model.tflite").read_bytes()[:-10], 9)
    files[i]["zlib"] = len(wire["model.tflite"])
    up = store.begin_upload(files)
    for fi, lo, hi in up.missing():
        up.write_chunk(fi, lo, wire[files[fi]["name"]][lo:hi])
    with pytest.raises(UploadError, match="zlib|inflates"):
        store.commit_upload(up.upload_id)
    assert _sha(store.current_dir()) == _sha(old)
    assert not list((tmp_path / "s" / "staging").iterdir())


def test_a_rotted_held_file_is_sent_again_not_copied(tmp_path, arts):
    """A file of the current slot that no longer matches its sha256 is not held: it is
    asked for (and the flash works), instead of failing every commit until a reboot."""
    old, _new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    head_only = write_fake_artifact(tmp_path / "h", LABELS + ["d"], name="head-only",
                                    model_bytes=(old / "model.tflite").read_bytes())
    model = store.current_dir() / "model.tflite"
    data = model.read_bytes()
    model.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # bit rot after boot
    files = artifact_files(head_only)
    up = store.begin_upload(files)
    assert up.held == [] and "model.tflite" in {files[fi]["name"] for fi, *_ in up.missing()}
    _write_ranges(up, head_only, up.missing())
    store.commit_upload(up.upload_id)
    assert _sha(store.current_dir()) == _sha(head_only)


def test_a_failed_begin_leaves_no_staging_folder(tmp_path, arts, monkeypatch):
    """A storage error while an upload starts (a full disk) is cleaned up by abort_upload."""
    import device_sim.uplink as U

    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)

    def disk_full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(U.Upload, "save_state", disk_full)
    with pytest.raises(OSError):
        store.begin_upload(artifact_files(new))
    store.abort_upload()  # what the device does on a storage error
    assert not list((tmp_path / "s" / "staging").iterdir())


def test_stray_files_in_staging_never_reach_the_slot(tmp_path, arts):
    old, new = arts
    store = ModelStore.open(tmp_path / "s", factory=old, validate=_validate)
    up = _upload(store, new)
    (up.folder / ".upload.json.123.tmp").write_text("{")  # a snapshot cut by a crash
    store.commit_upload(up.upload_id)
    assert sorted(p.name for p in store.current_dir().iterdir()) == sorted(
        m["name"] for m in up.files)


def test_a_symlinked_staging_folder_is_never_resumed(tmp_path, arts):
    old, new = arts
    root = tmp_path / "s"
    store = ModelStore.open(root, factory=old)
    up = store.begin_upload(artifact_files(new))  # a valid resumable state...
    outside = tmp_path / "outside"
    up.folder.rename(outside)
    (root / "staging" / up.folder.name).symlink_to(outside)  # ...behind a symlink
    rebooted = ModelStore.open(root)
    assert rebooted.upload is None
    assert (root / "staging" / up.folder.name).is_symlink() and outside.is_dir()  # left alone
