"""The events journal: bounded, rotated to one previous file, read back after a crash (a torn
last line skipped), filtered by time, never a secret, never in a volume operation's way; and
the operation ID that ties a request's events and log lines together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.core import context
from orlop.core.context import ContextFilter
from orlop.core.events import EventJournal, parse_since, parse_time
from orlop.core.model import InvalidOption, rfc3339
from orlop.core.registry import Driver
from orlop.core.service import VolumeService
from orlop.core.store import Store
from orlop.frontends.admin.api import AdminApi
from orlop.frontends.http import HttpServer
from orlop.ops.logs import JsonFormatter, TextFormatter
from tests.support.memory_backend import MemoryBackend

pytestmark = pytest.mark.unit


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_events_are_kept_in_order_and_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = EventJournal(str(path), host="h1")
    journal.emit("created", "created volume a", "mem", "a")
    journal.emit("mounted", "mounted volume a on host h1", "mem", "a", mounts=1)
    journal.close()
    kept = [(e.kind, e.volume, e.host) for e in journal.list()]
    assert kept == [("created", "a", "h1"), ("mounted", "a", "h1")]
    written = lines(path)
    assert [e["kind"] for e in written] == ["created", "mounted"]
    assert written[1]["details"] == {"mounts": 1}
    assert parse_time(str(written[0]["time"])) == pytest.approx(time.time(), abs=5)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_bounded_and_rotated_to_one_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = EventJournal(str(path), max_events=10)
    for n in range(25):
        journal.emit("created", f"created volume v{n}", "mem", f"v{n}")
        journal.flush()
    journal.close()
    assert [e.volume for e in journal.list()] == [f"v{n}" for n in range(15, 25)]
    current, previous = lines(path), lines(Path(f"{path}.1"))
    assert len(current) <= 10 and len(previous) <= 10
    assert not Path(f"{path}.2").exists()
    assert previous[-1]["seq"] == current[0]["seq"] - 1  # nothing lost between the two
    again = EventJournal(str(path), max_events=10)
    assert [e.volume for e in again.list()] == [f"v{n}" for n in range(15, 25)]
    again.close()


def test_bounded_by_bytes_too(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = EventJournal(str(path), max_bytes=2000)
    for n in range(40):
        journal.emit("created", "x" * 100, "mem", f"v{n}")
        journal.flush()
    journal.close()
    assert path.stat().st_size <= 2000
    assert Path(f"{path}.1").stat().st_size <= 2000


def test_a_torn_last_line_is_skipped_and_writing_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = EventJournal(str(path))
    journal.emit("created", "created volume a", "mem", "a")
    journal.close()
    with open(path, "a") as file:
        file.write('{"time": "2026-12-07T12:00:00Z", "kind": "mou')  # a crash mid-write
    again = EventJournal(str(path))
    assert [e.volume for e in again.list()] == ["a"]
    again.emit("removed", "removed volume a", "mem", "a")
    again.close()
    third = EventJournal(str(path))
    assert [e.kind for e in third.list()] == ["created", "removed"]
    assert third.list()[1].seq > third.list()[0].seq
    third.close()


def test_since_filters_by_time(tmp_path: Path) -> None:
    journal = EventJournal()
    journal.emit("created", "old", "mem", "a")
    old = journal.list()[0]
    object.__setattr__(old, "time", rfc3339(time.time() - 3600))
    journal.emit("created", "new", "mem", "b")
    assert [e.message for e in journal.list(parse_since("10m"))] == ["new"]
    assert [e.message for e in journal.list(parse_since("2h"))] == ["old", "new"]
    assert [e.message for e in journal.list(parse_since(rfc3339(time.time() - 60)))] == ["new"]
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("1d", now=100000.0) == 100000.0 - 86400
    for bad in ("yesterday", "10", "10y", "2026-12-07T12:00:00"):
        with pytest.raises(InvalidOption, match=r"duration .* or an RFC 3339 time"):
            parse_since(bad)


def test_an_unwritable_journal_never_fails_an_operation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gone" / "events.jsonl"  # its directory does not exist: writes fail
    journal = EventJournal(str(path))
    service = VolumeService(
        Store(str(tmp_path / "db")),
        [Driver("mem", MemoryBackend(BackendContext("mem", str(tmp_path))), {})],
        events=journal,
    )
    with caplog.at_level(logging.ERROR, "orlop.core.events"):
        asyncio.run(_create_mount_unmount(service))
        journal.flush()
        asyncio.run(_create_mount_unmount(service, "b"))
        journal.flush()
    service.close()
    assert [e.kind for e in journal.list()][:3] == ["created", "mounted", "unmounted"]
    failures = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(failures) == 1  # said once, not per event


async def _create_mount_unmount(service: VolumeService, name: str = "a") -> None:
    await service.create("mem", name, {})
    await service.mount("mem", name, "m1")
    await service.unmount("mem", name, "m1")


def test_no_secret_in_events(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    journal = EventJournal(str(path))
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    service = VolumeService(
        Store(str(tmp_path / "db")), [Driver("mem", backend, {})], events=journal
    )
    asyncio.run(service.create("mem", "a", {"password": "hunter2-secret", "label": "x"}))
    service.close()
    assert "hunter2-secret" not in path.read_text()
    created = journal.list()[0]
    assert created.details["options"]["label"] == "x"
    assert created.details["options"]["password"] != "hunter2-secret"


def test_one_operation_id_per_request_on_events_and_log_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    service = VolumeService(Store(str(tmp_path / "db")), [Driver("mem", backend, {})])
    seen_in_worker: list[str] = []
    attach = backend.attach

    def attach_and_log(volume):  # type: ignore[no-untyped-def]
        seen_in_worker.append(context.current_id())
        logging.getLogger("orlop.backends.test").info("attaching %s", volume.name)
        return attach(volume)

    backend.attach = attach_and_log  # type: ignore[method-assign]

    async def requests() -> list[str]:
        ids = []
        await service.create("mem", "a", {})  # no frontend: the service opens one
        with context.operation("mount") as op:  # as a frontend does
            ids.append(op.op)
            await service.mount("mem", "a", "m1")
        with context.operation("unmount") as op:
            ids.append(op.op)
            await service.unmount("mem", "a", "m1")
        return ids

    caplog.handler.addFilter(ContextFilter())  # as setup_logging does on the daemon's handler
    with caplog.at_level(logging.INFO):
        ids = asyncio.run(requests())
    service.close()
    events = service.events.list()
    assert [e.kind for e in events] == ["created", "mounted", "unmounted"]
    assert [e.op for e in events[1:]] == ids
    assert events[0].op and events[0].op not in ids
    assert seen_in_worker == [ids[0]]  # carried into the worker thread
    formatter, as_json = TextFormatter(), JsonFormatter()
    worker_line = next(r for r in caplog.records if r.name == "orlop.backends.test")
    assert formatter.format(worker_line).endswith(f"attaching a volume=a op={ids[0]}")
    fields = json.loads(as_json.format(worker_line))
    assert fields["op"] == ids[0] and fields["volume"] == "a" and fields["driver"] == "mem"
    assert fields["operation"] == "mount"
    assert fields["message"] == "attaching a"  # the message itself is unchanged


def test_followers_get_new_events() -> None:
    journal = EventJournal()

    async def follow() -> list[str]:
        with journal.follow() as queue:
            journal.emit("created", "created volume a", "mem", "a")
            journal.emit("removed", "removed volume a", "mem", "a")
            first = await asyncio.wait_for(queue.get(), 5)
            second = await asyncio.wait_for(queue.get(), 5)
            assert first is not None and second is not None
            return [first.kind, second.kind]

    assert asyncio.run(follow()) == ["created", "removed"]


def test_no_path_means_memory_only(tmp_path: Path) -> None:
    journal = EventJournal()
    journal.emit("created", "created volume a", "mem", "a")
    journal.close()
    assert os.listdir(tmp_path) == []
    assert len(journal.list()) == 1


def test_trash_and_recovery_events(tmp_path: Path) -> None:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    store_path = str(tmp_path / "db")
    service = VolumeService(Store(store_path), [Driver("mem", backend, {}, 3600.0)])

    async def trash_round() -> None:
        for name in ("a", "b", "c"):
            await service.create("mem", name, {})
            await service.remove("mem", name)
        await service.trash.restore("a")
        await service.trash.purge("b")
        await service.trash.sweep(now=time.time() + 7200)  # c's hour is up
        await service.mount("mem", "a", "m1")

    asyncio.run(trash_round())
    kinds = [(e.kind, e.volume) for e in service.events.list() if e.kind != "created"]
    assert kinds == [
        ("trashed", "a"),
        ("trashed", "b"),
        ("trashed", "c"),
        ("trash_restored", "a"),
        ("trash_purged", "b"),
        ("trash_expired", "c"),
        ("mounted", "a"),
    ]
    assert service.events.list()[-2].op  # the sweep's purge has an operation of its own
    service.close()

    # a restart with a mount recorded and nothing attached: recovery re-attaches
    backend.attached.clear()
    again = VolumeService(Store(store_path), [Driver("mem", backend, {}, 3600.0)])
    asyncio.run(again.recover())
    recovered = [(e.kind, e.volume) for e in again.events.list()]
    assert recovered == [("recovered", "a"), ("recovery_finished", "")]
    assert "re-attached volume a" in again.events.list()[0].message
    assert len({e.op for e in again.events.list()}) == 1  # one recovery, one ID
    again.close()


def test_the_admin_stream_follows_and_lets_go_of_a_client_that_leaves(tmp_path: Path) -> None:
    backend = MemoryBackend(BackendContext("mem", str(tmp_path)))
    service = VolumeService(Store(str(tmp_path / "db")), [Driver("mem", backend, {})])
    server = HttpServer(AdminApi(service, lambda name: {}).routes())
    path = str(tmp_path / "admin.sock")

    async def follow() -> tuple[bytes, str, int, int]:
        await server.start(path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET /v1/events?follow=1 HTTP/1.1\r\nHost: orlop\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        await service.create("mem", "a", {})  # after the answer started: a new event
        line = await asyncio.wait_for(reader.readline(), 5)
        following = len(service.events._followers)
        writer.close()
        for _ in range(50):
            if not service.events._followers:
                break
            await asyncio.sleep(0.02)
        await server.close()
        return head, json.loads(line)["kind"], following, len(service.events._followers)

    head, kind, following, after = asyncio.run(follow())
    service.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"application/x-ndjson" in head
    assert (kind, following, after) == ("created", 1, 0)
