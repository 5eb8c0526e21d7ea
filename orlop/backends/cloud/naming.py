"""Docker volume names in the shapes clouds allow, the real name always recoverable.

Docker names match `[a-zA-Z0-9][a-zA-Z0-9_.-]*` and may be 255 characters long; clouds are
stricter (GCE names and label values: lower case, digits, hyphens, at most 63). Two tools:

* `disk_name` gives a readable, unique, cloud-valid *name* for a new disk — a slug of the
  volume name plus a short hash of (namespace, name). It is not decoded: labels carry the
  real name.
* `encode_value` / `decode_value` turn any Docker name into lower-case letters, digits,
  hyphens and underscores, and back, exactly (an escape code: `_` + lower-case letter for
  a capital, `__` for `_`, `_-` for `.`). `split_value` / `join_values` spread a long
  encoded value over several labels of a cloud's maximum length.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_ESCAPES = {"_": "__", ".": "_-"}
_UNESCAPES = {"_": "_", "-": "."}


def encode_value(name: str) -> str:
    """A Docker name as `[a-z0-9_-]*`, reversibly: "Db.Main_1" → "_db_-_main__1"."""
    out = []
    for char in name:
        if "A" <= char <= "Z":
            out.append("_" + char.lower())
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)


def decode_value(encoded: str) -> str:
    """The inverse of `encode_value`; ValueError for text it cannot have produced."""
    out = []
    chars = iter(encoded)
    for char in chars:
        if char != "_":
            out.append(char)
            continue
        following = next(chars, "")
        if "a" <= following <= "z":
            out.append(following.upper())
        elif following in _UNESCAPES:
            out.append(_UNESCAPES[following])
        else:
            raise ValueError(f"{encoded!r} is not an encoded volume name")
    return "".join(out)


def split_value(value: str, key: str, max_length: int) -> dict[str, str]:
    """`value` as labels `key`, `key-1`, `key-2`, … of at most `max_length` characters."""
    parts = [value[i : i + max_length] for i in range(0, len(value), max_length)] or [""]
    return {(key if i == 0 else f"{key}-{i}"): part for i, part in enumerate(parts)}


def join_values(labels: Mapping[str, str], key: str) -> str | None:
    """The value that `split_value` spread over `key`, `key-1`, …; None if `key` is absent."""
    if key not in labels:
        return None
    parts = [labels[key]]
    index = 1
    while f"{key}-{index}" in labels:
        parts.append(labels[f"{key}-{index}"])
        index += 1
    return "".join(parts)


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def disk_name(
    namespace: str,
    volume: str,
    max_length: int = 63,
    prefix: str = "orlop-",
    allowed: str = "a-z0-9-",
) -> str:
    """A cloud-valid name for a new disk of `volume`: `orlop-<slug>-<hash>`, where the slug
    keeps as much of the volume name as fits, lower-cased, other characters made hyphens.
    Starts with a letter, ends with a letter or digit, unique per (namespace, volume)."""
    suffix = "-" + short_hash(namespace, volume)
    room = max_length - len(prefix) - len(suffix)
    slug = re.sub(f"[^{allowed}]+", "-", volume.lower()).strip("-")[: max(room, 0)].strip("-")
    return f"{prefix}{slug}{suffix}" if slug else f"{prefix.rstrip('-')}{suffix}"
