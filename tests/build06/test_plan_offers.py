"""Build06's plan offers the runner all three optional plan methods: renaming one would
silently stop the runner from holding the locks, recovering read folders or re-planning."""

from __future__ import annotations

from morphseq_build06.declared import Build06StagePlan as Build06Plan
from morphseq_stages import HoldsLocks, KnowsIfCurrent, ReadsFolders


def test_the_build06_plan_offers_its_locks_the_folders_it_reads_and_whether_it_is_current():
    for offer in (HoldsLocks, ReadsFolders, KnowsIfCurrent):
        assert issubclass(Build06Plan, offer), offer.__name__
