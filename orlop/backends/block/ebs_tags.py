"""The tags that mark EBS volumes and snapshots as Orlop's, and readers for EC2 answers."""

from __future__ import annotations

from typing import Any

TAG_MANAGED = "orlop:managed-by"
TAG_NAMESPACE = "orlop:namespace"  # hosts sharing volumes share a namespace
TAG_VOLUME = "orlop:volume"  # the Docker volume name
TAG_TOKEN = "orlop:create-token"  # finds a volume whose create was interrupted
TAG_CLAIM = "orlop:claim"  # "<instance> <nonce>": settles two hosts attaching at once
TAG_SNAPSHOT = "orlop:snapshot"  # a snapshot's name
VOLUME_TAGS = (TAG_MANAGED, TAG_NAMESPACE, TAG_VOLUME, TAG_TOKEN, TAG_CLAIM)


def tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def active_attachments(volume: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in volume.get("Attachments", []) if a.get("State") != "detached"]
