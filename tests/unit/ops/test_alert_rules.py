"""The example alert file names only metrics Orlop exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orlop.backends.base import BackendContext
from orlop.ops.metrics import MetricsExporter
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit

RULES = Path(__file__).resolve().parents[3] / "packaging" / "orlop-alerts.yml"


def test_every_alert_uses_exported_metrics(tmp_path: Path) -> None:
    harness = Harness(MemoryBackend(BackendContext("mem", "/nonexistent")), "mem")
    try:
        page = MetricsExporter(harness.service).render().decode()
    finally:
        harness.close()
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", page, re.M))
    names = {n for n, _ in exported} | {f"{n}_total" for n, t in exported if t == "counter"}
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    issue_20 = {  # volume ≥ 90 % full, a mount repaired, a backup older than its schedule
        "OrlopVolumeNearlyFull",
        "OrlopErrorsRising",
        "OrlopMountRepaired",
        "OrlopScheduledSnapshotLate",
        "OrlopBackupOlderThanItsSchedule",
    }
    assert issue_20 <= {rule["alert"] for rule in rules}
    for rule in rules:
        used = set(re.findall(r"\b(orlop_\w+)", rule["expr"]))
        assert used <= names, (rule["alert"], used - names)
