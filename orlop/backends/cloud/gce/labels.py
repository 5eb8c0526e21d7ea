"""Orlop's logical labels as Compute Engine labels, and back.

GCE label keys match `[a-z][a-z0-9_-]{0,62}` and values `[a-z0-9_-]{0,63}`. Keys are the
logical key with the `orlop-` prefix; values are `naming.encode_value` of the raw value
(reversible: capitals and dots survive), spread over `key`, `key-1`, … when longer than 63.
Characters a Docker name cannot hold (the space in a claim "<instance> <nonce>") are
escaped further as `_0` and four hex digits, an escape `naming` leaves unused.
A resource may carry 64 labels: a 255-character volume name needs at most 9.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from orlop.backends.cloud import naming
from orlop.core.model import InvalidOption

PREFIX = "orlop-"
MAX_VALUE = 63
_DOCKER = re.compile(r"[a-zA-Z0-9_.-]\Z")
_CONTINUATION = re.compile(r"(.+)-[0-9]+\Z")


def encode_value(value: str) -> str:
    out = []
    for char in value:
        if _DOCKER.match(char):
            out.append(naming.encode_value(char))
        elif ord(char) < 0x10000:
            out.append(f"_0{ord(char):04x}")
        else:
            raise InvalidOption(f"{value!r} cannot be stored in a Compute Engine label")
    return "".join(out)


def decode_value(encoded: str) -> str:
    """The inverse of `encode_value`; ValueError for text it cannot have produced."""
    out, index = [], 0
    while index < len(encoded):
        if encoded.startswith("_0", index):
            code = encoded[index + 2 : index + 6]
            if not re.fullmatch(r"[0-9a-f]{4}", code):
                raise ValueError(f"{encoded!r} is not an encoded label value")
            out.append(chr(int(code, 16)))
            index += 6
        else:  # one character, or one of naming's two-character escapes
            step = 2 if encoded[index] == "_" else 1
            out.append(naming.decode_value(encoded[index : index + step]))
            index += step
    return "".join(out)


def encode(logical: Mapping[str, str]) -> dict[str, str]:
    """Logical labels (raw values) as GCE labels."""
    labels: dict[str, str] = {}
    for key, value in logical.items():
        labels.update(naming.split_value(encode_value(value), PREFIX + key, MAX_VALUE))
    return labels


def keys_of(labels: Mapping[str, str], logical_key: str) -> list[str]:
    """The GCE label keys that carry `logical_key` (the key and its continuations)."""
    base = PREFIX + logical_key
    found = [base] if base in labels else []
    index = 1
    while f"{base}-{index}" in labels:
        found.append(f"{base}-{index}")
        index += 1
    return found


def decode(labels: Mapping[str, str]) -> dict[str, str]:
    """Orlop's logical labels from a resource's GCE labels; others and undecodable ones are
    left out."""
    logical: dict[str, str] = {}
    for key in labels:
        if not key.startswith(PREFIX):
            continue
        continued = _CONTINUATION.match(key)
        if continued and continued.group(1) in labels:
            continue  # a continuation of another key, joined below
        joined = naming.join_values(labels, key)
        try:
            logical[key[len(PREFIX) :]] = decode_value(joined or "")
        except ValueError:
            continue
    return logical


def merged(current: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """`current` GCE labels with logical `changes` applied (None removes a label)."""
    result = dict(current)
    for key, value in changes.items():
        for old in keys_of(result, key):
            del result[old]
        if value is not None:
            result.update(encode({key: value}))
    return result


def filter_for(logical: Mapping[str, str]) -> str:
    """A list filter matching resources whose labels start with these logical values (the
    first 63 encoded characters: callers compare the decoded labels exactly)."""
    terms = []
    for key, value in logical.items():
        first = encode_value(value)[:MAX_VALUE]
        terms.append(f'(labels.{PREFIX}{key} = "{first}")')
    return " AND ".join(terms)
