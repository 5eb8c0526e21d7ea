"""Snapshot schedules with retention: `hourly:24,daily:7,weekly:4` (period:how many to keep).

A schedule takes one snapshot per period (at the first tick in it) and keeps the newest
`count` snapshots it made for each period. Periods are UTC calendar slots: the hour, the day,
the ISO week (from Monday), the month. A daemon that was down takes each period's missed
snapshot once at start (not one per missed slot: they would all hold the same data).

Snapshots a schedule makes are named `<volume>-<period>-<slot>` (e.g.
`db-daily-20261129`) and carry `schedule` = the period, which `orlop snapshot ls` shows.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

PERIODS = ("hourly", "daily", "weekly", "monthly")
# The longest each period's slot lasts (a month: 31 days), for "older than its schedule".
PERIOD_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 31 * 86400}


@dataclass(frozen=True, slots=True)
class Schedule:
    keep: tuple[tuple[str, int], ...]  # (period, count) in PERIODS order

    def __str__(self) -> str:
        return ",".join(f"{period}:{count}" for period, count in self.keep)


def parse_schedule(text: str) -> Schedule:
    """`hourly:24,daily:7` → Schedule; ValueError saying what is allowed otherwise."""
    rule = "use period:count pairs separated by commas, e.g. hourly:24,daily:7,weekly:4"
    found: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        period, sep, count = part.partition(":")
        period = period.strip().lower()
        if not sep or period not in PERIODS:
            raise ValueError(
                f"{part!r} is not a schedule entry: {rule} (periods: {', '.join(PERIODS)})"
            )
        if not count.strip().isdigit() or not 1 <= int(count) <= 10000:
            raise ValueError(f"{part!r}: how many to keep must be a number from 1 to 10000")
        if period in found:
            raise ValueError(f"period {period} is given twice in {text!r}")
        found[period] = int(count)
    if not found:
        raise ValueError(f"{text!r} is an empty schedule: {rule}")
    return Schedule(tuple((p, found[p]) for p in PERIODS if p in found))


def due_every(text: str) -> int | None:
    """Seconds between the snapshots of a schedule's shortest period; None if malformed."""
    try:
        return min(PERIOD_SECONDS[period] for period, _ in parse_schedule(text).keep)
    except ValueError:
        return None


def canonical_schedule(text: str) -> str:
    return str(parse_schedule(text))


def slot(period: str, when: datetime.datetime) -> str:
    """The calendar slot of `when` (UTC) for `period`: its name in snapshot names."""
    when = when.astimezone(datetime.UTC)
    if period == "hourly":
        return when.strftime("%Y%m%d%H")
    if period == "daily":
        return when.strftime("%Y%m%d")
    if period == "weekly":
        year, week, _ = when.isocalendar()
        return f"{year}w{week:02d}"
    if period == "monthly":
        return when.strftime("%Y%m")
    raise ValueError(f"unknown period {period}")


def due(schedule: Schedule, taken: dict[str, list[str]], now: datetime.datetime) -> list[str]:
    """The periods whose current slot has no snapshot yet; `taken` maps a period to the slots
    its snapshots are of."""
    return [period for period, _ in schedule.keep if slot(period, now) not in taken.get(period, [])]


def expired(schedule: Schedule, taken: dict[str, list[str]]) -> dict[str, list[str]]:
    """For each period, the slots beyond its count (the oldest ones): to delete."""
    result = {}
    for period, count in schedule.keep:
        slots = sorted(taken.get(period, []))
        if len(slots) > count:
            result[period] = slots[: len(slots) - count]
    return result
