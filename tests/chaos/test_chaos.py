"""The short chaos run of CI: 30 random steps per provider and for the share kind (see
docs/chaos.md); the long one is `scripts/chaos --provider P --steps 1000 --seed S`."""

from __future__ import annotations

import pytest

from tests.chaos.share import ShareSimulation
from tests.chaos.sim import Simulation
from tests.chaos.worlds import PROVIDERS

pytestmark = pytest.mark.integration

STEPS = 30
SEED = 20261207


@pytest.mark.parametrize("provider", PROVIDERS)
def test_random_moves_and_faults_break_no_invariant(provider: str) -> None:
    report = Simulation(provider, seed=SEED, steps=STEPS, hosts=3).run()
    assert report.steps == STEPS and report.lost == 0 and report.leaks == []
    assert report.acked > 0, "the workload never wrote"
    assert report.moves["start"] + report.moves["move"] + report.moves["failover"] > 0
    assert sum(report.faults_met.values()) > 0, "no API fault was met"


def test_share_writers_keep_every_acknowledged_record() -> None:
    report = ShareSimulation(seed=SEED, steps=STEPS, hosts=3).run()
    assert report.steps == STEPS and report.lost == 0 and report.leaks == []
    assert report.acked > 0, "no writer ever wrote"
    assert report.moves["start"] > 1
