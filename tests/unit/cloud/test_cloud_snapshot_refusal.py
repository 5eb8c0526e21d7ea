"""A cloud backend whose provider has no snapshot calls refuses every snapshot operation with
its kind's message, before it calls the cloud (`cloud/snapshots.py`), over the memory cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.cloud.backend import CloudBackend
from orlop.core.model import InvalidOption
from tests.support.cloud.memory import MemoryCloud, MemoryProvider
from tests.unit.cloud.test_layer_decisions import FAST

pytestmark = pytest.mark.unit


class MemoryBackend(CloudBackend):
    cloud_provider = MemoryProvider


def test_snapshots_are_refused_naming_the_kind_and_the_cloud_is_not_called(
    tmp_path: Path,
) -> None:
    cloud = MemoryCloud()
    context = BackendContext("mem", str(tmp_path), settings=FAST)
    disks = MemoryBackend.provider_class(  # type: ignore[call-arg]
        context, devices=cloud.devices("i-a"), cloud=cloud.provider("i-a")
    )
    backend = MemoryBackend(context, disks)
    before = len(cloud.calls)
    volume = VolumeRef("vol", {}, {"disk_id": "mem-1"})
    for call in (
        lambda: backend.create_snapshot(volume, "nightly"),
        lambda: backend.list_snapshots(None),
        lambda: backend.delete_snapshot("nightly"),
    ):
        with pytest.raises(InvalidOption, match="driver kind memory cannot take snapshots"):
            call()
    assert len(cloud.calls) == before
