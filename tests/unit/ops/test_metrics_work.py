"""The series issue 20 added last, scraped with the library's parser after real work: inodes
of a directory volume against os.statvfs, scheduled snapshot runs and a backup through the
real restic (a local repository), FUSE client restarts, provider retries."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from orlop.backends.base import BackendContext
from orlop.backends.cloud.api import CloudError, CloudSettings, ErrorKind
from orlop.backends.cloud.waiting import call_with_retries
from orlop.backends.directory.backend import DirectoryBackend
from orlop.core.model import BackendError, NotFound
from orlop.core.schedule import due_every
from orlop.core.schedules import SnapshotScheduler
from orlop.ops.counters import REGISTRY, counted_provider_call, mount_repaired
from orlop.ops.health import daemon_status
from orlop.ops.metrics import MetricsExporter
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.scrape import Page, samples, value
from tests.support.snapshot_node import repository_settings

pytestmark = pytest.mark.unit
UTC = datetime.UTC


def directory_harness(root: Path, settings: dict[str, Any] | None = None) -> Harness:
    driver = unique("dir")
    backend = DirectoryBackend(BackendContext(driver, str(root / "state"), settings=settings or {}))
    return Harness(backend, driver, store_path=str(root / "orlop.db"))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = directory_harness(tmp_path, {"snapshot_schedule": "daily:2,hourly:3"})
    yield harness
    harness.close()


def scrape(harness: Harness) -> Page:
    return samples(MetricsExporter(harness.service).render().decode())


def test_directory_volume_inodes_match_statvfs(harness: Harness) -> None:
    d = harness.driver
    volume = harness.create("files")
    path = harness.mount("files")
    for index in range(25):
        Path(path, f"f{index}").write_text("x")
    os.mkdir(os.path.join(path, "sub"))
    Path(path, "sub", "g").write_text("y")
    harness.run(harness.service.refresh_usage(d, "files"))
    fs = os.statvfs(path)
    page = scrape(harness)
    key = {"driver": d, "volume": "files"}
    # A plain directory: its tree's entries (itself, 25 files, sub, sub/g), and what the
    # filesystem it lives on has free (others write there too: within a few thousand).
    assert value(page, "orlop_volume_inodes_used", **key) == 28
    assert abs(value(page, "orlop_volume_inodes_free", **key) - fs.f_favail) < 5000
    assert ("orlop_volume_inodes", frozenset(key.items())) not in page  # unbounded, as size
    assert volume.usage is not None and volume.usage.as_dict()["inodes_used"] == 28


def test_a_schedule_run_sets_the_last_success_gauge(harness: Harness) -> None:
    d = harness.driver
    now = [datetime.datetime(2026, 12, 7, 10, 5, tzinfo=UTC)]
    service = harness.service
    scheduler = SnapshotScheduler(service.registry, service.snapshots, clock=lambda: now[0])
    harness.create("db")
    harness.create("gone")
    harness.create("plain", snapshot_schedule="weekly:1")
    before = time.time()
    assert harness.run(scheduler.tick())
    after = time.time()
    harness.remove("gone")  # its series go with it
    page = scrape(harness)
    db = {"driver": d, "volume": "db"}
    assert value(page, "orlop_snapshot_schedule_runs_total", **db, result="ok") == 1
    assert value(page, "orlop_snapshot_schedule_runs_total", **db, result="failed") == 0
    success = value(page, "orlop_snapshot_schedule_last_success_timestamp_seconds", **db)
    assert before <= success <= after
    assert 0 < value(page, "orlop_snapshot_schedule_last_duration_seconds", **db) < after - before
    assert value(page, "orlop_snapshot_schedule_period_seconds", **db) == 3600  # hourly
    plain = {"driver": d, "volume": "plain"}
    assert value(page, "orlop_snapshot_schedule_period_seconds", **plain) == 7 * 86400
    assert not any(("volume", "gone") in labels for _, labels in page)
    assert due_every("often:3") is None
    # The alert "older than its schedule" compares these two one to one: same label sets.
    series = "orlop_snapshot_schedule_last_success_timestamp_seconds"
    late = {labels for name, labels in page if name == series}
    period = {labels for name, labels in page if name == "orlop_snapshot_schedule_period_seconds"}
    assert late == period and len(period) == 2


def test_a_failed_schedule_run_keeps_the_last_success(harness: Harness) -> None:
    d = harness.driver
    now = [datetime.datetime(2026, 12, 7, 10, 5, tzinfo=UTC)]
    service = harness.service
    scheduler = SnapshotScheduler(service.registry, service.snapshots, clock=lambda: now[0])
    harness.create("db")
    harness.run(scheduler.tick())
    key = {"driver": d, "volume": "db"}
    first = value(scrape(harness), "orlop_snapshot_schedule_last_success_timestamp_seconds", **key)
    # The next hour's snapshot cannot be written: its catalog is a file now.
    catalog = Path(harness.backend.context.path("snapshots"))  # type: ignore[attr-defined]
    taken = catalog / f"db-hourly-{now[0]:%Y%m%d}11"
    taken.write_text("in the way")
    now[0] += datetime.timedelta(hours=1)
    harness.run(scheduler.tick())
    page = scrape(harness)
    assert value(page, "orlop_snapshot_schedule_runs_total", **key, result="failed") == 1
    assert value(page, "orlop_snapshot_schedule_runs_total", **key, result="ok") == 1
    assert value(page, "orlop_snapshot_schedule_last_success_timestamp_seconds", **key) == first
    status = daemon_status(service, "done", {d: True}, None)
    assert status["background"]["snapshot_schedule"]["last_result"].startswith("failed")


def test_backup_runs_counted_through_real_restic(tmp_path: Path) -> None:
    harness = directory_harness(tmp_path, repository_settings(str(tmp_path)))
    d = harness.driver
    try:
        path = harness.mount(harness.create("data").name)
        Path(path, "a").write_bytes(os.urandom(4096))
        before = time.time()
        made = harness.run(harness.service.backups.create(d, "data"))
        assert made["volume"] == "data"
        with pytest.raises(NotFound):  # no such volume: not a run, not a label
            harness.run(harness.service.backups.create(d, "nosuch"))
        page = scrape(harness)
        key = {"driver": d, "volume": "data"}
        assert value(page, "orlop_backup_runs_total", **key, result="ok") == 1
        assert value(page, "orlop_backup_last_success_timestamp_seconds", **key) >= before
        assert value(page, "orlop_backup_last_duration_seconds", **key) > 0
        assert not any(("volume", "nosuch") in labels for _, labels in page)
        assert "orlop_backup_period_seconds" not in {name for name, _ in page}
    finally:
        harness.close()


def test_fuse_client_restarts_counted_per_driver_and_volume() -> None:
    driver, volume = unique("sshfs"), unique("vol")
    mount_repaired(driver, volume)
    mount_repaired(driver, volume)
    page = samples(generate_latest(REGISTRY).decode())
    assert value(page, "orlop_fuse_client_restarts_total", driver=driver, volume=volume) == 2


def test_provider_retries_counted_once_per_repeated_attempt() -> None:
    provider = unique("cloud")
    settings = CloudSettings.parse(provider, {"api_retry_base": 0.001, "api_retry_cap": 0.001})
    answers = [CloudError("busy", ErrorKind.RETRYABLE), CloudError("slow", ErrorKind.THROTTLED)]

    def flaky() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    counted = counted_provider_call(provider, flaky)
    assert call_with_retries(settings, "get disk", counted, repeatable=True) == "done"
    with pytest.raises(BackendError):
        counted_provider_call(provider, _fails)()  # one attempt: no retry
    page = samples(generate_latest(REGISTRY).decode())
    assert value(page, "orlop_provider_api_retries_total", provider=provider) == 2
    calls = "orlop_provider_api_calls_total"
    assert value(page, calls, provider=provider, outcome="throttled") == 1
    assert value(page, calls, provider=provider, outcome="retryable") == 1
    assert value(page, calls, provider=provider, outcome="ok") == 1


def _fails() -> None:
    raise BackendError("no")
