"""GCE volumes through the real service and block layer: format, mount, online resize,
snapshots, bad input leaving nothing, against the Compute v1 test server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends import make_backend
from orlop.backends.base import BackendContext
from orlop.core.model import InvalidOption, NotFound
from tests.servers.gce.testbed import GIB, GceTestbed
from tests.support.harness import Harness
from tests.support.names import unique

pytest_plugins = ["tests.servers.gce.fixtures"]


@pytest.fixture
def harness(gce: GceTestbed, tmp_path: Path) -> Iterator[Harness]:
    host = gce.host()
    context = BackendContext(unique("gce"), str(host.state_dir), settings=host.settings)
    made = Harness(make_backend("gce", context), context.driver, str(tmp_path / "state.db"))
    try:
        yield made
    finally:
        for volume in made.service.list(made.driver):
            for mount_id in list(volume.mount_ids):
                with contextlib.suppress(Exception):
                    made.unmount(volume.name, mount_id)
        made.close()


def test_mount_resize_online_and_snapshots(gce: GceTestbed, harness: Harness) -> None:
    volume = harness.create("Db.Main", size="10G", type="pd-ssd")
    assert volume.record["type"] == "pd-ssd" and volume.record["size"] == 10 * GIB
    path = harness.mount("Db.Main", "c1")
    Path(path, "f").write_text("kept")
    before = os.statvfs(path)
    harness.unmount("Db.Main", "c1")
    # Grown while unmounted (online growth needs CAP_SYS_RESOURCE, which CI may lack): the
    # disk grows now, its filesystem at the next mount.
    grown = harness.run(harness.service.resize(harness.driver, "Db.Main", 20 * GIB))
    assert grown.record["size"] == 20 * GIB
    [disk] = [d for d in gce.cloud_disks(gce.namespace) if d["volume"] == "Db.Main"]
    zone, name = disk["id"].split("/")
    assert gce.server.disks[(zone, name)]["sizeGb"] == "20"
    path = harness.mount("Db.Main", "c1")
    after = os.statvfs(path)
    assert after.f_blocks * after.f_frsize > 1.8 * before.f_blocks * before.f_frsize
    assert Path(path, "f").read_text() == "kept"

    made = harness.run(harness.service.create_snapshot(harness.driver, "Db.Main", "Before.1"))
    assert made["name"] == "Before.1" and made["id"].startswith("global/snapshots/orlop-snap-")
    listed = harness.run(harness.service.list_snapshots(harness.driver, "Db.Main"))
    assert [s["name"] for s in listed] == ["Before.1"]
    harness.unmount("Db.Main", "c1")
    copy = harness.create("copy", from_snapshot="Before.1")
    assert copy.record["size"] == 20 * GIB
    restored = harness.mount("copy", "c2")  # the snapshot's filesystem, not a fresh one
    assert Path(restored, "f").read_text() == "kept"
    harness.unmount("copy", "c2")
    harness.remove("copy")
    harness.run(harness.service.delete_snapshot(harness.driver, "Before.1"))
    harness.remove("Db.Main")
    assert gce.cloud_disks(gce.namespace) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"type": "pd-fast"}, InvalidOption, "use one of pd-balanced"),
        ({"size": "5G"}, InvalidOption, "10 to 65536 GiB"),
        ({"provisioned_iops": "3000"}, InvalidOption, "takes no provisioned_iops"),
        ({"zone": "us-central1-z"}, InvalidOption, "zone us-central1-z does not exist"),
        ({"from_snapshot": "nothing-here"}, NotFound, "nothing-here"),
    ],
)
def test_bad_input_leaves_nothing(
    gce: GceTestbed, harness: Harness, options: dict[str, str], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        harness.create("bad", **options)
    assert harness.names() == [] and gce.cloud_disks(gce.namespace) == []
