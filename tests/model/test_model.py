"""The model-based test's small profile (the long one: ``python -m tests.model --examples 2000``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from .machine import OperatorLoop


def test_operator_loop_small_profile():
    pytest.importorskip("torch", reason="the model's world embeds with a legacy model (torch)")
    # derandomized: the normal test run tries the same 10 sequences every time
    run_state_machine_as_test(OperatorLoop, settings=settings(
        max_examples=10, stateful_step_count=5, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck), print_blob=False))
