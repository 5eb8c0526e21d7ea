"""Option checks every FUSE and share driver uses: a file on this host, a timeout."""

from __future__ import annotations

import os
from collections.abc import Callable

from orlop.backends.base import VolumeRef

DEFAULT_TIMEOUT = 20.0


def parse_timeout(value: str) -> str:
    """Seconds, 1 to 3600 (a whole or decimal number)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds: use e.g. 20 or 2.5") from None
    if not 1 <= seconds <= 3600:
        raise ValueError(f"{value!r} is out of range: use 1 to 3600 seconds")
    return f"{seconds:g}"


def timeout_of(volume: VolumeRef) -> float:
    """The volume's `timeout` option (seconds to connect and mount), or the default."""
    return float(volume.options.get("timeout", DEFAULT_TIMEOUT))


def existing_file(what: str) -> Callable[[str], str]:
    """A canonicaliser for options that name a file on this host (a key, a password)."""

    def check(value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError(f"{value!r} must be an absolute path to the {what}")
        if not os.path.isfile(value) or not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} is not a readable file (the {what})")
        return value

    return check
