from __future__ import annotations

import pytest

from .crash import kill_survivors


@pytest.fixture(autouse=True)
def _no_run_survives_its_test():
    yield
    kill_survivors()
