"""Every pair of Build06's CLI option values in at least one run, each run checked against
the model's invariants (the covering array is ``pairwise.covering_array``)."""

from __future__ import annotations

import pytest

from .machine import known_defects, run_checked
from .pairwise import _pairs, all_pairs, covering_array, options_of
from .world import World

ROWS = covering_array()


def test_the_rows_cover_every_pair_of_option_values():
    covered = set().union(*(_pairs(r) for r in ROWS))
    assert covered >= all_pairs(), sorted(all_pairs() - covered)[:5]


@pytest.fixture
def world(tmp_path):
    """Two experiments, one with a partial latent file from elsewhere, one with a snip
    image missing; a training set; nothing built yet."""
    pytest.importorskip("torch", reason="the model's world embeds with a legacy model (torch)")
    w = World(tmp_path, seed=16)
    w.append_experiment("20231207", 3)
    w.append_experiment("20240509_18ss", 3, images=2)
    w.foreign_latent_file("20231207", w.snips("20231207")[:2], seed=1)
    w.write_training_set("train_a", [0, 2, 4])
    return w


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i:02}" for i in range(len(ROWS))])
def test_option_pairs(world, row):
    opts = known_defects(options_of(row))
    first = run_checked(world, opts)
    assert first.code in (0, 2, 3), first.stderr
    # then the operator's next step: the same options once more after a new experiment
    world.append_experiment("20250612_30hpf_ctrl_atf6", 2)
    run_checked(world, opts)
