"""CSI conformance through a real gRPC channel on the daemon's unix sockets, per backend kind.

One `orlop serve` (with a csi: section) serves a directory, a loopfile and an sshfs driver
(on the session's sshd); every test runs against each. Staging and target paths are real
directories; mounts are real."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from orlop.frontends.csi.messages import enum_value, message
from orlop.host.mounts import is_mountpoint
from tests.integration.csi.client import (
    CsiClient,
    block_capability,
    capability,
    capacity,
    csi_socket,
    start_csi_daemon,
)
from tests.servers.sshd.server import Sshd
from tests.support.block import cleanup, has_cap_sys_resource
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.support.network_fixtures"]

MiB = 1024 * 1024
NODE = "csi-node-a"


@dataclass
class Kind:
    name: str
    driver: str
    client: CsiClient
    daemon: OrlopDaemon
    sized: bool  # volumes have a size (capacity range honoured)
    resize: bool
    local: bool  # host-local: single-node modes, topology pinned to the node
    snapshots: bool
    raw_block: bool  # raw block volumes (tests/integration/csi/test_csi_block.py)
    capacity: bool  # GetCapacity answers: the free bytes of the state directory's filesystem


KINDS = {  # kind: (sized, resize, local, snapshots, raw_block, capacity)
    "directory": (False, False, True, True, False, True),
    "loopfile": (True, True, True, True, True, True),
    "sshfs": (False, False, False, False, False, False),
}


@pytest.fixture(scope="module")
def daemon(sshd: Sshd) -> Iterator[OrlopDaemon]:
    base = sshd.data / unique("csi")
    base.mkdir()
    configs = {
        "directory": {"backend": "directory"},
        "loopfile": {"backend": "loopfile", "options": {"fs": "ext4"}},
        "sshfs": {"backend": "sshfs", "options": sshd.options(path=str(base))},
    }
    drivers = {f"{unique('csi')}-{kind}": config for kind, config in configs.items()}
    started = start_csi_daemon(drivers, NODE)
    try:
        yield started
    finally:
        started.stop()
        for driver in drivers:
            cleanup(str(started.state_dir / "drivers" / driver))
        started.destroy()


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest, daemon: OrlopDaemon) -> Iterator[Kind]:
    driver = next(d for d in daemon.drivers if d.endswith(f"-{request.param}"))
    client = CsiClient(csi_socket(daemon, driver))
    try:
        yield Kind(request.param, driver, client, daemon, *KINDS[request.param])
    finally:
        client.close()


def create(kind: Kind, name: str, size: int = 64 * MiB, **extra: object) -> object:
    return kind.client.call(
        "CreateVolume",
        name=name,
        capacity_range=capacity(size),
        volume_capabilities=[capability()],
        **extra,
    ).volume


def stage(kind: Kind, name: str, staging: Path) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    kind.client.call(
        "NodeStageVolume",
        volume_id=name,
        staging_target_path=str(staging),
        volume_capability=capability(),
    )


def publish(kind: Kind, name: str, staging: Path, target: Path, readonly: bool = False) -> None:
    kind.client.call(
        "NodePublishVolume",
        volume_id=name,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=capability(),
        readonly=readonly,
    )


def unpublish(kind: Kind, name: str, target: Path) -> None:
    kind.client.call("NodeUnpublishVolume", volume_id=name, target_path=str(target))


def unstage(kind: Kind, name: str, staging: Path) -> None:
    kind.client.call("NodeUnstageVolume", volume_id=name, staging_target_path=str(staging))


def rpc(name: str) -> int:
    return enum_value("ControllerServiceCapability.RPC", "Type", name)


def is_mounted(path: Path) -> bool:
    return is_mountpoint(str(path))


def test_identity(kind: Kind) -> None:
    info = kind.client.call("GetPluginInfo")
    assert info.name == f"{kind.driver}.csi.orlop.dev"
    assert info.vendor_version
    assert kind.client.call("Probe").ready.value is True
    plugin = kind.client.call("GetPluginCapabilities").capabilities
    services = {c.service.type for c in plugin if c.HasField("service")}
    expansion = [c.volume_expansion.type for c in plugin if c.HasField("volume_expansion")]
    assert expansion == ([1] if kind.resize else [])  # ONLINE
    # CONTROLLER_SERVICE, and VOLUME_ACCESSIBILITY_CONSTRAINTS for host-local kinds
    assert services == ({1, 2} if kind.local else {1})
    node = kind.client.call("NodeGetInfo")
    assert node.node_id == NODE
    pinned = {"topology.orlop.dev/node": NODE} if kind.local else {}
    assert dict(node.accessible_topology.segments) == pinned


def test_create_is_idempotent_and_conflicts_say_so(kind: Kind) -> None:
    name = unique("vol")
    first = create(kind, name)
    again = create(kind, name)
    assert again.volume_id == first.volume_id == name
    assert dict(again.volume_context) == dict(first.volume_context)
    pinned = [{"topology.orlop.dev/node": NODE}] if kind.local else []
    assert [dict(t.segments) for t in first.accessible_topology] == pinned
    if kind.sized:
        assert first.capacity_bytes == 64 * MiB
        code, text = kind.client.code(
            "CreateVolume",
            name=name,
            capacity_range=capacity(128 * MiB),
            volume_capabilities=[capability()],
        )
        assert code == grpc.StatusCode.ALREADY_EXISTS and "different options" in text
    kind.client.call("DeleteVolume", volume_id=name)
    kind.client.call("DeleteVolume", volume_id=name)  # gone already: still OK


def test_bad_requests_get_clear_errors(kind: Kind) -> None:
    name = unique("bad")
    cases = [
        ({"volume_capabilities": [capability()]}, "name is required"),
        ({"name": name}, "volume_capabilities is required"),
        (
            {"name": name, "volume_capabilities": [capability()], "parameters": {"colour": "x"}},
            "colour",
        ),
        (
            {"name": name, "volume_capabilities": [capability()], "parameters": {"size": "1G"}},
            "capacity range",
        ),
        (
            {
                "name": name,
                "volume_capabilities": [capability()],
                "parameters": {"volume_mode": "block"},
            },
            "access type",
        ),
        ({"name": "../etc", "volume_capabilities": [capability()]}, "must match"),
    ]
    both = {"name": name, "volume_capabilities": [capability(), block_capability()]}
    if kind.raw_block:
        cases.append((both, "either raw block or a filesystem"))
    else:
        only = "raw block volumes are offered by drivers of the block kinds (loopfile, ebs"
        cases.append(({"name": name, "volume_capabilities": [block_capability()]}, only))
    if kind.local:
        multi = {"name": name, "volume_capabilities": [capability("MULTI_NODE_MULTI_WRITER")]}
        cases.append((multi, "allowed are SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY"))
    for fields, expected in cases:
        code, text = kind.client.code("CreateVolume", **fields)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (fields, text)
        assert expected in text, (expected, text)
    assert name not in {e.volume.volume_id for e in kind.client.call("ListVolumes").entries}
    # Controller publish is not a step for host-local kinds: not advertised, not served.
    advertised = {c.rpc.type for c in kind.client.call("ControllerGetCapabilities").capabilities}
    assert rpc("PUBLISH_UNPUBLISH_VOLUME") not in advertised
    code, _ = kind.client.code("ControllerPublishVolume", volume_id=name, node_id=NODE)
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_volumes_are_not_found(kind: Kind, tmp_path: Path) -> None:
    missing = unique("missing")
    staging = tmp_path / "staging"
    staging.mkdir()
    for method, fields in [
        (
            "NodeStageVolume",
            {"staging_target_path": str(staging), "volume_capability": capability()},
        ),
        ("NodeUnstageVolume", {"staging_target_path": str(staging)}),
        ("NodeUnpublishVolume", {"target_path": str(tmp_path / "t")}),
        ("NodeGetVolumeStats", {"volume_path": str(staging)}),
        ("ValidateVolumeCapabilities", {"volume_capabilities": [capability()]}),
    ]:
        code, text = kind.client.code(method, volume_id=missing, **fields)
        assert code == grpc.StatusCode.NOT_FOUND, (method, code, text)
        assert missing in text


def test_stage_publish_sequence_and_reversal(kind: Kind, tmp_path: Path) -> None:
    name = unique("seq")
    create(kind, name)
    staging, target, reader = tmp_path / "staging", tmp_path / "target", tmp_path / "reader"
    code, text = kind.client.code(
        "NodePublishVolume",
        volume_id=name,
        staging_target_path=str(staging),
        target_path=str(target),
        volume_capability=capability(),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not staged" in text
    stage(kind, name, staging)
    stage(kind, name, staging)  # idempotent
    assert is_mounted(staging)
    target.mkdir()  # a target path that already exists (as Kubernetes leaves it)
    publish(kind, name, staging, target)
    publish(kind, name, staging, target)  # idempotent
    (target / "row").write_text("acknowledged")
    publish(kind, name, staging, reader, readonly=True)  # reader does not exist yet: made
    assert (reader / "row").read_text() == "acknowledged"
    with pytest.raises(OSError):
        (reader / "other").write_text("refused")
    code, _ = kind.client.code(
        "NodePublishVolume",
        volume_id=name,
        staging_target_path=str(staging),
        target_path=str(reader),
        volume_capability=capability(),
        readonly=False,
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, text = kind.client.code("DeleteVolume", volume_id=name)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "in use" in text
    assert (target / "row").read_text() == "acknowledged"  # refused: nothing undone
    for path in (target, reader):
        unpublish(kind, name, path)
        unpublish(kind, name, path)  # idempotent
        assert not path.exists()
    unstage(kind, name, staging)
    unstage(kind, name, staging)  # idempotent
    assert not is_mounted(staging)
    # The data outlives the node's stage: staged again, the row is there.
    stage(kind, name, staging)
    publish(kind, name, staging, target)
    assert (target / "row").read_text() == "acknowledged"
    unpublish(kind, name, target)
    # Swarm unstages under its own ID for the volume: the staging path says which it is.
    kind.client.call(
        "NodeUnstageVolume", volume_id="swarm-id-0123", staging_target_path=str(staging)
    )
    assert not is_mounted(staging)
    # Staged, published nowhere (Swarm deletes without unstaging): the stage is released.
    stage(kind, name, staging)
    kind.client.call("DeleteVolume", volume_id=name)
    assert not is_mounted(staging)
    assert name not in {e.volume.volume_id for e in kind.client.call("ListVolumes").entries}


def test_stats_report_bytes_and_inodes(kind: Kind, tmp_path: Path) -> None:
    name = unique("stats")
    create(kind, name)
    staging, target = tmp_path / "staging", tmp_path / "target"
    stage(kind, name, staging)
    publish(kind, name, staging, target)
    (target / "blob").write_bytes(os.urandom(2 * MiB))
    usage = kind.client.call("NodeGetVolumeStats", volume_id=name, volume_path=str(target)).usage
    by_unit = {u.unit: u for u in usage}
    assert set(by_unit) == {1, 2}  # BYTES, INODES
    assert by_unit[1].used >= 2 * MiB and by_unit[1].total >= by_unit[1].used
    assert by_unit[2].total > 0 and by_unit[2].used >= 1
    if kind.sized:
        assert by_unit[1].total <= 64 * MiB
    unpublish(kind, name, target)
    unstage(kind, name, staging)
    kind.client.call("DeleteVolume", volume_id=name)


def test_expansion(kind: Kind, tmp_path: Path) -> None:
    advertised = {c.rpc.type for c in kind.client.call("ControllerGetCapabilities").capabilities}
    name = unique("grow")
    create(kind, name)
    if not kind.resize:
        assert rpc("EXPAND_VOLUME") not in advertised
        code, _ = kind.client.code(
            "ControllerExpandVolume", volume_id=name, capacity_range=capacity(128 * MiB)
        )
        assert code == grpc.StatusCode.UNIMPLEMENTED
        kind.client.call("DeleteVolume", volume_id=name)
        return
    assert rpc("EXPAND_VOLUME") in advertised
    staging, target = tmp_path / "staging", tmp_path / "target"
    online = has_cap_sys_resource()  # the kernel grows a mounted ext4 only with it
    if online:
        stage(kind, name, staging)
        publish(kind, name, staging, target)
    grown = kind.client.call(
        "ControllerExpandVolume", volume_id=name, capacity_range=capacity(128 * MiB)
    )
    assert grown.capacity_bytes == 128 * MiB and not grown.node_expansion_required
    again = kind.client.call(
        "ControllerExpandVolume", volume_id=name, capacity_range=capacity(96 * MiB)
    )
    assert again.capacity_bytes == 128 * MiB  # already as large: nothing to do
    if not online:
        stage(kind, name, staging)
        publish(kind, name, staging, target)
    total = os.statvfs(target).f_blocks * os.statvfs(target).f_frsize
    assert total > 96 * MiB  # the mounted filesystem grew
    unpublish(kind, name, target)
    unstage(kind, name, staging)
    kind.client.call("DeleteVolume", volume_id=name)


def test_snapshots_and_clones(kind: Kind, tmp_path: Path) -> None:
    advertised = {c.rpc.type for c in kind.client.call("ControllerGetCapabilities").capabilities}
    if not kind.snapshots:
        assert rpc("CREATE_DELETE_SNAPSHOT") not in advertised
        code, _ = kind.client.code("CreateSnapshot", source_volume_id="x", name="y")
        assert code == grpc.StatusCode.UNIMPLEMENTED
        return
    assert {rpc("CREATE_DELETE_SNAPSHOT"), rpc("LIST_SNAPSHOTS"), rpc("CLONE_VOLUME")} <= (
        advertised
    )
    name, snap = unique("orig"), unique("snap")
    create(kind, name)
    staging, target = tmp_path / "staging", tmp_path / "target"
    stage(kind, name, staging)
    publish(kind, name, staging, target)
    (target / "row").write_text("before the snapshot")
    made = kind.client.call("CreateSnapshot", source_volume_id=name, name=snap).snapshot
    again = kind.client.call("CreateSnapshot", source_volume_id=name, name=snap).snapshot
    assert made.snapshot_id == again.snapshot_id == snap and made.source_volume_id == name
    assert made.ready_to_use and made.creation_time.seconds > 0
    (target / "row").write_text("after the snapshot")
    other = unique("other")
    create(kind, other)
    code, _ = kind.client.code("CreateSnapshot", source_volume_id=other, name=snap)
    assert code == grpc.StatusCode.ALREADY_EXISTS
    listed = kind.client.call("ListSnapshots", source_volume_id=name).entries
    assert [e.snapshot.snapshot_id for e in listed] == [snap]
    unpublish(kind, name, target)
    unstage(kind, name, staging)

    source = {"snapshot": {"snapshot_id": snap}}
    from_snapshot, from_volume = unique("fromsnap"), unique("fromvol")
    restored = create(kind, from_snapshot, volume_content_source=source)
    assert restored.content_source.snapshot.snapshot_id == snap
    create(kind, from_volume, volume_content_source={"volume": {"volume_id": name}})
    for clone, expected in ((from_snapshot, "before"), (from_volume, "after")):
        stage(kind, clone, tmp_path / f"s-{clone}")
        publish(kind, clone, tmp_path / f"s-{clone}", tmp_path / f"t-{clone}")
        assert (tmp_path / f"t-{clone}" / "row").read_text().startswith(expected)
        unpublish(kind, clone, tmp_path / f"t-{clone}")
        unstage(kind, clone, tmp_path / f"s-{clone}")
    code, _ = kind.client.code(
        "CreateVolume",
        name=unique("nosnap"),
        volume_capabilities=[capability()],
        volume_content_source={"snapshot": {"snapshot_id": "no-such-snapshot"}},
    )
    assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    for clone in (from_snapshot, from_volume, other):
        kind.client.call("DeleteVolume", volume_id=clone)
    kind.client.call("DeleteSnapshot", snapshot_id=snap)
    kind.client.call("DeleteSnapshot", snapshot_id=snap)  # idempotent
    assert kind.client.call("ListSnapshots", source_volume_id=name).entries == []
    kind.client.call("DeleteVolume", volume_id=name)


def test_list_volumes_pages(kind: Kind) -> None:
    names = sorted(unique("page") for _ in range(3))
    for name in names:
        create(kind, name)
    seen: list[str] = []
    token = ""
    while True:
        page = kind.client.call("ListVolumes", max_entries=2, starting_token=token)
        assert len(page.entries) <= 2
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert set(names) <= set(seen) and len(seen) == len(set(seen))
    code, _ = kind.client.code("ListVolumes", starting_token="not-a-token")
    assert code == grpc.StatusCode.ABORTED
    for name in names:
        kind.client.call("DeleteVolume", volume_id=name)


def test_capacity_where_the_storage_can_say(kind: Kind, tmp_path: Path) -> None:
    advertised = {c.rpc.type for c in kind.client.call("ControllerGetCapabilities").capabilities}
    if not kind.capacity:  # a share: its free space is not this host's to tell
        assert rpc("GET_CAPACITY") not in advertised
        code, _ = kind.client.code("GetCapacity")
        assert code == grpc.StatusCode.UNIMPLEMENTED
        return
    assert rpc("GET_CAPACITY") in advertised
    state = kind.daemon.state_dir / "drivers" / kind.driver

    def free() -> int:
        fs = os.statvfs(state)
        return fs.f_bavail * fs.f_frsize

    def asked(**fields: object) -> int:
        return int(kind.client.call("GetCapacity", **fields).available_capacity)

    before, answer, after = free(), asked(), free()
    assert min(before, after) - 4 * MiB <= answer <= max(before, after) + 4 * MiB
    here = message("Topology")(segments={"topology.orlop.dev/node": NODE})
    elsewhere = message("Topology")(segments={"topology.orlop.dev/node": "another-node"})
    assert asked(volume_capabilities=[capability()], accessible_topology=here) > 0
    assert asked(accessible_topology=elsewhere) == 0  # this driver provisions nothing there
    # Parameters are checked as a CreateVolume's are, with the same messages.
    refused = [({"parameters": {"colour": "x"}}, "colour"), ({"parameters": {"size": "1G"}}, "")]
    refused.append(({"accessible_topology": message("Topology")(segments={"z": "1"})}, "key z"))
    if kind.raw_block:
        assert asked(volume_capabilities=[block_capability()]) > 0
    else:
        refused.append(({"volume_capabilities": [block_capability()]}, "not raw block"))
    if kind.name == "directory":  # a tmpfs volume's room is not the state directory's
        refused.append(({"parameters": {"type": "tmpfs"}}, "cannot tell"))
    for fields, expected in refused:
        code, text = kind.client.code("GetCapacity", **fields)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in text, (fields, text)
    # What a volume takes is taken from the answer: the figure is the real free space.
    name = unique("room")
    create(kind, name, size=128 * MiB)
    staging, target = tmp_path / "staging", tmp_path / "target"
    stage(kind, name, staging)
    publish(kind, name, staging, target)
    start = asked()
    with open(target / "blob", "wb") as blob:
        blob.write(os.urandom(64 * MiB))
        blob.flush()
        os.fsync(blob.fileno())
    assert start - asked() >= 48 * MiB
    unpublish(kind, name, target)
    unstage(kind, name, staging)
    kind.client.call("DeleteVolume", volume_id=name)
