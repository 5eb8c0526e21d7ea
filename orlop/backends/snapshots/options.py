"""Volume options for local snapshots: where a new volume's data comes from."""

from __future__ import annotations

from collections.abc import Callable

from orlop.core.model import InvalidName, InvalidOption, validate_name
from orlop.core.options import Option


def _canonical_name(what: str) -> Callable[[str], str]:
    def canonical(value: str) -> str:
        try:
            return validate_name(value, what)
        except InvalidName as error:
            raise ValueError(str(error)) from None

    return canonical


CLONE_OPTIONS = [
    Option("from_snapshot", _canonical_name("snapshot name"), "start as a copy of this snapshot"),
    Option("from_volume", _canonical_name("volume name"), "start as a clone of this volume"),
]


def check_clone_options(name: str, options: dict[str, str]) -> None:
    if "from_snapshot" in options and "from_volume" in options:
        raise InvalidOption("give from_snapshot or from_volume, not both")
    if options.get("from_volume") == name:
        raise InvalidOption(f"volume {name} cannot be a clone of itself (from_volume={name})")
