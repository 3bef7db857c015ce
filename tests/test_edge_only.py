"""The rover-only install (``pip install .[edge]``, issue 13.3): ground commands that need
TensorFlow, Keras, scikit-learn or matplotlib answer with one line naming the extra to
install (exit 2), never a traceback; the rover commands work.

The subprocess hides those packages with an import hook, as if they were not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"tensorflow", "keras", "sklearn", "matplotlib", "h5py"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from ramanedge.cli import main
main(sys.argv[1:])
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE, *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("argv", [
    ["quantize", "runs/none", "--out", "models/none"],
    ["train", "--epochs", "1"],
    ["evaluate", "runs/none"],
    ["baselines"],
    ["explain", "--model", "runs/none", "x.csv"],
])
def test_ground_commands_name_the_extra_in_one_line(argv):
    out = _run(*argv)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"error: 'ramanedge {argv[0]}' needs the '")
    assert "pip install 'ramanedge[" in lines[0]


def test_rover_commands_work_without_the_training_stack(tiny_artifact, synthetic_data,
                                                        tmp_path):
    import numpy as np

    X, _ = synthetic_data.part("test")
    x = np.linspace(150.0, 1700.0, 2000)
    f = tmp_path / "s.csv"
    np.savetxt(f, np.c_[x, np.interp(x, 200.0 + np.arange(1392), X[0]) * 1000 + 50],
               delimiter=",")
    out = _run("classify", "--model", str(tiny_artifact), "--json", str(f))
    assert out.returncode == 0, out.stderr
    assert '"top"' in out.stdout
    assert "ramanedge" in _run("--help").stdout
