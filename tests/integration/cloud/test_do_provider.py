"""The DigitalOcean provider against the fake API (`tests/servers/digitalocean/server.py`),
through the unpatched pydo client, with real loop devices where the droplet would see the
volumes. Provider level: each call, each error kind, bad input with nothing created."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orlop.backends.cloud.api import (
    LABEL_CLAIM,
    LABEL_MANAGED,
    LABEL_NAMESPACE,
    LABEL_TOKEN,
    LABEL_VOLUME,
    CloudError,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
)
from orlop.backends.cloud.digitalocean.labels import label_tags
from orlop.backends.cloud.digitalocean.provider import DigitalOceanProvider
from orlop.core.model import ConfigError, InvalidOption
from tests.servers.digitalocean.server import DoServer, Volume
from tests.servers.digitalocean.testbed import DoHost

pytest_plugins = ["tests.servers.digitalocean.fixtures"]

GIB = 1024**3
MakeHost = Callable[..., DoHost]


def spec(provider: DigitalOceanProvider, volume: str, namespace: str, **options: str) -> DiskSpec:
    canonical = provider.options.validate(options)
    provider.validate(canonical)
    labels = {
        LABEL_MANAGED: "orlop",
        LABEL_NAMESPACE: namespace,
        LABEL_VOLUME: volume,
        LABEL_TOKEN: f"token-{volume}",
    }
    return DiskSpec(volume, namespace, labels, f"token-{volume}", canonical)


def until(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def attached(provider: DigitalOceanProvider, disk: Disk, identity: Identity) -> None:
    def done() -> bool:
        now = provider.get_disk(disk.id)
        mine = now.attached_to(identity.instance) if now else None
        return mine is not None and mine.state == "attached"

    until(done)


def detached(provider: DigitalOceanProvider, disk: Disk, instance: str) -> None:
    until(lambda: (now := provider.get_disk(disk.id)) is not None and not now.attachments)


def test_create_find_attach_write_move_to_second_droplet(
    do_host: MakeHost, do_server: DoServer
) -> None:
    first, second = do_host(), do_host()
    a, b = first.provider(), second.provider()
    me, other = a.identity(), b.identity()
    namespace = first.settings["namespace"]
    disk = a.create_disk(spec(a, "Db.Main_1", namespace, size="1500M", tags="env:prod"), me)
    assert disk.size == 2 * GIB and disk.name.startswith("orlop-db-main-1-")
    assert disk.volume == "Db.Main_1" and disk.labels[LABEL_NAMESPACE] == namespace
    body = do_server.requests[-1][2]
    assert "filesystem_type" not in body and body["size_gigabytes"] == 2
    assert "env:prod" in body["tags"]
    assert a.options_of(disk) == {"size": str(2 * GIB), "tags": "env:prod"}

    # Another droplet finds it by its Docker name, in its namespace only.
    assert [d.id for d in b.find_disks(namespace, "Db.Main_1")] == [disk.id]
    assert b.find_disks(namespace, "db.main_1") == []
    assert b.find_disks("other-namespace") == []

    do_server.action_delay = 600  # held in progress until hurried along
    a.attach_disk(disk, me, a.device_name(disk, me))
    assert a.get_disk(disk.id).attached_to(me.instance).state == "attaching"  # type: ignore[union-attr]
    do_server.hurry()
    attached(a, disk, me)
    [path] = a.device_paths(disk, a.get_disk(disk.id).attachments[0])  # type: ignore[union-attr]
    assert path == f"{first.by_id}/scsi-0DO_Volume_{disk.name}"
    until(lambda: os.path.exists(path))
    assert stat.S_ISBLK(os.stat(path).st_mode)
    payload = os.urandom(4096)
    with open(path, "r+b") as device:
        device.seek(GIB)
        device.write(payload)

    # The second droplet is refused while the first holds it, and told by whom.
    with pytest.raises(CloudError) as refused:
        b.attach_disk(disk, other, None)
    assert refused.value.kind is ErrorKind.IN_USE and refused.value.holder == me.instance

    a.detach_disk(disk, me.instance)
    assert a.get_disk(disk.id).attachments[0].state == "detaching"  # type: ignore[union-attr]
    do_server.hurry()
    do_server.action_delay = 0.1
    detached(a, disk, me.instance)
    assert not os.path.exists(path)
    b.attach_disk(disk, other, None)
    attached(b, disk, other)
    moved = f"{second.by_id}/scsi-0DO_Volume_{disk.name}"
    until(lambda: os.path.exists(moved))
    with open(moved, "rb") as device:
        device.seek(GIB)
        assert device.read(4096) == payload
    b.detach_disk(disk, other.instance)
    detached(b, disk, other.instance)
    b.delete_disk(disk)
    assert b.get_disk(disk.id) is None
    b.delete_disk(disk)  # already gone: not an error


def test_labels_set_and_dropped_and_any_name_kept(do_host: MakeHost) -> None:
    host = do_host()
    provider = host.provider()
    namespace = host.settings["namespace"]
    long_name = "A" + "b.C_d-" * 42  # 253 characters: spread over several tags
    disk = provider.create_disk(spec(provider, long_name, namespace), provider.identity())
    assert disk.volume == long_name and disk.size == 10 * GIB  # the default size
    provider.set_labels(disk, {LABEL_CLAIM: "36000001 4f2a9c", LABEL_TOKEN: "renewed"})
    now = provider.get_disk(disk.id)
    assert now is not None and now.labels[LABEL_CLAIM] == "36000001 4f2a9c"
    assert now.labels[LABEL_TOKEN] == "renewed" and now.volume == long_name
    provider.set_labels(now, dict.fromkeys((LABEL_VOLUME, LABEL_CLAIM, LABEL_NAMESPACE)))
    kept = provider.get_disk(disk.id)
    assert kept is not None and LABEL_VOLUME not in kept.labels
    assert provider.find_disks(namespace) == []
    provider.delete_disk(kept)


def test_resize_grows_and_checks_the_limit(do_host: MakeHost) -> None:
    host = do_host()
    provider = host.provider()
    me = provider.identity()
    disk = provider.create_disk(spec(provider, "grow", host.settings["namespace"], size="1G"), me)
    provider.attach_disk(disk, me, None)
    attached(provider, disk, me)
    with pytest.raises(InvalidOption, match="16384G"):
        provider.resize_disk(disk, 16385 * GIB)
    provider.resize_disk(disk, 3 * GIB - 5)
    until(lambda: (d := provider.get_disk(disk.id)) is not None and d.size == 3 * GIB)
    path = f"{host.by_id}/scsi-0DO_Volume_{disk.name}"
    until(lambda: _device_size(path) == 3 * GIB)
    provider.detach_disk(disk, me.instance)
    detached(provider, disk, me.instance)
    provider.delete_disk(disk)


def _device_size(path: str) -> int:
    try:
        with open(path, "rb") as device:
            return device.seek(0, os.SEEK_END)
    except OSError:
        return 0


def test_snapshots_find_restore_and_delete(do_host: MakeHost) -> None:
    host = do_host()
    provider = host.provider()
    me = provider.identity()
    namespace = host.settings["namespace"]
    disk = provider.create_disk(spec(provider, "src", namespace, size="1G"), me)
    provider.attach_disk(disk, me, None)
    attached(provider, disk, me)
    path = f"{host.by_id}/scsi-0DO_Volume_{disk.name}"
    until(lambda: os.path.exists(path))
    with open(path, "r+b") as device:
        device.write(b"snapshot me")
        device.flush()
        os.fsync(device.fileno())
    labels = {LABEL_MANAGED: "orlop", LABEL_NAMESPACE: namespace, LABEL_VOLUME: "src"}
    labels["snapshot"] = "Nightly.1"
    made = provider.create_snapshot(disk, "Nightly.1", labels)
    assert provider.is_snapshot_id(made.id) and not provider.is_snapshot_id("Nightly.1")
    assert made.name == "Nightly.1" and made.volume == "src" and made.size == GIB
    assert [s.id for s in provider.find_snapshots(namespace, "src")] == [made.id]
    assert [s.id for s in provider.find_snapshots(namespace, name="Nightly.1")] == [made.id]
    assert provider.find_snapshots(namespace, name="other") == []
    found = provider.get_snapshot(made.id)
    assert found is not None and found.facts["region"] == "nyc1"
    assert provider.get_snapshot("00000000-0000-0000-0000-000000000000") is None

    restore = dataclasses.replace(spec(provider, "copy", namespace), snapshot=found)
    copy = provider.create_disk(restore, me)
    assert copy.size == GIB
    provider.attach_disk(copy, me, None)
    attached(provider, copy, me)
    copied = f"{host.by_id}/scsi-0DO_Volume_{copy.name}"
    until(lambda: os.path.exists(copied))
    with open(copied, "rb") as device:
        assert device.read(11) == b"snapshot me"
    with pytest.raises(InvalidOption, match="smaller than snapshot"):
        small = spec(provider, "small", namespace, size="1G")
        provider.create_disk(
            DiskSpec(
                small.volume,
                namespace,
                small.labels,
                small.token,
                {"size": str(GIB)},
                snapshot=dataclasses.replace(found, size=5 * GIB),
            ),
            me,
        )
    for each in (disk, copy):
        provider.detach_disk(each, me.instance)
        detached(provider, each, me.instance)
        provider.delete_disk(each)
    provider.delete_snapshot(made)
    provider.delete_snapshot(made)  # already gone
    assert provider.find_snapshots(namespace) == []


def test_repeated_create_returns_the_same_volume(do_host: MakeHost, do_server: DoServer) -> None:
    host = do_host()
    provider = host.provider()
    me = provider.identity()
    asked = spec(provider, "twice", host.settings["namespace"], size="1G")
    first = provider.create_disk(asked, me)
    again = provider.create_disk(asked, me)  # the answer was lost: the name is taken by us
    assert again.id == first.id and len(do_server.volumes) == 1
    other = DiskSpec(
        asked.volume, asked.namespace, {**asked.labels, LABEL_TOKEN: "x"}, "x", asked.options
    )
    with pytest.raises(CloudError, match="already exists"):
        provider.create_disk(other, me)
    provider.delete_disk(first)


def test_throttling_is_throttled_and_the_rate_limit_headers_are_sent(
    do_host: MakeHost, do_server: DoServer
) -> None:
    provider = do_host().provider()
    provider.identity()
    do_server.throttle(1)
    with pytest.raises(CloudError) as throttled:
        provider.find_disks("any")
    assert (
        throttled.value.kind is ErrorKind.THROTTLED and throttled.value.code == "too_many_requests"
    )
    assert provider.find_disks("any") == []


def test_bad_input_is_refused_before_anything_is_created(
    do_host: MakeHost, do_server: DoServer, tmp_path: Path
) -> None:
    host = do_host()
    provider = host.provider()
    namespace = host.settings["namespace"]
    for options, message in (
        ({"size": "1500M"}, None),
        ({"size": "0.5M"}, "1G to 16T"),
        ({"size": "16385G"}, "1G to 16T"),
        ({"size": "ten"}, "not a size"),
        ({"tags": "bad tag"}, "not a DigitalOcean tag"),
        ({"tags": "orlop:mine"}, "Orlop's own"),
        ({"filesystem_type": "ext4"}, "unknown option"),
    ):
        if message is None:  # rounds up to 2 GiB: allowed
            provider.options.validate(options)
            continue
        with pytest.raises(InvalidOption, match=message):
            spec(provider, "bad", namespace, **options)
    assert do_server.volumes == {}

    # A wrong token: CREDENTIALS, nothing made.
    wrong = tmp_path / "wrong-token"
    wrong.write_text("dop_v1_wrong")
    with pytest.raises(CloudError) as denied:
        host.provider(token_file=str(wrong)).identity()
    assert denied.value.kind is ErrorKind.CREDENTIALS and "dop_v1_wrong" not in str(denied.value)
    with pytest.raises(CloudError) as missing:
        host.provider(token_file=str(tmp_path / "absent")).identity()
    assert missing.value.kind is ErrorKind.CREDENTIALS and "absent" in str(missing.value)

    # A droplet that does not exist: NOT_FOUND, named, before anything is made.
    with pytest.raises(CloudError, match="droplet 999 does not exist") as nowhere:
        host.provider(droplet_id=999).identity()
    assert nowhere.value.kind is ErrorKind.NOT_FOUND
    # A region that is not the droplet's.
    with pytest.raises(CloudError, match="is in region nyc1, not fra1"):
        host.provider(region="fra1").identity()

    # An unreachable API: UNREACHABLE, quickly.
    started = time.monotonic()
    with pytest.raises(CloudError) as silent:
        host.provider(api_url="http://127.0.0.1:9").identity()
    assert silent.value.kind is ErrorKind.UNREACHABLE and time.monotonic() - started < 10
    assert do_server.volumes == {}

    # Plain http is refused except to a loopback address (the token would travel in clear).
    with pytest.raises(ConfigError, match="https"):
        host.provider(api_url="http://api.example.com")

    # Attaching to a droplet that does not exist: NOT_FOUND.
    disk = provider.create_disk(spec(provider, "x", namespace, size="1G"), provider.identity())
    with pytest.raises(CloudError) as gone:
        provider.attach_disk(disk, Identity("999", "nyc1", "nyc1", "droplet"), None)
    assert gone.value.kind is ErrorKind.NOT_FOUND
    provider.delete_disk(disk)


def test_identity_from_the_metadata_service(do_host: MakeHost) -> None:
    host = do_host(region="fra1")
    provider = host.provider(droplet_id=None, region=None)
    identity = provider.identity()
    assert identity.instance == str(host.droplet_id) and identity.region == "fra1"
    silent = host.provider(droplet_id=None, region=None, metadata_url="http://127.0.0.1:9")
    with pytest.raises(CloudError, match="set droplet_id and region") as error:
        silent.identity()
    assert error.value.kind is ErrorKind.UNREACHABLE


def test_delete_of_an_attached_volume_is_refused(do_host: MakeHost) -> None:
    host = do_host()
    provider = host.provider()
    me = provider.identity()
    disk = provider.create_disk(spec(provider, "held", host.settings["namespace"], size="1G"), me)
    provider.attach_disk(disk, me, None)
    attached(provider, disk, me)
    with pytest.raises(CloudError) as refused:
        provider.delete_disk(disk)
    assert refused.value.kind is ErrorKind.INVALID and "attached volume" in str(refused.value)
    provider.detach_disk(disk, me.instance)
    detached(provider, disk, me.instance)
    provider.detach_disk(disk, me.instance)  # not attached any more: nothing to do
    provider.delete_disk(disk)


def test_listings_follow_every_page(do_host: MakeHost, do_server: DoServer) -> None:
    host = do_host()
    provider = host.provider()
    namespace = host.settings["namespace"]
    with do_server.lock:  # more volumes than one page (200) holds, made behind Orlop's back
        for index in range(230):
            labels = {LABEL_NAMESPACE: namespace, LABEL_VOLUME: f"v{index}"}
            volume = Volume(f"id-{index}", f"v{index}", "nyc1", 1, tags=label_tags(labels))
            do_server.volumes[volume.id] = volume
    found = provider.find_disks(namespace)
    assert sorted(d.volume or "" for d in found) == sorted(f"v{i}" for i in range(230))
    assert [d.id for d in provider.find_disks(namespace, "v229")] == ["id-229"]
