"""Volumes, their states, and the errors users see."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def rfc3339(moment: datetime.datetime | float | None = None) -> str:
    """`moment` (a datetime, or seconds since the epoch; default now) as RFC 3339 in UTC to the
    second: `2026-12-07T12:00:00Z`, the one form every timestamp Orlop shows or stores takes.
    A naive datetime is taken as UTC."""
    if moment is None:
        moment = datetime.datetime.now(datetime.UTC)
    elif not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrlopError(Exception):
    """Base of every error Orlop reports to a user; the message is written for them."""


class InvalidName(OrlopError):
    """A volume name that breaks the naming rule."""


class InvalidOption(OrlopError):
    """An unknown option, or an option with a value outside what is allowed."""


class NotFound(OrlopError):
    """No such volume, driver or snapshot."""


class Conflict(OrlopError):
    """The request contradicts existing state (different options, volume in use, …)."""


class VolumeLost(Conflict):
    """The volume's storage is held by another host now (it was preempted, or taken while this
    host was down): the backend has dropped what this host still had mounted of it, so the
    mounts recorded here are gone."""


class HeldElsewhere(Conflict):
    """The volume's storage is attached to another host now, and this host did not take it
    (no preemption): a caller that knows the holder is letting go (an orchestrator moving
    the workload) may wait and try again. `holder` names it, as the message does."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class BackendError(OrlopError):
    """The storage failed to do what was asked."""


class ConfigError(OrlopError):
    """The configuration file or environment is invalid."""


class StateFull(OrlopError):
    """The disk of Orlop's state directory is full: nothing was recorded or changed."""


NAME_RULE = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
MAX_NAME_LENGTH = 255


def validate_name(name: object, what: str = "volume name") -> str:
    """Return `name` if it is a safe volume name, else raise InvalidName saying the rule."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} is empty: it must match {NAME_RULE}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"{what} is {len(name)} characters long: at most {MAX_NAME_LENGTH} are allowed"
        )
    if not _NAME_RE.match(name):
        raise InvalidName(
            f"invalid {what} {name!r}: it must match {NAME_RULE} "
            "(ASCII letters, digits, '_', '.', '-'; starting with a letter or digit)"
        )
    return name


class State(StrEnum):
    """Where a volume is in its lifecycle; every transition is recorded before it happens."""

    CREATING = "creating"
    READY = "ready"
    ATTACHING = "attaching"
    ATTACHED = "attached"
    DETACHING = "detaching"
    REMOVING = "removing"
    TRASHED = "trashed"  # removed into the trash: storage kept until purged (core.trash)


@dataclass(slots=True)
class Usage:
    """Capacity of a volume in bytes; `size` and `free` are None when unbounded. Inodes the
    same way, where the backend can tell (a filesystem it can statvfs): None otherwise."""

    used: int
    size: int | None = None
    free: int | None = None
    inodes: int | None = None
    inodes_used: int | None = None
    inodes_free: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        shown = {"size": self.size, "used": self.used, "free": self.free}
        if self.inodes_used is not None or self.inodes_free is not None:
            shown |= {
                "inodes": self.inodes,
                "inodes_used": self.inodes_used,
                "inodes_free": self.inodes_free,
            }
        return shown


@dataclass(slots=True)
class Volume:
    """One volume as the store knows it."""

    driver: str
    name: str
    backend: str
    options: dict[str, str]
    record: dict[str, Any]
    created_at: str
    state: State = State.READY
    mount_ids: set[str] = field(default_factory=set)
    mountpoint: str = ""
    fault: str = ""
    usage: Usage | None = None

    @property
    def mounts(self) -> int:
        return len(self.mount_ids)
