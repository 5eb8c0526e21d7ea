"""Admin API: POST /v1/<call> with a JSON body; answers JSON, errors as {"Err": …}.

It says what Docker's protocol cannot: every driver, fresh usage, resize, the daemon's
version and configuration. Only root may connect (checked with SO_PEERCRED).

`/v1/events` (GET with a query, or POST with a body: `since`, `follow`) answers JSON lines,
one event a line, oldest first; with `follow` it goes on with each new event until the
client closes the connection.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import orlop
from orlop.core import context
from orlop.core.backups import find_backup_driver
from orlop.core.events import Event, parse_since
from orlop.core.model import Conflict, InvalidName, InvalidOption, NotFound, OrlopError, Volume
from orlop.core.options import parse_size
from orlop.core.service import VolumeService
from orlop.frontends.http import Handler, Response, Stream

_STATUS = {NotFound: 404, Conflict: 409, InvalidName: 400, InvalidOption: 400}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ListBody(_Body):
    driver: str | None = None
    usage: bool = False


class CreateBody(_Body):
    name: str
    driver: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    task: str | None = None  # an ID the client polls `progress` with (a clone's copy)


class VolumeBody(_Body):
    name: str
    driver: str | None = None


class ResizeBody(VolumeBody):
    size: str


class SnapshotCreateBody(_Body):
    volume: str
    snapshot: str | None = None  # its name
    driver: str | None = None
    task: str | None = None


class SnapshotListBody(_Body):
    volume: str | None = None
    driver: str | None = None


class SnapshotRemoveBody(_Body):
    snapshot: str
    driver: str | None = None


class SnapshotRestoreBody(SnapshotRemoveBody):
    task: str | None = None


class BackupCreateBody(_Body):
    volume: str
    driver: str | None = None
    task: str | None = None


class BackupListBody(_Body):
    volume: str | None = None
    driver: str | None = None


class BackupRestoreBody(_Body):
    backup: str
    to: str | None = None
    driver: str | None = None
    task: str | None = None


class TrashBody(_Body):
    name: str | None = None  # purge: without a name, everything in the trash
    driver: str | None = None


class ProgressBody(_Body):
    task: str


class EventsBody(_Body):
    since: str | None = None  # a duration back from now (10m, 2h) or an RFC 3339 time
    follow: bool | str = False  # from a query string: 1/true/yes or 0/false/no

    def following(self) -> bool:
        if isinstance(self.follow, bool):
            return self.follow
        value = self.follow.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("", "0", "false", "no", "off"):
            return False
        raise InvalidOption(f"invalid follow {self.follow!r}: use 1 or 0 (true or false)")


class AdminApi:
    def __init__(
        self,
        service: VolumeService,
        describe_driver: Callable[[str], dict[str, Any]],
        status: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ):
        self.service = service
        self.describe_driver = describe_driver
        self._status = status

    def routes(self) -> dict[bytes, Handler]:
        calls: dict[str, tuple[type[_Body] | None, Callable[..., Awaitable[Any]]]] = {
            "version": (None, self.version),
            "drivers": (None, self.drivers),
            "status": (None, self.status),
            "volumes/list": (ListBody, self.list),
            "volumes/create": (CreateBody, self.create),
            "volumes/inspect": (VolumeBody, self.inspect),
            "volumes/remove": (VolumeBody, self.remove),
            "volumes/resize": (ResizeBody, self.resize),
            "snapshots/create": (SnapshotCreateBody, self.snapshot_create),
            "snapshots/list": (SnapshotListBody, self.snapshot_list),
            "snapshots/remove": (SnapshotRemoveBody, self.snapshot_remove),
            "snapshots/restore": (SnapshotRestoreBody, self.snapshot_restore),
            "backups/create": (BackupCreateBody, self.backup_create),
            "backups/list": (BackupListBody, self.backup_list),
            "backups/restore": (BackupRestoreBody, self.backup_restore),
            "trash/list": (None, self.trash_list),
            "trash/restore": (TrashBody, self.trash_restore),
            "trash/purge": (TrashBody, self.trash_purge),
            "progress": (ProgressBody, self.progress),
        }
        routes = {f"/v1/{name}".encode(): self._wrap(name, *call) for name, call in calls.items()}
        routes[b"/v1/events"] = self._wrap("events", EventsBody, self.events)
        return routes

    def _wrap(
        self, name: str, model: type[_Body] | None, call: Callable[..., Awaitable[Any]]
    ) -> Handler:
        async def handle(body: bytes) -> Response | Stream:
            try:
                request = model.model_validate_json(body or b"{}") if model else None
                volume = getattr(request, "name", None) or getattr(request, "volume", None)
                # One operation ID per admin call, on its log lines and events.
                with context.operation(name.replace("/", "_"), volume=volume or ""):
                    result = await (call(request) if model else call())
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()
                )
                return 400, json.dumps({"Err": f"bad request: {problems}"}).encode()
            except OrlopError as error:
                status = next((s for t, s in _STATUS.items() if isinstance(error, t)), 500)
                return status, json.dumps({"Err": str(error)}).encode()
            if isinstance(result, Stream):
                return result
            return 200, json.dumps(result).encode()

        return handle

    # calls ------------------------------------------------------------------------------
    async def version(self) -> dict[str, Any]:
        return {"version": orlop.__version__, "drivers": sorted(self.service.drivers)}

    async def status(self) -> dict[str, Any]:
        """Health per driver, recovery, background work: see orlop.ops.health."""
        if self._status is None:
            raise NotFound("this daemon does not report its status")
        return await self._status()

    async def trash_list(self) -> list[dict[str, str]]:
        return [entry.as_dict() for entry in self.service.trash.list()]

    async def trash_restore(self, body: TrashBody) -> dict[str, Any]:
        if not body.name:
            raise InvalidOption("trash restore needs the name of a volume in the trash")
        return self._describe(await self.service.trash.restore(body.name, body.driver))

    async def trash_purge(self, body: TrashBody) -> list[str]:
        return await self.service.trash.purge(body.name, body.driver)

    async def drivers(self) -> list[dict[str, Any]]:
        return [self.describe_driver(name) for name in sorted(self.service.drivers)]

    async def list(self, body: ListBody) -> list[dict[str, Any]]:
        drivers = [body.driver] if body.driver else sorted(self.service.drivers)
        volumes = [v for d in drivers for v in self.service.list(d)]
        if body.usage:
            await asyncio.gather(
                *(self.service.refresh_usage(v.driver, v.name, timeout=5) for v in volumes)
            )
        return [self._describe(v) for v in volumes]

    async def create(self, body: CreateBody) -> dict[str, Any]:
        driver = body.driver or _only_driver(self.service)
        volume = await self.service.create(driver, body.name, body.options, body.task)
        return self._describe(volume)

    async def inspect(self, body: VolumeBody) -> dict[str, Any]:
        volume = self._find(body)
        volume = await self.service.refresh_usage(volume.driver, volume.name, timeout=5)
        return self._describe(volume)

    async def remove(self, body: VolumeBody) -> dict[str, Any]:
        volume = self._find(body)
        await self.service.remove(volume.driver, volume.name)
        return {"removed": volume.name, "driver": volume.driver}

    async def resize(self, body: ResizeBody) -> dict[str, Any]:
        volume = self._find(body)
        try:
            size = parse_size(body.size)
        except ValueError as error:
            raise InvalidOption(f"invalid size: {error}") from None
        volume = await self.service.resize(volume.driver, volume.name, size)
        return self._describe(volume)

    async def snapshot_create(self, body: SnapshotCreateBody) -> dict[str, Any]:
        volume = self._find(VolumeBody(name=body.volume, driver=body.driver))
        return await self.service.snapshots.create(
            volume.driver, volume.name, body.snapshot, body.task
        )

    async def snapshot_list(self, body: SnapshotListBody) -> builtins.list[dict[str, Any]]:
        drivers = [body.driver] if body.driver else self.service.snapshot_drivers()
        found = await asyncio.gather(
            *(self.service.list_snapshots(driver, body.volume) for driver in drivers)
        )
        return [snapshot for snapshots in found for snapshot in snapshots]

    async def snapshot_remove(self, body: SnapshotRemoveBody) -> dict[str, Any]:
        driver = body.driver
        if driver is None:
            able = self.service.snapshot_drivers()
            if len(able) != 1:
                raise InvalidOption(
                    "no driver takes snapshots"
                    if not able
                    else f"several drivers take snapshots ({', '.join(able)}): "
                    "name one with --driver"
                )
            driver = able[0]
        return await self.service.delete_snapshot(driver, body.snapshot)

    async def snapshot_restore(self, body: SnapshotRestoreBody) -> dict[str, Any]:
        driver = body.driver
        if driver is None:
            able = self.service.snapshot_drivers()
            found = await asyncio.gather(*(self.service.list_snapshots(d) for d in able))
            holders = sorted(
                {
                    s["driver"]
                    for snaps in found
                    for s in snaps
                    if body.snapshot in (s["name"], s["id"])
                }
            )
            if not holders:
                raise NotFound(
                    f"snapshot {body.snapshot} not found in any driver: `orlop snapshot ls` "
                    "lists them"
                )
            if len(holders) > 1:
                raise Conflict(
                    f"snapshot {body.snapshot} exists in drivers {', '.join(holders)}: "
                    "name one with --driver"
                )
            driver = holders[0]
        return await self.service.snapshots.restore(driver, body.snapshot, body.task)

    async def backup_create(self, body: BackupCreateBody) -> dict[str, Any]:
        volume = self._find(VolumeBody(name=body.volume, driver=body.driver))
        return await self.service.backups.create(volume.driver, volume.name, body.task)

    async def backup_list(self, body: BackupListBody) -> builtins.list[dict[str, Any]]:
        drivers = [body.driver] if body.driver else self.service.backups.drivers()
        found = await asyncio.gather(
            *(self.service.backups.list(driver, body.volume) for driver in drivers)
        )
        seen: dict[str, dict[str, Any]] = {}  # two drivers may share a repository
        for backups in found:
            for backup in backups:
                seen.setdefault(backup["id"], backup)
        return sorted(seen.values(), key=lambda b: str(b["created_at"]))

    async def backup_restore(self, body: BackupRestoreBody) -> dict[str, Any]:
        driver = find_backup_driver(self.service.backups, body.driver)
        volume = await self.service.backups.restore(driver, body.backup, body.to, body.task)
        return self._describe(volume)

    async def progress(self, body: ProgressBody) -> dict[str, Any]:
        task = self.service.registry.progress.get(body.task)
        if task is None:
            raise NotFound(f"no operation in progress with task ID {body.task}")
        return task.as_dict()

    async def events(self, body: EventsBody) -> Stream:
        """The journal's events since `since` (all it keeps without), then, following, each
        new one. Bad input is refused here, before the stream starts."""
        since = parse_since(body.since) if body.since else None
        return Stream(self._events(since, body.following()))

    async def _events(self, since: float | None, follow: bool) -> AsyncIterator[bytes]:
        journal = self.service.events
        if not follow:
            for event in journal.list(since):
                yield _line(event)
            return
        with journal.follow() as queue:  # before the past is read: nothing falls between
            last = 0
            for event in journal.list(since):
                last = event.seq
                yield _line(event)
            while True:
                new = await queue.get()
                if new is None:
                    return  # the daemon stops, or this reader fell too far behind
                if new.seq > last:
                    last = new.seq
                    yield _line(new)

    # helpers ----------------------------------------------------------------------------
    def _find(self, body: VolumeBody) -> Volume:
        if body.driver:
            return self.service.get(body.driver, body.name)
        found = self.service.find(body.name)
        if not found:
            raise NotFound(f"volume {body.name} not found in any driver")
        if len(found) > 1:
            drivers = ", ".join(v.driver for v in found)
            raise Conflict(
                f"volume {body.name} exists in drivers {drivers}: name one with --driver"
            )
        return found[0]

    def _describe(self, volume: Volume) -> dict[str, Any]:
        return {
            "name": volume.name,
            "driver": volume.driver,
            "mountpoint": volume.mountpoint,
            "created_at": volume.created_at,
            **self.service.status(volume),
        }


def _line(event: Event) -> bytes:
    return json.dumps(event.as_dict(), sort_keys=True, default=str).encode() + b"\n"


def _only_driver(service: VolumeService) -> str:
    if len(service.drivers) == 1:
        return next(iter(service.drivers))
    raise InvalidOption(
        f"several drivers are configured ({', '.join(sorted(service.drivers))}): "
        "name one with --driver"
    )
