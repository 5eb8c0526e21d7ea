"""vsphere volumes through the cloud-disk layer and the block layer, against vcsim: the shared
cloud-disk conformance suite (two VMs as two hosts), read-only access, bad input."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from orlop.backends.base import VolumeRef
from tests.contracts.cloud import CloudDiskConformance, backend_for
from tests.servers.vsphere.vcsim import MIB, Vcsim, VsphereTestbed

pytest_plugins = ["tests.servers.vsphere.fixtures"]


class TestVsphereConformance(CloudDiskConformance):
    create_options = {"size": "64M"}
    other_options = {"size": "128M"}
    size_limit = 64 * MIB

    @pytest.fixture
    def testbed(self, vsphere_testbed: VsphereTestbed) -> VsphereTestbed:
        return vsphere_testbed


def test_read_only_access_mounts_read_only(vsphere_testbed: VsphereTestbed) -> None:
    backend = backend_for(vsphere_testbed.host())
    writable = VolumeRef("rw", backend.options.validate({"size": "64M"}))
    writable.record = backend.create(writable)
    target = backend.attach(writable)
    Path(target, "f").write_text("kept")
    backend.detach(writable)
    # The same disk, adopted with access=read-only (as another host would): every mount is ro.
    reader = VolumeRef("rw", {**writable.options, "access": "read-only"}, writable.record)
    target = backend.attach(reader)
    try:
        assert Path(target, "f").read_text() == "kept"
        with pytest.raises(OSError) as refused:
            Path(target, "g").write_text("no")
        assert refused.value.errno == errno.EROFS
    finally:
        backend.detach(reader)
        backend.remove(reader)


@pytest.mark.parametrize(
    ("settings", "options", "message"),
    [
        ({}, {"datastore": "nosuch"}, "datastore nosuch does not exist"),
        ({}, {"size": "60T"}, "does not fit datastore LocalDS_0"),
        ({"vm_uuid": "00000000-1111-2222-3333-444444444444"}, {}, "no VM with UUID 00000000"),
        ({"password_file": "/nonexistent"}, {}, "cannot read the vSphere password_file"),
    ],
)
def test_bad_input_through_the_backend_leaves_nothing(
    vcsim: Vcsim,
    vsphere_testbed: VsphereTestbed,
    settings: dict[str, str],
    options: dict[str, str],
    message: str,
) -> None:
    backend = backend_for(vsphere_testbed.host(present=False), **settings)
    volume = VolumeRef("bad", backend.options.validate({"size": "64M", **options}))
    started = time.monotonic()
    with pytest.raises(Exception, match=message):
        backend.validate("bad", volume.options)
        backend.create(volume)
    assert time.monotonic() - started < 20
    assert vcsim.files(vsphere_testbed.namespace) == []
