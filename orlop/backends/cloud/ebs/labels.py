"""Orlop's logical labels as EC2 tags `orlop:<label>`, values as they are (an EC2 tag value
holds any Docker name whole), and the `Name` tag the console shows; the tag filters that find
a namespace's volumes and snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orlop.backends.cloud.api import LABEL_NAMESPACE, LABEL_SNAPSHOT, LABEL_VOLUME

TAG_PREFIX = "orlop:"


def tags_of(labels: Mapping[str, str], name: str) -> list[dict[str, str]]:
    """The tags of a new volume or snapshot: its labels and its `Name`."""
    tags = [{"Key": TAG_PREFIX + key, "Value": value} for key, value in labels.items()]
    tags.append({"Key": "Name", "Value": name})
    return tags


def tag_changes(
    labels: Mapping[str, str | None],
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(tags to put, tags to delete) for a change of labels; None drops a label."""
    put = [{"Key": TAG_PREFIX + k, "Value": v} for k, v in labels.items() if v is not None]
    drop = [{"Key": TAG_PREFIX + k} for k, v in labels.items() if v is None]
    return put, drop


def tag_filters(
    namespace: str, volume: str | None = None, snapshot: str | None = None
) -> list[dict[str, Any]]:
    """DescribeVolumes/DescribeSnapshots filters: the namespace's, of one volume, one name."""
    filters = [{"Name": f"tag:{TAG_PREFIX}{LABEL_NAMESPACE}", "Values": [namespace]}]
    if volume is not None:
        filters.append({"Name": f"tag:{TAG_PREFIX}{LABEL_VOLUME}", "Values": [volume]})
    if snapshot is not None:
        filters.append({"Name": f"tag:{TAG_PREFIX}{LABEL_SNAPSHOT}", "Values": [snapshot]})
    return filters


def labels_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """Orlop's labels on a volume or snapshot EC2 described."""
    return {
        t["Key"][len(TAG_PREFIX) :]: t["Value"]
        for t in resource.get("Tags", [])
        if t["Key"].startswith(TAG_PREFIX)
    }
