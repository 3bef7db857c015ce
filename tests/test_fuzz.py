"""Property-based fuzzing (issue 16): whatever a manifest or an input file holds, the rover
code answers with a valid result or one :class:`RamanEdgeError` (the CLI's one-line error),
never another exception (a traceback).

Manifests are re-hashed after each mutation, as an attacker or a buggy ground tool would do:
so the mutation reaches every check behind the manifest's own sha256.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ramanedge.errors import RamanEdgeError
from ramanedge.fsutil import sha256_bytes
from ramanedge.manifest import MANIFEST_NAME, _canonical

#: ``RAMANEDGE_FUZZ_SCALE=20`` runs 20x the examples (the campaign in docs/results.md)
SCALE = max(1, int(os.environ.get("RAMANEDGE_FUZZ_SCALE", "1")))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                                max_size=4),
    max_leaves=12,
)


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON tree (dict keys and list indices)."""
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _put(d: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


def _write_rehashed(folder: Path, data: Any) -> None:
    if isinstance(data, dict):
        body = {k: v for k, v in data.items() if k != "manifest_sha256"}
        data = {**body, "manifest_sha256": sha256_bytes(_canonical(body))}
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def fuzz_artifact(tiny_artifact, synthetic_data, tmp_path_factory) -> Path:
    """A private tiny artifact with exemplars (so ``head.exemplars`` exists to mutate)."""
    from quantize.exemplars import attach_exemplars

    dst = tmp_path_factory.mktemp("fuzz") / "artifact"
    shutil.copytree(tiny_artifact, dst)
    Xtr, ytr = synthetic_data.part("train")
    attach_exemplars(dst, Xtr, ytr, per_class=3)
    return dst


@settings(max_examples=150 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_any_rehashed_manifest_mutation_loads_or_is_one_error(fuzz_artifact, tmp_path,
                                                              data):
    from edge_runtime.classify import Classifier

    original = json.loads((fuzz_artifact / MANIFEST_NAME).read_text())
    work = tmp_path / "a"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(fuzz_artifact, work)
    manifest = json.loads(json.dumps(original))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(_paths(manifest)), label="path")
        manifest = _put(manifest, path, data.draw(JSON, label="value"))
    _write_rehashed(work, manifest)
    try:
        clf = Classifier.from_dir(work)
        x = np.linspace(150.0, 1700.0, 900)
        clf.classify_xy(x, 1.0 + np.exp(-0.5 * ((x - 800.0) / 6.0) ** 2))
    except RamanEdgeError as e:
        assert str(e) and "\n" not in str(e).strip()


def _npy(shape_text: bytes, payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 2)))
    head = buf.getvalue()[:128].replace(b"(3, 2)", shape_text)
    return head + payload


FILE_BYTES = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(allow_nan=True, allow_infinity=True)), max_size=60)
    .map(lambda rows: "\n".join(f"{a},{b}" for a, b in rows).encode()),
    st.builds(_npy, st.sampled_from([b"(10, 2)", b"(2, 7)", b"(1000000000000, 2)",
                                     b"(-1, 2)", b"()", b"(3,)", b"(2, 2, 2)"]),
              st.binary(max_size=300)),
    st.builds(lambda body: b"##NAMES=Quartz\n##RRUFFID=R040031\n" + body,
              st.binary(max_size=300)),
)


@settings(max_examples=300 * SCALE, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=FILE_BYTES, suffix=st.sampled_from([".txt", ".csv", ".npy", ".dat"]))
@example(content=b",", suffix=".txt")  # found by the campaign: a row of separators only
@example(content=_npy(b"()", b"\x00\x00\x00{"), suffix=".txt")  # numpy's header parser
def test_any_input_file_gives_an_answer_or_one_error_line(tiny_artifact, tmp_path, content,
                                                         suffix):
    from edge_runtime.classify import Classifier, classify_paths

    clf = _classifier(tiny_artifact, Classifier)
    p = tmp_path / f"input{suffix}"
    p.write_bytes(content)
    (res,) = list(classify_paths(clf, [p]))
    if res.error is not None:
        assert res.error and "\n" not in res.error.strip()
    else:
        assert 0.0 <= res.prediction.top[0][1] <= 1.0


_CLF: dict[str, Any] = {}


def _classifier(folder: Path, cls: Any) -> Any:
    if str(folder) not in _CLF:
        _CLF[str(folder)] = cls.from_dir(folder)
    return _CLF[str(folder)]
