"""The daemon on a real unix socket: every endpoint, every bad input, and its lifecycle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest

from orlop.backends import backend_class
from orlop.host.mounts import is_mountpoint
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.odd_values import ODD_VALUES
from tests.support.plugin_client import PluginClient


@pytest.fixture
def client(directory_daemon: OrlopDaemon) -> PluginClient:
    return directory_daemon.client()


def _state_is_empty(daemon: OrlopDaemon, client: PluginClient) -> None:
    assert client.ok("List")["Volumes"] == []
    volumes_dir = daemon.state_dir / "drivers" / next(iter(daemon.drivers)) / "volumes"
    assert not volumes_dir.exists() or list(volumes_dir.iterdir()) == []


def test_activate_and_capabilities(client: PluginClient) -> None:
    assert client.call("/Plugin.Activate") == {"Implements": ["VolumeDriver"], "_status": 200}
    assert client.ok("Capabilities")["Capabilities"] == {"Scope": "local"}


def test_volume_lifecycle(client: PluginClient) -> None:
    client.ok("Create", Name="db", Opts={"mode": "0750"})
    got = client.ok("Get", Name="db")["Volume"]
    assert got["Name"] == "db"
    created = datetime.fromisoformat(got["CreatedAt"].replace("Z", "+00:00"))
    assert abs(created.timestamp() - time.time()) < 60
    status = got["Status"]
    assert status["backend"] == "directory" and status["options"] == {"mode": "0750"}
    assert status["mounts"] == 0 and status["state"] == "ready"
    path = client.ok("Path", Name="db")["Mountpoint"]
    assert path == got["Mountpoint"] and oct(os.stat(path).st_mode & 0o7777) == "0o750"
    assert [v["Name"] for v in client.ok("List")["Volumes"]] == ["db"]

    mounted = client.ok("Mount", Name="db", ID="c1")["Mountpoint"]
    assert mounted == path
    Path(mounted, "file").write_text("kept")
    assert client.ok("Get", Name="db")["Volume"]["Status"]["mounts"] == 1
    client.ok("Unmount", Name="db", ID="c1")
    # Status carries usage, measured in the background after the last unmount.
    deadline = time.monotonic() + 10
    while True:
        usage = client.ok("Get", Name="db")["Volume"]["Status"]["usage"]
        if usage and usage["used"] >= 4:
            break
        assert time.monotonic() < deadline, f"usage never measured: {usage}"
        time.sleep(0.05)
    assert usage["free"] > 0 and usage["size"] is None  # a plain directory has no size limit
    client.ok("Remove", Name="db")
    assert not os.path.exists(path)
    assert "not found" in client.call("Get", Name="db")["Err"]


def test_create_is_idempotent_and_conflicts_on_other_options(client: PluginClient) -> None:
    client.ok("Create", Name="v", Opts={"uid": "1000"})
    client.ok("Create", Name="v", Opts={"uid": "1000"})
    client.ok("Create", Name="v")  # docker run -v v:/data sends no options
    err = client.call("Create", Name="v", Opts={"uid": "1001"})["Err"]
    assert "already exists with different options" in err and "uid: 1000 → 1001" in err


def test_get_unknown_volume(client: PluginClient) -> None:
    reply = client.call("Get", Name="missing")
    assert (
        reply["Err"] == "volume missing not found (driver " + client.path.split("/")[-1][:-5] + ")"
    )


@pytest.mark.parametrize("name", ["", "..", "a/b", ".lead", "-lead", "n" * 256, "caf\u00e9"])
def test_bad_names(directory_daemon: OrlopDaemon, client: PluginClient, name: str) -> None:
    err = client.call("Create", Name=name)["Err"]
    assert "[a-zA-Z0-9][a-zA-Z0-9_.-]*" in err or "at most 255" in err
    assert client.call("Get", Name=name)["Err"]
    _state_is_empty(directory_daemon, client)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            {"color": "red"},
            "unknown option color: allowed options are device, from_backup, from_snapshot, "
            "from_volume, gid, mode, o, snapshot_schedule, type, uid",
        ),
        ({"mode": "999"}, "invalid value for option mode"),
        ({"uid": "-1"}, "invalid value for option uid"),
        ({"gid": "x"}, "invalid value for option gid"),
        ({"device": "/dev/null"}, "option device requires option type"),
        ({"type": "tmpfs"}, "option type requires option device"),
        ({"o": "size=1m"}, "option o requires option device"),
        ({"type": "nfs", "device": "x"}, "use one of tmpfs"),
    ],
)
def test_bad_options(
    directory_daemon: OrlopDaemon, client: PluginClient, opts: dict[str, str], message: str
) -> None:
    reply = client.call("Create", Name="v", Opts=opts)
    assert message in reply["Err"]
    _state_is_empty(directory_daemon, client)


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "message"),
    [
        ("/VolumeDriver.Create", b"{not json", 400, "not valid JSON"),
        ("/VolumeDriver.Create", b'{"Name": 5}', 400, "field Name: Input should be a valid string"),
        ("/VolumeDriver.Create", b'{"Name": "v", "Opts": {"a": 1}}', 400, "field Opts.a"),
        ("/VolumeDriver.Create", b"[]", 400, "malformed request to /VolumeDriver.Create"),
        ("/VolumeDriver.Mount", b'{"Name": "v", "ID": []}', 400, "field ID"),
        ("/VolumeDriver.Get", b"{}", 400, "field Name: Field required"),
        ("/VolumeDriver.Nope", b"{}", 404, "unknown endpoint /VolumeDriver.Nope"),
        ("/", b"", 404, "unknown endpoint /"),
    ],
)
def test_malformed_requests(
    directory_daemon: OrlopDaemon,
    client: PluginClient,
    endpoint: str,
    body: bytes,
    status: int,
    message: str,
) -> None:
    got_status, reply = client.raw(endpoint, body)
    assert got_status == status and message in reply["Err"]
    client.ok("List")  # the same keep-alive connection still works
    _state_is_empty(directory_daemon, client)


def _raw_exchange(path: str, data: bytes, read: bool = True) -> bytes:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    chunks: list[bytes] = []
    try:
        # The server may answer early and close; its answer is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        while read and (chunk := sock.recv(65536)):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return b"".join(chunks)


def test_huge_body_refused(directory_daemon: OrlopDaemon, client: PluginClient) -> None:
    body = b'{"Name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    head = (
        f"POST /VolumeDriver.Create HTTP/1.1\r\nHost: p\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reply = _raw_exchange(client.path, head + body)
    assert reply.startswith(b"HTTP/1.1 413") and b"body too large: at most 1048576" in reply
    chunked = (
        b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"100000\r\n" + b"x" * 0x100000 + b"\r\n" for _ in range(3))
    )
    assert b"body too large" in _raw_exchange(client.path, chunked)
    _state_is_empty(directory_daemon, client)


def test_garbage_and_disconnects_leave_others_served(
    directory_daemon: OrlopDaemon, client: PluginClient
) -> None:
    client.ok("Create", Name="keep")
    assert _raw_exchange(client.path, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    # Clients that vanish mid-request: in the headers, and in the body.
    _raw_exchange(client.path, b"POST /VolumeDriver.Get HTTP/1.1\r\nHost:", read=False)
    _raw_exchange(
        client.path,
        b'POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"Name": ',
        read=False,
    )
    # A client that disconnects while its Mount is being served.
    _raw_exchange(
        client.path,
        b"POST /VolumeDriver.Mount HTTP/1.1\r\nContent-Length: 30\r\n\r\n"
        b'{"Name": "keep", "ID": "gone"}',
        read=False,
    )
    # The Mount it started was carried out and recorded all the same.
    deadline = time.monotonic() + 10
    while client.ok("Get", Name="keep")["Volume"]["Status"]["mounts"] != 1:
        assert time.monotonic() < deadline, "the abandoned Mount was never recorded"
        time.sleep(0.05)
    client.ok("Unmount", Name="keep", ID="gone")
    other = directory_daemon.client()
    assert [v["Name"] for v in other.ok("List")["Volumes"]] == ["keep"]
    assert directory_daemon.process is not None and directory_daemon.process.poll() is None


def test_remove_while_mounted(client: PluginClient) -> None:
    client.ok("Create", Name="busy")
    client.ok("Mount", Name="busy", ID="a")
    client.ok("Mount", Name="busy", ID="b")
    assert client.call("Remove", Name="busy")["Err"] == (
        "volume busy is in use by 2 mounts: stop the containers using it first"
    )
    client.ok("Unmount", Name="busy", ID="a")
    assert "in use by 1 mount:" in client.call("Remove", Name="busy")["Err"]
    client.ok("Unmount", Name="busy", ID="b")
    client.ok("Remove", Name="busy")


def test_pipelined_requests_answer_in_order(client: PluginClient) -> None:
    client.ok("Create", Name="p")
    bodies = [
        ("/VolumeDriver.Mount", {"Name": "p", "ID": "x"}),
        ("/VolumeDriver.Get", {"Name": "p"}),
        ("/VolumeDriver.Unmount", {"Name": "p", "ID": "x"}),
        ("/VolumeDriver.Path", {"Name": "p"}),
    ]
    data = (
        b"".join(
            f"POST {e} HTTP/1.1\r\nContent-Length: {len(json.dumps(b))}\r\n\r\n".encode()
            + json.dumps(b).encode()
            for e, b in bodies
        )
        + b"POST /VolumeDriver.List HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    reply = _raw_exchange(client.path, data)
    parts = [p for p in reply.split(b"HTTP/1.1 200 OK") if p]
    assert len(parts) == 5
    assert b'"Mountpoint"' in parts[0] and b'"Volume"' in parts[1]
    assert b'"mounts":1' in parts[1] and b'"Volumes"' in parts[4]


def test_sigterm_closes_sockets_and_keeps_mounts(driver_name: str) -> None:
    daemon = OrlopDaemon({driver_name: {"backend": "directory"}})
    try:
        daemon.start()
        client = daemon.client()
        client.ok("Create", Name="t", Opts={"type": "tmpfs", "device": "tmpfs", "o": "size=4m"})
        path = client.ok("Mount", Name="t", ID="c")["Mountpoint"]
        Path(path, "f").write_text("in use")
        assert daemon.kill(signal.SIGTERM) == 0
        assert not os.path.exists(daemon.socket(driver_name))
        assert not os.path.exists(daemon.admin_socket)
        assert is_mountpoint(path) and Path(path, "f").read_text() == "in use"
        daemon.start()
        client = daemon.client()
        assert client.ok("Get", Name="t")["Volume"]["Status"]["mounts"] == 1
        client.ok("Unmount", Name="t", ID="c")
        assert not is_mountpoint(path)
    finally:
        daemon.destroy()


def test_kill_9_and_restart_keeps_mount_counts(driver_name: str) -> None:
    daemon = OrlopDaemon({driver_name: {"backend": "directory"}})
    try:
        daemon.start()
        client = daemon.client()
        client.ok("Create", Name="k", Opts={"type": "tmpfs", "device": "tmpfs"})
        path = client.ok("Mount", Name="k", ID="c")["Mountpoint"]
        daemon.kill(signal.SIGKILL)
        assert is_mountpoint(path)
        daemon.start()  # a stale socket file is replaced
        client = daemon.client()
        assert "in use by 1 mount" in client.call("Remove", Name="k")["Err"]
        client.ok("Mount", Name="k", ID="c")  # Docker repeating a known ID changes nothing
        assert client.ok("Get", Name="k")["Volume"]["Status"]["mounts"] == 1
        client.ok("Unmount", Name="k", ID="c")
        assert not is_mountpoint(path)
        client.ok("Remove", Name="k")
    finally:
        daemon.destroy()


def test_leaked_mount_is_undone_at_start(driver_name: str) -> None:
    daemon = OrlopDaemon({driver_name: {"backend": "directory"}})
    try:
        daemon.start()
        client = daemon.client()
        client.ok("Create", Name="l", Opts={"type": "tmpfs", "device": "tmpfs"})
        path = client.ok("Path", Name="l")["Mountpoint"]
        daemon.kill(signal.SIGKILL)
        os.system(f"mount -t tmpfs tmpfs {path}")  # as if the daemon died mid-attach
        assert is_mountpoint(path)
        daemon.start()
        deadline = time.monotonic() + 10
        while is_mountpoint(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mountpoint(path)
    finally:
        daemon.destroy()


def test_second_daemon_on_same_socket_refused(directory_daemon: OrlopDaemon) -> None:
    again = OrlopDaemon(directory_daemon.drivers, plugin_dir=directory_daemon.plugin_dir)
    try:
        again.start(wait=False)
        assert again.wait(timeout=15) == 1
        assert "in use by a running process" in again.log()
        directory_daemon.client().ok("List")
    finally:
        again.destroy()


def test_odd_values_never_make_an_internal_error() -> None:
    """Every option of the local backends, names and IDs, through the real plugin socket."""
    directory, loopfile = unique(), unique()
    daemon = OrlopDaemon({directory: {"backend": "directory"}, loopfile: {"backend": "loopfile"}})
    try:
        daemon.start()
        for driver, kind, base in ((directory, "directory", {}), (loopfile, "loopfile", {})):
            client = daemon.client(driver)
            options = [*backend_class(kind).options.options, "color"]
            if kind == "loopfile":
                base = {"size": "16M"}  # a value the test accepts must stay small
            for value in ODD_VALUES:
                replies = [
                    client.call("Create", Name="v", Opts={**base, option: value})
                    for option in options
                ]
                replies += [client.call("Create", Name=value, Opts=base)]
                replies += [client.call(m, Name=value) for m in ("Get", "Path", "Remove")]
                replies += [client.call(m, Name=value, ID=value) for m in ("Mount", "Unmount")]
                for reply in replies:
                    assert reply["_status"] in (200, 400), reply
                    assert not reply.get("Err", "").startswith("internal error"), reply
                for volume in client.ok("List")["Volumes"]:  # values the options accept
                    client.ok("Remove", Name=volume["Name"])
    finally:
        daemon.destroy()
