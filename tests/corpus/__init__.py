"""The behaviour corpus (issue 18): record every file and exit code a set of fixed
Build06 scenarios leaves, then compare two recordings (before and after a refactor).

    python -m tests.corpus record OUT_DIR
    python -m tests.corpus compare A_DIR B_DIR [--ignore GLOB ...]

The code under test is always this checkout's (its ``morphseq_stages`` and ``plugins/``
go first on the path of every process the recorder starts), whatever venv runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# tests/ as pytest puts it (``reliability``, ``model`` importable by those names), and this
# checkout's packages ahead of any editable install of another worktree
for _folder in (REPO / "tests", REPO / "plugins", REPO):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
