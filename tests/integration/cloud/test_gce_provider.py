"""The GCE provider against the Compute v1 test server, with real loop devices as the disks.

These drive GceProvider directly through the official client (google-cloud-compute, REST,
unpatched). Every request and answer is checked against the discovery document (the `gce`
fixture fails a test whose traffic does not fit). The layer's sequencing is tested by the
cloud-disk conformance suite.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
import uuid
from typing import Any

import pytest

from orlop.backends.cloud.api import CloudError, Disk, DiskSpec, ErrorKind
from orlop.backends.cloud.gce.provider import GceProvider
from orlop.backends.cloud.gce.settings import GceSettings
from orlop.core.model import InvalidOption, NotFound
from tests.servers.gce.testbed import GIB, GceTestbed
from tests.support.cloud.deviceio import read_at, write_at
from tests.support.race import race

pytest_plugins = ["tests.servers.gce.fixtures"]


def provider(gce: GceTestbed, instance: str | None = None, **settings: Any) -> GceProvider:
    host = gce.host() if instance is None else None
    values = {**(host.settings if host else gce.settings(instance or "")), **settings}
    state = str(host.state_dir) if host else str(gce.root)
    return GceProvider(GceSettings.parse("gce", values), state)


def spec(gce: GceTestbed, volume: str, token: str | None = None, **options: str) -> DiskSpec:
    canonical = GceProvider.options.validate(options)
    token = token or uuid.uuid4().hex
    labels = {"managed-by": "orlop", "namespace": gce.namespace, "volume": volume}
    return DiskSpec(volume, gce.namespace, {**labels, "create-token": token}, token, canonical)


def create(p: GceProvider, gce: GceTestbed, volume: str, **options: str) -> Disk:
    wanted = spec(gce, volume, **options)
    p.validate(wanted.options)
    return p.create_disk(wanted, p.identity())


def inserts(gce: GceTestbed) -> int:
    return gce.server.calls.count("compute.disks.insert")


def test_create_get_find_and_labels_keep_a_long_mixed_case_name(gce: GceTestbed) -> None:
    p = provider(gce)
    long_name = "Db.Main_" + "X" * 200 + ".v2"
    near = "Db.Main_" + "X" * 200 + ".v3"  # the same first 63 encoded characters
    disk = create(p, gce, long_name, size="10G", type="pd-ssd")
    other = create(p, gce, near)
    assert disk.state == "ready" and disk.size == 10 * GIB and disk.name != other.name
    assert disk.labels["volume"] == long_name and disk.facts["type"] == "pd-ssd"
    raw = gce.server.disks[tuple(disk.id.split("/"))]["labels"]  # type: ignore[index]
    assert all(k.startswith("orlop-") and len(v) <= 63 for k, v in raw.items())
    assert len([k for k in raw if k.startswith("orlop-volume")]) > 1
    assert [d.id for d in p.find_disks(gce.namespace, long_name)] == [disk.id]
    assert {d.id for d in p.find_disks(gce.namespace)} == {disk.id, other.id}
    assert p.find_disks("elsewhere") == []
    assert p.get_disk(disk.id) is not None and p.get_disk(disk.id.replace("orlop", "x")) is None
    assert p.options_of(disk) == {"size": str(10 * GIB), "type": "pd-ssd", "zone": disk.zone}

    p.set_labels(disk, {"claim": "host-9 nonce1", "create-token": None})
    assert p.get_disk(disk.id).labels == {  # type: ignore[union-attr]
        "managed-by": "orlop",
        "namespace": gce.namespace,
        "volume": long_name,
        "claim": "host-9 nonce1",
    }


def test_create_is_idempotent_and_two_hosts_creating_at_once_make_one_disk(
    gce: GceTestbed,
) -> None:
    a, b = provider(gce), provider(gce)
    wanted = spec(gce, "shared", size="10G")
    first = a.create_disk(wanted, a.identity())
    again = a.create_disk(wanted, a.identity())
    assert again.id == first.id and len(gce.cloud_disks(gce.namespace)) == 1
    results = race(
        lambda: a.create_disk(spec(gce, "raced"), a.identity()),
        lambda: b.create_disk(spec(gce, "raced"), b.identity()),
    )
    assert all(isinstance(r, Disk) for r in results), results
    assert results[0].id == results[1].id
    assert [d["volume"] for d in gce.cloud_disks(gce.namespace)].count("raced") == 1


def test_a_kept_disk_holding_the_name_does_not_block_a_new_volume(gce: GceTestbed) -> None:
    p = provider(gce)
    kept = create(p, gce, "reused")
    p.set_labels(kept, {"managed-by": None, "namespace": None, "volume": None})
    fresh = create(p, gce, "reused")
    assert fresh.id != kept.id and fresh.labels["volume"] == "reused"


def test_attach_shows_a_real_device_and_data_follows_the_disk_to_another_host(
    gce: GceTestbed,
) -> None:
    a, b = provider(gce), provider(gce)
    disk = create(a, gce, "data")
    me = a.identity()
    a.attach_disk(disk, me, a.device_name(disk, me))
    disk = a.get_disk(disk.id)  # type: ignore[assignment]
    [attachment] = disk.attachments
    assert attachment.instance == me.instance
    paths = a.device_paths(disk, attachment)
    assert paths[0].endswith(f"/google-{disk.name}")
    assert paths[1].endswith(f"/scsi-0Google_PersistentDisk_{disk.name}")
    assert all(stat.S_ISBLK(os.stat(path).st_mode) for path in paths)
    payload = os.urandom(4096)
    write_at(paths[0], GIB, payload)
    a.attach_disk(disk, me, a.device_name(disk, me))  # attached here already: nothing to do

    with pytest.raises(CloudError) as refused:  # READ_WRITE elsewhere: GCE refuses, naming A
        b.attach_disk(disk, b.identity(), b.device_name(disk, b.identity()))
    assert refused.value.kind is ErrorKind.IN_USE and refused.value.holder == me.instance
    assert me.instance in str(refused.value)

    b.detach_disk(disk, me.instance)  # preempting, as the layer does from the second host
    assert not any(os.path.exists(path) for path in paths)
    b.attach_disk(disk, b.identity(), b.device_name(disk, b.identity()))
    disk = b.get_disk(disk.id)  # type: ignore[assignment]
    [attachment] = disk.attachments
    there = b.device_paths(disk, attachment)[0]
    assert read_at(there, GIB, 4096) == payload
    b.detach_disk(disk, b.identity().instance)
    b.detach_disk(disk, b.identity().instance)  # detached already: fine
    assert b.get_disk(disk.id).attachments == []  # type: ignore[union-attr]


def test_nvme_guests_show_the_google_link(gce: GceTestbed) -> None:
    host = gce.host(interface="NVME")
    p = GceProvider(GceSettings.parse("gce", host.settings), str(host.state_dir))
    disk = create(p, gce, "fast")
    p.attach_disk(disk, p.identity(), p.device_name(disk, p.identity()))
    disk = p.get_disk(disk.id)  # type: ignore[assignment]
    google, scsi = p.device_paths(disk, disk.attachments[0])
    assert stat.S_ISBLK(os.stat(google).st_mode) and not os.path.exists(scsi)
    p.detach_disk(disk, host.instance)


def test_two_hosts_racing_to_attach_one_wins(gce: GceTestbed) -> None:
    a, b = provider(gce), provider(gce)
    disk = create(a, gce, "contested")
    results = race(
        lambda: a.attach_disk(disk, a.identity(), disk.name),
        lambda: b.attach_disk(disk, b.identity(), disk.name),
    )
    refused = [r for r in results if isinstance(r, CloudError)]
    assert len(refused) == 1 and refused[0].kind is ErrorKind.IN_USE, results
    assert len(a.get_disk(disk.id).attachments) == 1  # type: ignore[union-attr]


def test_an_operation_that_fails_after_acceptance_is_a_cloud_error(gce: GceTestbed) -> None:
    p = provider(gce)
    disk = create(p, gce, "doomed")
    gce.server.set_delay(0.5)
    outcome: list[Any] = []

    def attach() -> None:
        try:
            p.attach_disk(disk, p.identity(), disk.name)
        except CloudError as error:
            outcome.append(error)

    thread = threading.Thread(target=attach)
    thread.start()
    deadline = time.monotonic() + 10
    while "compute.instances.attachDisk" not in gce.server.calls[-3:]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gce.delete_behind_orlop(disk.id)  # gone before the attach operation is DONE
    thread.join(30)
    [error] = outcome
    assert error.kind is ErrorKind.NOT_FOUND and error.code == "RESOURCE_NOT_FOUND"


def test_resize_grows_only_and_checks_the_types_limits(gce: GceTestbed) -> None:
    p = provider(gce)
    disk = create(p, gce, "grow", size="10G")
    p.resize_disk(disk, 12 * GIB)
    grown = p.get_disk(disk.id)
    assert grown is not None and grown.size == 12 * GIB
    p.resize_disk(grown, 11 * GIB)  # smaller: nothing to do
    assert p.get_disk(disk.id).size == 12 * GIB  # type: ignore[union-attr]
    calls = len(gce.server.calls)
    with pytest.raises(InvalidOption, match="10 to 65536 GiB"):
        p.resize_disk(grown, 70000 * GIB)
    assert len(gce.server.calls) == calls


def test_snapshots_and_a_disk_made_from_one(gce: GceTestbed) -> None:
    p = provider(gce)
    disk = create(p, gce, "source", size="11G")
    labels = {"managed-by": "orlop", "namespace": gce.namespace, "volume": "source"}
    snapshot = p.create_snapshot(disk, "Nightly.1", labels)
    assert snapshot.name == "Nightly.1" and snapshot.volume == "source"
    assert p.is_snapshot_id(snapshot.id) and not p.is_snapshot_id("Nightly.1")
    assert [s.id for s in p.find_snapshots(gce.namespace, name="Nightly.1")] == [snapshot.id]
    assert [s.id for s in p.find_snapshots(gce.namespace, volume="source")] == [snapshot.id]
    assert p.get_snapshot(snapshot.id) is not None and p.get_snapshot("global/snapshots/x") is None
    by_name = create(p, gce, "restored", from_snapshot="Nightly.1")
    by_id = create(p, gce, "restored2", from_snapshot=snapshot.id)
    assert by_name.size == 11 * GIB and by_name.facts["source_snapshot"] == snapshot.id
    assert by_id.facts["source_snapshot"] == snapshot.id
    p.delete_snapshot(snapshot)
    p.delete_snapshot(snapshot)  # gone already: fine
    deadline = time.monotonic() + 10
    while p.get_snapshot(snapshot.id) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_each_error_kind(gce: GceTestbed) -> None:
    p = provider(gce)
    disk = create(p, gce, "kinds")
    me = p.identity()
    ghost = Disk(id=f"{disk.zone}/orlop-ghost", name="orlop-ghost", size=GIB, state="ready")
    p.delete_disk(ghost)  # gone already: not an error
    with pytest.raises(CloudError) as missing:
        p.attach_disk(ghost, me, "orlop-ghost")
    assert missing.value.kind is ErrorKind.NOT_FOUND and "orlop-ghost" in str(missing.value)
    expected = [
        (403, "rateLimitExceeded", ErrorKind.THROTTLED),
        (429, "", ErrorKind.THROTTLED),
        (503, "backendError", ErrorKind.RETRYABLE),
        (400, "invalid", ErrorKind.INVALID),
        (403, "insufficientPermissions", ErrorKind.CREDENTIALS),
        (409, "conflict", ErrorKind.FAILED),
    ]
    for status, reason, kind in expected:
        gce.server.fail_next(status, reason, f"refused with {status} {reason}")
        with pytest.raises(CloudError) as refused:
            p.get_disk(disk.id)
        assert refused.value.kind is kind, (status, reason, refused.value)
        assert f"refused with {status}" in str(refused.value)
    p.attach_disk(disk, me, disk.name)
    with pytest.raises(CloudError) as in_use:
        p.delete_disk(disk)
    assert in_use.value.kind is ErrorKind.IN_USE and in_use.value.holder == me.instance
    p.detach_disk(disk, me.instance)
    p.delete_disk(disk)
    assert p.get_disk(disk.id) is None

    locked = provider(gce, gce.instances[0], project="orlop-locked")
    with pytest.raises(CloudError) as anonymous:
        locked.find_disks(gce.namespace)
    assert anonymous.value.kind is ErrorKind.CREDENTIALS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "pd-fast"}, "use one of pd-balanced, pd-standard"),
        ({"size": "5G"}, "size 5 GiB is outside what type pd-balanced allows: 10 to 65536"),
        ({"type": "pd-extreme", "size": "100G"}, "500 to 65536 GiB"),
        ({"provisioned_iops": "5000"}, "pd-balanced takes no provisioned_iops: only pd-extreme"),
        ({"type": "pd-ssd", "provisioned_throughput": "200"}, "only hyperdisk-balanced"),
        (
            {"type": "hyperdisk-balanced", "size": "10G", "provisioned_iops": "100000"},
            "at most 500 per GiB",
        ),
        ({"zone": "us-central1-z"}, "zone us-central1-z does not exist in project orlop-test"),
        ({"from_snapshot": "no-such-snapshot"}, "snapshot no-such-snapshot does not exist"),
        ({"from_snapshot": "global/snapshots/gone"}, "snapshot global/snapshots/gone does not"),
    ],
)
def test_bad_input_is_refused_before_anything_is_created(
    gce: GceTestbed, options: dict[str, str], message: str
) -> None:
    p = provider(gce)
    before = inserts(gce)
    with pytest.raises((InvalidOption, NotFound)) as refused:
        create(p, gce, "bad", **options)
    assert message in str(refused.value)
    assert inserts(gce) == before and gce.cloud_disks(gce.namespace) == []


def test_identity_from_the_metadata_server(gce: GceTestbed) -> None:
    host = gce.host()
    settings = {
        "endpoint_url": gce.session.endpoint,
        "metadata_url": gce.metadata_url(host.instance),
        "namespace": gce.namespace,
        "by_id_dir": host.settings["by_id_dir"],
    }
    p = GceProvider(GceSettings.parse("gce", settings), str(host.state_dir))
    me = p.identity()
    assert (me.instance, me.zone, p.project) == (host.instance, "us-central1-a", "orlop-test")
    disk = create(p, gce, "via-metadata")
    assert disk.zone == "us-central1-a"


def test_no_credentials_unreachable_endpoint_and_silent_metadata_fail_in_time(
    gce: GceTestbed, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = gce.host().instance
    broken = tmp_path / "key.json"
    broken.write_text("{not json")
    p = provider(gce, instance, credentials_file=str(broken))
    with pytest.raises(CloudError, match=f"cannot use credentials_file {broken}") as refused:
        create(p, gce, "no-credentials")
    assert refused.value.kind is ErrorKind.CREDENTIALS

    # No endpoint, no file: Application Default Credentials, pointed at a file that is not.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    p = provider(gce, instance, endpoint_url=None)
    with pytest.raises(CloudError, match="no Google credentials") as refused:
        create(p, gce, "no-adc")
    assert refused.value.kind is ErrorKind.CREDENTIALS

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    p = provider(gce, instance, endpoint_url=f"http://127.0.0.1:{port}", api_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(
        CloudError, match=f"no answer from the Compute API at http://127.0.0.1:{port}"
    ) as unreachable:
        create(p, gce, "unreachable")
    assert unreachable.value.kind is ErrorKind.UNREACHABLE and time.monotonic() - started < 10

    silent = socket.socket()  # listens, never answers: as a metadata server that hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        settings = {
            "endpoint_url": gce.session.endpoint,
            "metadata_url": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "metadata_timeout": 0.5,
            "namespace": gce.namespace,
        }
        p = GceProvider(GceSettings.parse("gce", settings), str(gce.root))
        started = time.monotonic()
        with pytest.raises(CloudError, match="no answer from the metadata server") as silence:
            p.identity()
        assert silence.value.kind is ErrorKind.UNREACHABLE
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    assert gce.cloud_disks(gce.namespace) == []


def test_the_server_refuses_what_the_discovery_document_forbids(gce: GceTestbed) -> None:
    import json
    import urllib.error
    import urllib.request

    url = f"{gce.session.endpoint}/compute/v1/projects/orlop-test/zones/us-central1-a/disks"
    body = json.dumps({"name": "orlop-odd", "sizeGb": "10", "colour": "blue"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    seen = gce.server.violations
    assert any("unknown field colour" in v for v in seen), seen
    gce.server.violations[:] = [v for v in seen if "colour" not in v]
