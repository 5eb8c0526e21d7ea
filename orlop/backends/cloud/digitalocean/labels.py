"""Orlop's logical labels as DigitalOcean tags, reversibly.

DigitalOcean tags are flat names of letters, digits, `:`, `-` and `_`, at most 255 long, and
an account-wide object a resource is tagged with. A label becomes `orlop:<key>:<value>` with
the value encoded: Docker-name characters by `naming.encode_value` (lower case, `_` escapes:
tags are matched without regard to case in places, so capitals must not carry meaning), any
other character as `:<hex>:`. A value too long for one tag is spread over `orlop:<key>:…`,
`orlop:<key>-1:…`, … (`naming.split_value`). User tags (the `tags` option) are kept as they
are and must not start with `orlop:`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from orlop.backends.cloud.naming import decode_value, encode_value, join_values, split_value

__all__ = [
    "NAME_MAX",
    "PREFIX",
    "TAG_MAX",
    "USER_TAG",
    "canonical_tags",
    "decode",
    "encode",
    "label_tags",
    "labels_of",
    "tags_of_key",
    "user_tags",
]

PREFIX = "orlop:"
NAME_MAX = 64  # a volume's or snapshot's name: lower case, digits, hyphens
TAG_MAX = 255
_DOCKER_CHAR = re.compile(r"[A-Za-z0-9_.-]")
USER_TAG = re.compile(r"[A-Za-z0-9_:-]{1,255}\Z")


def encode(value: str) -> str:
    """Any text as `[a-z0-9_:-]*`: Docker-name characters escaped, others as `:<hex>:`."""
    return "".join(
        encode_value(char) if _DOCKER_CHAR.match(char) else f":{ord(char):x}:" for char in value
    )


def decode(text: str) -> str:
    """The inverse of `encode`; ValueError for text it cannot have produced."""
    parts = text.split(":")
    if len(parts) % 2 == 0:
        raise ValueError(f"{text!r} is not an encoded label value")
    out = []
    for index, part in enumerate(parts):
        out.append(decode_value(part) if index % 2 == 0 else chr(int(part, 16)))
    return "".join(out)


def label_tags(labels: Mapping[str, str]) -> list[str]:
    """The tags that carry `labels` (logical keys, raw values)."""
    tags = []
    for key, value in labels.items():
        room = TAG_MAX - len(PREFIX) - len(key) - 6  # "-<n>:" of a continuation tag
        for part_key, part in split_value(encode(value), key, room).items():
            tags.append(f"{PREFIX}{part_key}:{part}")
    return tags


def labels_of(tags: Iterable[str]) -> dict[str, str]:
    """Logical labels from a resource's tags; tags that do not decode are skipped."""
    parts: dict[str, str] = {}
    for tag in tags:
        if tag.startswith(PREFIX):
            key, _, value = tag[len(PREFIX) :].partition(":")
            parts[key] = value
    labels = {}
    for key in parts:
        if "-" in key and key.rsplit("-", 1)[1].isdigit() and key.rsplit("-", 1)[0] in parts:
            continue  # a continuation, joined below
        joined = join_values(parts, key)
        if joined is None:
            continue
        try:
            labels[key] = decode(joined)
        except ValueError:
            continue
    return labels


def tags_of_key(tags: Iterable[str], key: str) -> list[str]:
    """The tags that carry label `key` (its first part and continuations)."""
    pattern = re.compile(rf"{re.escape(PREFIX + key)}(-\d+)?:")
    return [tag for tag in tags if pattern.match(tag)]


def user_tags(tags: Iterable[str]) -> list[str]:
    return sorted(tag for tag in tags if not tag.startswith(PREFIX))


def canonical_tags(value: str) -> str:
    """The `tags` option: comma-separated DigitalOcean tag names, sorted, without repeats."""
    names = sorted({name.strip() for name in value.split(",") if name.strip()})
    for name in names:
        if not USER_TAG.match(name):
            raise ValueError(
                f"{name!r} is not a DigitalOcean tag: use letters, digits, ':', '-' and '_', "
                "at most 255 characters"
            )
        if name.startswith(PREFIX):
            raise ValueError(f"tag {name!r}: tags starting with {PREFIX} are Orlop's own")
    return ",".join(names)
