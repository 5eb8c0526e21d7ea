"""An adopted volume follows its name when the disk it recorded is gone and one disk of that
name exists: another host undid a create this host had listed already, and made it again.
Found by the chaos run on PowerFlex (seed 20261207): host1 adopted the first disk, host0
deleted it (its create's answer was lost) and made a second, and every Mount on host1 said
"no longer exists in the cloud; remove the volume from Orlop"."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import VolumeRef
from orlop.core.model import BackendError
from tests.support.cloud.memory import MemoryCloud
from tests.unit.cloud.test_lost_mount import backend_on

pytestmark = pytest.mark.unit


def test_an_adopted_record_follows_the_disk_made_again(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, _ = backend_on(cloud, "i-a", tmp_path)
    b, _ = backend_on(cloud, "i-b", tmp_path)
    first = a.provider.create(VolumeRef("vol", {}))
    [(name, options, record)] = b.list_volumes()  # b adopts the first disk
    a.provider.remove(VolumeRef("vol", {}, first))  # a undoes its create …
    again = a.provider.create(VolumeRef("vol", {}))  # … and makes it again
    assert again["disk_id"] != first["disk_id"]
    adopted = VolumeRef(name, options, record)
    b.provider.attach_device(adopted)
    assert adopted.record["disk_id"] == again["disk_id"] and adopted.record["adopted"]
    assert [x.instance for x in cloud.disks[again["disk_id"]].attachments] == ["i-b"]


def test_a_record_of_this_host_whose_disk_is_gone_is_still_an_error(tmp_path: Path) -> None:
    cloud = MemoryCloud()
    a, _ = backend_on(cloud, "i-a", tmp_path)
    mine = a.provider.create(VolumeRef("vol", {}))
    a.provider.remove(VolumeRef("vol", {}, dict(mine)))
    a.provider.create(VolumeRef("vol", {}))
    with pytest.raises(BackendError, match="no longer exists in the cloud"):
        a.provider.attach_device(VolumeRef("vol", {}, mine))
