"""Snapshot schedules: parsing, and the daemon's scheduler driven by a clock the test owns,
over the real directory backend (plain copies in a temporary directory)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.directory.backend import DirectoryBackend
from orlop.core.model import ConfigError, InvalidOption
from orlop.core.schedule import parse_schedule, slot
from orlop.core.schedules import SnapshotScheduler
from tests.support.harness import Harness

UTC = datetime.UTC


def test_parse() -> None:
    assert str(parse_schedule(" weekly:4, hourly:24,daily:7")) == "hourly:24,daily:7,weekly:4"
    for text, message in (
        ("", "empty schedule"),
        ("hourly", "not a schedule entry"),
        ("minutely:5", "not a schedule entry"),
        ("daily:0", "from 1 to 10000"),
        ("daily:x", "from 1 to 10000"),
        ("daily:1,daily:2", "given twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_schedule(text)


def test_slots() -> None:
    when = datetime.datetime(2026, 11, 29, 15, 30, tzinfo=UTC)  # a Sunday
    assert [slot(p, when) for p in ("hourly", "daily", "weekly", "monthly")] == [
        "2026112915",
        "20261129",
        "2026w48",
        "202611",
    ]


def test_bad_schedules_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a schedule entry"):
        DirectoryBackend(BackendContext("d", str(tmp_path), settings={"snapshot_schedule": "x"}))
    harness = Harness(DirectoryBackend(BackendContext("d", str(tmp_path))), "d")
    try:
        with pytest.raises(InvalidOption, match="invalid value for option snapshot_schedule"):
            harness.create("v", snapshot_schedule="hourly:24,often:3")
        assert harness.names() == []
    finally:
        harness.close()


def test_scheduler_takes_due_snapshots_and_keeps_the_newest(tmp_path: Path) -> None:
    now = [datetime.datetime(2026, 11, 29, 10, 5, tzinfo=UTC)]
    settings = {"snapshot_schedule": "daily:2"}
    backend = DirectoryBackend(BackendContext("d", str(tmp_path), settings=settings))
    harness = Harness(backend, "d")
    scheduler = SnapshotScheduler(
        harness.service.registry, harness.service.snapshots, clock=lambda: now[0]
    )
    try:
        harness.create("db")  # the driver's schedule
        harness.create("cache", snapshot_schedule="hourly:2")  # its own schedule wins
        harness.create("plain", snapshot_schedule="weekly:1")

        def names() -> list[str]:
            listed = harness.run(harness.service.list_snapshots("d"))
            return sorted(s["name"] for s in listed if s["volume"] in ("db", "cache"))

        assert harness.run(scheduler.tick())  # the first round: what is due now
        assert names() == ["cache-hourly-2026112910", "db-daily-20261129"]
        assert harness.run(scheduler.tick()) == []  # nothing new within the same slots
        now[0] += datetime.timedelta(hours=1)
        harness.run(scheduler.tick())
        now[0] += datetime.timedelta(hours=1)
        harness.run(scheduler.tick())
        assert names() == [
            "cache-hourly-2026112911",
            "cache-hourly-2026112912",  # hourly:2 keeps two
            "db-daily-20261129",
        ]
        # Down for three days: one snapshot when it is back, not one per missed day.
        now[0] += datetime.timedelta(days=3)
        harness.run(scheduler.tick())
        assert [n for n in names() if n.startswith("db-")] == [
            "db-daily-20261129",
            "db-daily-20261202",
        ]
        listed = harness.run(harness.service.list_snapshots("d", "db"))
        assert {s["schedule"] for s in listed} == {"daily"}
        # A snapshot taken by hand is never expired by the schedule.
        harness.run(harness.service.create_snapshot("d", "db", "by-hand"))
        now[0] += datetime.timedelta(days=1)
        harness.run(scheduler.tick())
        assert [n for n in names() if n.startswith("db-")] == [
            "db-daily-20261202",
            "db-daily-20261203",
        ]
        kept = harness.run(harness.service.list_snapshots("d", "db"))
        assert "by-hand" in {s["name"] for s in kept}
    finally:
        harness.close()
