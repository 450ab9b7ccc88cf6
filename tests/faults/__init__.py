"""The fault campaign: real node processes under an SDK workload, faulted and checked.

``tests/faults/harness.py`` is the reusable part (processes, workload,
history checker, recovery measurement, report); the ``test_*.py`` files are
scenarios.  This is a package (import ``faults.harness``); the multi-process
fixtures it reuses live in ``tests/node/netfixture.py``, which is a plain
module, so its directory is put on the import path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_NODE_TESTS = str(Path(__file__).resolve().parents[1] / "node")
if _NODE_TESTS not in sys.path:
    sys.path.append(_NODE_TESTS)
