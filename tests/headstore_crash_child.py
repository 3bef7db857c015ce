"""Child process of the head-store crash tests (``tests/test_headstore.py``).

``python tests/headstore_crash_child.py STEP ARGS...`` runs the real command ``ramanedge ARGS``
(e.g. ``head retrain --model DIR``) with a checkpoint injected into every
:class:`~edge_runtime.headstore.HeadStore` it opens: at ``STEP`` (one of
:data:`~edge_runtime.headstore.CHECKPOINTS`) it prints ``PAUSE STEP`` on stderr and sleeps a
minute, so the test can SIGKILL the process right there.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from edge_runtime import headstore
from ramanedge.cli import main


def run(step: str, args: list[str]) -> None:
    """Run ``ramanedge args`` pausing at ``step``."""
    if step not in headstore.CHECKPOINTS:
        raise SystemExit(f"unknown checkpoint {step!r}; one of {headstore.CHECKPOINTS}")

    def pause(name: str) -> None:
        if name == step:
            print(f"PAUSE {name}", file=sys.stderr, flush=True)
            time.sleep(60)

    real_init = headstore.HeadStore.__init__

    def init(self: headstore.HeadStore, *a: Any, checkpoint: Any = None, **kw: Any) -> None:
        real_init(self, *a, checkpoint=checkpoint or pause, **kw)

    headstore.HeadStore.__init__ = init  # type: ignore[method-assign]
    main(args)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
