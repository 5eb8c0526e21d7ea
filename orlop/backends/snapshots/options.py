"""Volume options for local snapshots: where a new volume's data comes from."""

from __future__ import annotations

import re
from collections.abc import Callable

from orlop.core.model import InvalidName, InvalidOption, validate_name
from orlop.core.options import Option
from orlop.core.schedule import canonical_schedule


def _canonical_name(what: str) -> Callable[[str], str]:
    def canonical(value: str) -> str:
        try:
            return validate_name(value, what)
        except InvalidName as error:
            raise ValueError(str(error)) from None

    return canonical


def _canonical_backup(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", value):
        raise ValueError(f"{value!r} is not a backup ID: `orlop backup ls` lists them")
    return value


CLONE_OPTIONS = [
    Option("from_snapshot", _canonical_name("snapshot name"), "start as a copy of this snapshot"),
    Option("from_volume", _canonical_name("volume name"), "start as a clone of this volume"),
    Option("from_backup", _canonical_backup, "start with the files of this backup (restic ID)"),
    Option("snapshot_schedule", canonical_schedule, "e.g. hourly:24,daily:7 (period:keep)"),
]
FROM_OPTIONS = ("from_snapshot", "from_volume", "from_backup")


def check_clone_options(name: str, options: dict[str, str]) -> None:
    given = [key for key in FROM_OPTIONS if key in options]
    if len(given) > 1:
        raise InvalidOption(f"give one of from_snapshot, from_volume, from_backup, not {given}")
    if options.get("from_volume") == name:
        raise InvalidOption(f"volume {name} cannot be a clone of itself (from_volume={name})")
