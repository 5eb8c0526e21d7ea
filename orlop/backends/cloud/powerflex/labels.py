"""PowerFlex volume names that say which Orlop volume a PowerFlex volume is.

PowerFlex volumes have no labels, tags or description: the name (at most 31 characters of
letters, digits, `_`, `-` and `.`, case kept) is all that another host can read. Docker
volume names use exactly those characters, so a name that fits is kept *as it is*:

    o<ns>-<docker name>          a volume       (<ns>: 4 hex digits of the namespace's hash)
    s<ns>-<snapshot name>        an Orlop snapshot

Six characters of prefix leave 25 for the name, which covers almost every Docker volume
name; another host reads the name straight back. A longer name becomes

    o<ns>_<first 15 characters>.<9 hex digits of hash(namespace, name)>

which a host finds when it is asked for that name (it computes the same string), but which
cannot be read back: such a volume is mounted by name on another host but not *listed*
there until that host has been asked for it once (the README says so). Orlop's other labels
(the create token, a claim) matter only to the host that set them and live in a small file
in the provider's state directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

__all__ = ["NAME_MAX", "VALID", "KeptLabels", "decode", "encode", "kept_name", "namespace_tag"]

NAME_MAX = 31
_DIRECT_MAX = NAME_MAX - 6
VALID = re.compile(r"[A-Za-z0-9_.-]{1,31}\Z")


def _hash(*parts: str, length: int) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def namespace_tag(namespace: str) -> str:
    return _hash("orlop-namespace", namespace, length=4)


def encode(kind: str, namespace: str, name: str) -> str:
    """The PowerFlex name of Orlop volume (`kind` "o") or snapshot ("s") `name`."""
    prefix = f"{kind}{namespace_tag(namespace)}"
    if len(name) <= _DIRECT_MAX:
        return f"{prefix}-{name}"
    return f"{prefix}_{name[:15]}.{_hash(namespace, kind, name, length=9)}"


def decode(kind: str, namespace: str, pf_name: str) -> tuple[bool, str | None]:
    """(whether `pf_name` is one of this namespace's `kind` names, the name if readable)."""
    prefix = f"{kind}{namespace_tag(namespace)}"
    if not pf_name.startswith(prefix) or len(pf_name) <= len(prefix):
        return False, None
    marker, rest = pf_name[len(prefix)], pf_name[len(prefix) + 1 :]
    if marker == "-" and rest:
        return True, rest
    if marker == "_" and re.fullmatch(r".{1,15}\.[0-9a-f]{9}", rest):
        return True, None
    return False, None


def kept_name(volume_id: str) -> str:
    """The name of a volume kept on remove (keep_on_remove): no longer Orlop's."""
    return f"kept-{volume_id}"[:NAME_MAX]


class KeptLabels:
    """The labels a name cannot hold (this host's own: create token, claim), by PowerFlex
    volume name, in one fsynced JSON file in the provider's state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def every(self) -> dict[str, dict[str, str]]:
        try:
            loaded: dict[str, dict[str, str]] = json.loads(self.path.read_text())
            return loaded
        except (OSError, ValueError):
            return {}

    def keep(self, name: str, labels: Mapping[str, str | None] | None) -> None:
        """Set the labels kept for volume `name` (None or empty: forget them)."""
        with self._lock:
            every = self.every()
            if labels:
                every[name] = {k: v for k, v in labels.items() if v is not None}
            else:
                every.pop(name, None)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_suffix(".tmp")
            with open(temp, "w", encoding="utf-8") as file:
                json.dump(every, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
