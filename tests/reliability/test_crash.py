"""kill -9 at random points of an overwriting run: each output old or new, each set whole,
and the next run recovers (the long variant: ``python -m tests.reliability.crash --kills 200``)."""

from __future__ import annotations

import os

import pytest

from .crash import crash_test


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fast variant forks this interpreter")
def test_ten_sigkills_leave_every_output_old_or_new_and_the_rerun_recovers(tmp_path):
    tally = crash_test(10, merge_only=True, chain=5, seed=11, fork=True, base=tmp_path)
    assert tally.failures == []
    assert tally.kills == 10 and tally.reruns == 2 and tally.files_checked >= 10 * 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fast variant forks this interpreter")
def test_sigkills_of_runs_writing_every_kind_of_output_leave_each_folder_whole(tmp_path):
    """The training join, typed copies (Parquet, h5ad) of every CSV and the report as well."""
    pytest.importorskip("anndata")
    pytest.importorskip("plotly")
    tally = crash_test(3, merge_only=True, chain=3, seed=5, fork=True, base=tmp_path, variant="every-output")
    assert tally.failures == []
    assert tally.kills == 3 and tally.reruns == 1 and tally.files_checked >= 3 * 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fast variant forks this interpreter")
def test_sigkills_of_generate_only_parquet_jobs_leave_the_store_whole(tmp_path):
    pytest.importorskip("torch")
    tally = crash_test(3, merge_only=False, chain=3, seed=3, fork=True, base=tmp_path, variant="generate-only")
    assert tally.failures == []
    assert tally.kills == 3 and tally.reruns == 1 and tally.files_checked >= 3 * 5
