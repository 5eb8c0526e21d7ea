"""`orlop events` on a real daemon: a volume's create, mount, unmount and remove through its
driver socket (Docker's protocol) are listed in order, one operation ID per request, the same
ID on the daemon's log lines of that request; `--follow` streams; a restart keeps them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orlop.cli.client import _UnixConnection
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.processes import stop_process

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon() -> Iterator[OrlopDaemon]:
    daemon = OrlopDaemon({unique("orlop-ev"): {"backend": "directory"}})
    try:
        yield daemon.start()
    finally:
        daemon.destroy()


def events(daemon: OrlopDaemon, *args: str) -> list[dict[str, Any]]:
    output = daemon.cli("events", "--json", *args).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def tagged_by(log: list[str], op: str) -> list[str]:
    return [line for line in log if f"op={op}" in line]


def test_a_volume_followed_through_events_and_log(daemon: OrlopDaemon) -> None:
    name = unique("ev")
    client = daemon.client()
    client.ok("Create", Name=name, Opts={"mode": "0750"})
    client.ok("Mount", Name=name, ID="c1")
    client.ok("Unmount", Name=name, ID="c1")
    client.ok("Remove", Name=name)

    mine = [e for e in events(daemon, "--since", "1m") if e["volume"] == name]
    assert [e["kind"] for e in mine] == ["created", "mounted", "unmounted", "removed"]
    ops = [e["op"] for e in mine]
    assert all(ops) and len(set(ops)) == 4  # one ID per request
    assert {e["host"] for e in mine} == {socket.gethostname()}
    assert all(e["driver"] == next(iter(daemon.drivers)) for e in mine)
    assert mine[0]["details"]["options"]["mode"] == "0750"
    assert [e["seq"] for e in mine] == sorted(e["seq"] for e in mine)

    log = daemon.log().splitlines()
    for event in mine:
        tagged = [line for line in log if f"op={event['op']}" in line]
        assert tagged, f"no log line carries op={event['op']}"
        assert all(f"volume={name} op={event['op']}" in line for line in tagged)
    created_lines = [line for line in log if f"created volume {name} " in line]
    assert created_lines and all(f"op={ops[0]}" in line for line in created_lines)
    assert any(f"event mounted: mounted volume {name}" in line for line in tagged_by(log, ops[1]))

    text = daemon.cli("events", "--since", "1m").stdout.splitlines()
    shown = [line for line in text if f"/{name} " in line]
    assert len(shown) == 4 and shown[1].split()[1] == "mounted" and f"op={ops[1]}" in shown[1]

    # a restart keeps the journal
    daemon.stop()
    daemon.start()
    after = [e for e in events(daemon) if e["volume"] == name]
    assert [e["op"] for e in after] == ops
    assert any(e["kind"] == "recovery_finished" for e in events(daemon, "--since", "1m"))


def test_follow_streams_new_events(daemon: OrlopDaemon) -> None:
    name = unique("fw")
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orlop",
            "--config",
            str(daemon.config_path),
            "events",
            "--json",
            "--follow",
            "--since",
            "1s",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        # Idle for longer than the CLI's 10 s to reach the daemon: a follow has no timeout.
        time.sleep(12.0)
        assert follower.poll() is None, "the follower gave up while nothing happened"
        daemon.client().ok("Create", Name=name, Opts={})
        assert follower.stdout is not None
        seen: list[dict[str, Any]] = []
        stdout = follower.stdout
        reader = threading.Thread(
            target=lambda: seen.extend(json.loads(line) for line in stdout if line.strip()),
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + 20
        while not any(e["volume"] == name for e in seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [e["kind"] for e in seen if e["volume"] == name] == ["created"]
        assert follower.poll() is None  # still following
    finally:
        stop_process(follower)


def test_bad_since_is_refused_on_the_json_error_path(daemon: OrlopDaemon) -> None:
    refused = daemon.cli("events", "--json", "--since", "yesterday", check=False)
    assert refused.returncode == 1
    assert "duration" in json.loads(refused.stdout)["error"]
    assert "orlop: invalid since 'yesterday'" in refused.stderr


def test_the_admin_api_answers_a_get_with_a_query(daemon: OrlopDaemon) -> None:
    name = unique("get")
    daemon.client().ok("Create", Name=name, Opts={})

    def get(query: str) -> tuple[int, str, bytes]:
        connection = _UnixConnection(daemon.admin_socket, 10)
        try:
            connection.request("GET", f"/v1/events?{query}")
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    status, kind, body = get("since=1m&follow=0")
    assert (status, kind) == (200, "application/x-ndjson")
    created = [json.loads(line) for line in body.splitlines()]
    assert [e["kind"] for e in created if e["volume"] == name] == ["created"]
    status, _, body = get("since=soon")
    assert status == 400 and "invalid since 'soon'" in json.loads(body)["Err"]
    status, _, body = get("follow=maybe")
    assert status == 400 and "invalid follow 'maybe'" in json.loads(body)["Err"]
    status, _, body = get("sinse=1m")
    assert status == 400 and "sinse" in json.loads(body)["Err"]
