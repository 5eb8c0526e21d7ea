"""Orlop's logical labels as Cinder metadata keys `orlop-<label>` with raw values (Cinder
metadata is free text, 255 characters per key and value: a Docker name fits whole)."""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "orlop-"  # Cinder metadata keys Orlop owns: orlop-<logical label>


def encode(labels: Mapping[str, str]) -> dict[str, str]:
    return {PREFIX + key: value for key, value in labels.items()}


def decode(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k[len(PREFIX) :]: v for k, v in metadata.items() if k.startswith(PREFIX)}


def matches(metadata: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    return all((metadata or {}).get(k) == v for k, v in wanted.items())
