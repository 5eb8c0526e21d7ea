"""The cloud-disk conformance suite: every cloud provider registers here (Flocker's factory idea).

Subclass `CloudDiskConformance` in the provider's test module, override the `testbed`
fixture with the provider's `CloudTestbed` (tests/support/cloud/testbed.py), and pytest
collects the whole suite for that cloud:

* the provider API itself against the test server: create, get, find by labels, labels set
  and removed, attach / detach with a real device appearing, resize, the IN_USE refusal;
* the backend conformance suite (tests/contracts/backend.py) through the real service;
* two hosts as two real `orlop serve` daemons with two instance identities: adopt a volume
  by name, refuse while it is held elsewhere naming the holder, take it with preempt=true
  from the second host as the README says, race to mount (exactly one wins, never two
  attachments), a volume deleted on the other host.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.backends import make_backend
from orlop.backends.base import Backend, BackendContext, VolumeRef
from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_TOKEN,
    LABEL_VOLUME,
    CloudError,
    CloudProvider,
    DiskSpec,
    ErrorKind,
)
from orlop.backends.cloud.backend import CloudBackend
from orlop.backends.cloud.layer import CloudDisks
from tests.contracts.backend import BackendConformance
from tests.contracts.keep import KeepOnRemoveConformance
from tests.support.cloud.deviceio import read_at, write_at
from tests.support.cloud.testbed import CloudHost, CloudTestbed
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.race import race

NAME = "Db.Main_2026-volume"  # capitals, dots, underscores: every cloud must keep it exact


def backend_for(host: CloudHost, **overrides: Any) -> CloudBackend:
    context = BackendContext(
        unique(host.kind), str(host.state_dir), settings={**host.settings, **overrides}
    )
    backend = make_backend(host.kind, context)
    assert isinstance(backend, CloudBackend)
    return backend


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class CloudDiskConformance(BackendConformance, KeepOnRemoveConformance):
    """Set `create_options`, `other_options` and `size_limit` as for BackendConformance."""

    @pytest.fixture
    def testbed(self) -> CloudTestbed:  # pragma: no cover - overridden
        raise NotImplementedError("a cloud conformance subclass provides the testbed fixture")

    # keep_on_remove (tests/contracts/keep.py) -------------------------------------------
    @pytest.fixture
    def new_host(self, testbed: CloudTestbed) -> Callable[[], Backend]:
        self.keep_options = {**testbed.create_options, "keep_on_remove": "true"}
        return lambda: backend_for(testbed.host())

    def still_stored(self, backend: Backend, volume: Any) -> bool:
        assert isinstance(backend, CloudBackend)
        disk_id = backend.provider.recorded_id(VolumeRef(volume.name, {}, volume.record))
        return disk_id is not None and backend.provider.get(disk_id) is not None

    def delete_kept(self, backend: Backend, volume: Any) -> None:
        assert isinstance(backend, CloudBackend)
        disks = backend.provider
        disk_id = disks.recorded_id(VolumeRef(volume.name, {}, volume.record))
        disk = disks.get(disk_id) if disk_id else None
        if disk is not None:
            disks.cloud.delete_disk(disk)

    @pytest.fixture
    def backend(self, testbed: CloudTestbed) -> Backend:
        return backend_for(testbed.host())

    # the provider API ------------------------------------------------------------------
    def test_provider_lifecycle_and_labels(self, testbed: CloudTestbed) -> None:
        host = testbed.host()
        disks = backend_for(host).provider
        cloud: CloudProvider = disks.cloud
        namespace = disks.settings.namespace
        options = disks.options.validate(testbed.create_options)
        token = uuid.uuid4().hex
        labels = {
            LABEL_MANAGED: "orlop",
            LABEL_NAMESPACE: namespace,
            LABEL_VOLUME: NAME,
            LABEL_TOKEN: token,
        }
        identity = cloud.identity()
        made = cloud.create_disk(DiskSpec(NAME, namespace, labels, token, options), identity)
        try:
            disk = wait_for(
                lambda: (d := cloud.get_disk(made.id)) and d.state == "ready" and d, "ready"
            )
            assert disk.volume == NAME and disk.labels[LABEL_TOKEN] == token
            assert disk.attachments == [] and disk.size >= 1
            found = cloud.find_disks(namespace, NAME)
            assert [d.id for d in found] == [made.id]
            assert [d.id for d in cloud.find_disks(namespace)] == [made.id]
            assert cloud.find_disks(namespace, NAME + "x") == []
            assert cloud.find_disks(unique("other-ns")) == []

            cloud.set_labels(disk, {LABEL_CLAIM: f"{identity.instance} abc"})
            assert cloud.get_disk(made.id).labels[LABEL_CLAIM] == f"{identity.instance} abc"  # type: ignore[union-attr]
            cloud.set_labels(disk, {LABEL_CLAIM: None})
            assert LABEL_CLAIM not in cloud.get_disk(made.id).labels  # type: ignore[union-attr]
            options_back = cloud.options_of(disk)
            assert int(options_back["size"]) == disk.size
        finally:
            with contextlib.suppress(Exception):
                cloud.delete_disk(made)
        wait_for(lambda: cloud.get_disk(made.id) is None, "the disk to go")
        cloud.delete_disk(made)  # already gone: not an error
        assert cloud.find_disks(namespace, NAME) == []

    def test_attach_detach_resize_through_the_layer(self, testbed: CloudTestbed) -> None:
        first, second = testbed.host(), testbed.host()
        disks = backend_for(first).provider
        volume = make_volume(disks, NAME, testbed.create_options)
        try:
            device = disks.attach_device(volume)
            assert os.path.realpath(device).startswith("/dev/")
            assert disks.device_path(volume) == device
            payload = os.urandom(4096)
            write_at(device, 1 << 20, payload)
            held = [d for d in testbed.cloud_disks(disks.settings.namespace) if d["volume"] == NAME]
            assert [d["attached_to"] for d in held] == [[first.instance]]
            assert disks.describe(volume)["attachment"]["instance"] == first.instance

            # The cloud itself, asked to attach it to a second instance, refuses or accepts:
            # a provider that says it refuses must name the holder.
            other = backend_for(second).provider
            if type(disks.cloud).refuses_second_attach:
                disk = other.cloud.get_disk(volume.record["disk_id"])
                assert disk is not None
                with pytest.raises(CloudError) as refused:
                    name = other.cloud.device_name(disk, other.identity())
                    other.cloud.attach_disk(disk, other.identity(), name)
                assert refused.value.kind is ErrorKind.IN_USE

            disks.detach_device(volume)
            assert disks.device_path(volume) is None
            disks.detach_device(volume)  # not attached: nothing to do

            # The next attachment, on the other host, sees the same bytes.
            ref = VolumeRef(NAME, volume.options, dict(volume.record))
            ref.record = other.create(ref)
            assert ref.record["disk_id"] == volume.record["disk_id"]  # adopted by name
            device_b = other.attach_device(ref)
            assert read_at(device_b, 1 << 20, len(payload)) == payload
            grown = other.grow(ref, testbed.grow_to)
            assert grown["size"] >= testbed.grow_to
            other.detach_device(ref)
        finally:
            with contextlib.suppress(Exception):
                disks.detach_device(volume)
            disks.remove(volume)
        assert [
            d for d in testbed.cloud_disks(disks.settings.namespace) if d["volume"] == NAME
        ] == []

    # two hosts, two daemons -------------------------------------------------------------
    @pytest.fixture
    def two_daemons(
        self, testbed: CloudTestbed
    ) -> Iterator[tuple[OrlopDaemon, OrlopDaemon, CloudHost, CloudHost, str]]:
        driver = unique(testbed.kind)
        hosts = (testbed.host(), testbed.host())
        started: list[OrlopDaemon] = []
        try:
            for host in hosts:
                config = host.driver_config()
                config["settings"] = {**config["settings"], "discover_interval": 0.5}
                started.append(OrlopDaemon({driver: config}).start())
            yield started[0], started[1], hosts[0], hosts[1], driver
        finally:
            for daemon in started:
                daemon.destroy()

    def test_two_hosts_adopt_refuse_preempt(
        self,
        testbed: CloudTestbed,
        two_daemons: tuple[OrlopDaemon, OrlopDaemon, CloudHost, CloudHost, str],
    ) -> None:
        daemon_a, daemon_b, host_a, host_b, driver = two_daemons
        a, b = daemon_a.client(driver), daemon_b.client(driver)
        a.ok("Create", Name=NAME, Opts=testbed.create_options)
        mountpoint = a.ok("Mount", Name=NAME, ID="c-a")["Mountpoint"]
        Path(mountpoint, "hello").write_text("from host A")

        # B lists the volume no one created there: the cloud's labels say it exists.
        wait_for(lambda: any(v["Name"] == NAME for v in b.ok("List")["Volumes"]), "discovery")
        refused = b.call("Mount", Name=NAME, ID="c-b")
        assert "Err" in refused and host_a.instance in refused["Err"], refused
        assert self._holders(testbed, host_a, NAME) == [host_a.instance]

        # The README's way: create it on B with preempt=true, then mount there.
        b.ok("Create", Name=NAME, Opts={"preempt": "true"})
        taken = b.ok("Mount", Name=NAME, ID="c-b2")["Mountpoint"]
        assert Path(taken, "hello").read_text() == "from host A"
        assert self._holders(testbed, host_a, NAME) == [host_b.instance]
        b.ok("Unmount", Name=NAME, ID="c-b2")
        a.ok("Unmount", Name=NAME, ID="c-a")  # its disk was taken: the unmount still ends

        a.ok("Remove", Name=NAME)
        assert self._holders(testbed, host_a, NAME) is None

    def test_two_hosts_racing_one_wins(
        self,
        testbed: CloudTestbed,
        two_daemons: tuple[OrlopDaemon, OrlopDaemon, CloudHost, CloudHost, str],
    ) -> None:
        daemon_a, daemon_b, host_a, host_b, driver = two_daemons
        clients = [daemon_a.client(driver), daemon_b.client(driver)]
        clients[0].ok("Create", Name="contended", Opts=testbed.create_options)
        clients[1].ok("Create", Name="contended")
        results = race(
            *(lambda i=i: clients[i].call("Mount", Name="contended", ID=f"c{i}") for i in (0, 1))
        )
        won = [i for i, r in enumerate(results) if isinstance(r, dict) and not r.get("Err")]
        lost = [i for i, r in enumerate(results) if isinstance(r, dict) and r.get("Err")]
        assert len(won) == 1 and len(lost) == 1, results
        winner = (host_a, host_b)[won[0]]
        assert winner.instance in results[lost[0]]["Err"]
        assert self._holders(testbed, host_a, "contended") == [winner.instance]
        clients[won[0]].ok("Unmount", Name="contended", ID=f"c{won[0]}")
        clients[won[0]].ok("Remove", Name="contended")

    def test_volume_deleted_on_the_other_host(
        self,
        testbed: CloudTestbed,
        two_daemons: tuple[OrlopDaemon, OrlopDaemon, CloudHost, CloudHost, str],
    ) -> None:
        daemon_a, daemon_b, _host_a, _host_b, driver = two_daemons
        a, b = daemon_a.client(driver), daemon_b.client(driver)
        a.ok("Create", Name="fleeting", Opts=testbed.create_options)
        b.ok("Create", Name="fleeting")  # adopted by name
        b.ok("Remove", Name="fleeting")  # deleted in the cloud by B
        answer = a.call("Mount", Name="fleeting", ID="c1")
        assert "no longer exists" in answer["Err"], answer
        a.ok("Remove", Name="fleeting")  # A can still forget it

    # Where the provider has labels another host reads (all but PowerFlex): docs/fencing.md.
    shared_fence = True

    def test_a_host_restarted_with_old_state_stays_fenced(
        self, testbed: CloudTestbed, request: pytest.FixtureRequest
    ) -> None:
        """A dies holding the volume; B preempts it and unmounts, so the cloud shows it free;
        A's recovery, with its old state, must not mount it again, and says who has it."""
        if not self.shared_fence:
            pytest.skip("no labels another host reads: the fence is not shared (fencing.md)")
        daemon_a, daemon_b, host_a, host_b, driver = request.getfixturevalue("two_daemons")
        a, b = daemon_a.client(driver), daemon_b.client(driver)
        a.ok("Create", Name=NAME, Opts=testbed.create_options)
        where_a = a.ok("Mount", Name=NAME, ID="c-a")["Mountpoint"]
        assert self._fence(host_a) == f"1 {host_a.instance}"  # the creator's, unchanged
        daemon_a.kill()
        b.ok("Create", Name=NAME, Opts={"preempt": "true"})
        b.ok("Mount", Name=NAME, ID="c-b")
        assert self._fence(host_b) == f"2 {host_b.instance}"  # bumped by the preempt
        b.ok("Unmount", Name=NAME, ID="c-b")
        assert self._holders(testbed, host_a, NAME) == []
        os.sync()  # one kernel plays both hosts: B's writes share A's leftover superblock

        daemon_a.start()
        a = daemon_a.client(driver)
        wait_for(lambda: a.ok("Get", Name=NAME)["Volume"]["Status"]["mounts"] == 0, "recovery")
        fault = a.ok("Get", Name=NAME)["Volume"]["Status"]["fault"]
        assert f"{host_b.instance} (fence generation 2)" in fault, fault
        assert not os.path.ismount(where_a)
        assert self._holders(testbed, host_a, NAME) == []  # nothing was taken back
        a.ok("Remove", Name=NAME)

    def _fence(self, host: CloudHost) -> str | None:
        backend = backend_for(host)
        try:
            [disk] = backend.provider.find(NAME)
            return disk.labels.get("fence")
        finally:
            backend.close()

    def _holders(self, testbed: CloudTestbed, host: CloudHost, name: str) -> list[str] | None:
        namespace = host.settings.get("namespace", "default")
        found = [d for d in testbed.cloud_disks(namespace) if d["volume"] == name]
        return list(found[0]["attached_to"]) if found else None


def make_volume(disks: CloudDisks, name: str, options: dict[str, str]) -> VolumeRef:
    canonical = disks.options.validate(options)
    disks.validate(name, canonical)
    ref = VolumeRef(name, canonical)
    ref.record = disks.create(ref)
    return ref
