"""`orlop status [--json]` through the CLI, on a real daemon."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon() -> Iterator[OrlopDaemon]:
    daemon = OrlopDaemon({unique("orlop-s"): {"backend": "directory"}})
    try:
        yield daemon.start()
    finally:
        daemon.destroy()


def status_after_recovery(daemon: OrlopDaemon) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status: dict[str, Any] = json.loads(daemon.cli("status", "--json").stdout)
        if status["recovery"]["state"] != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_status_json_per_driver(daemon: OrlopDaemon) -> None:
    driver = next(iter(daemon.drivers))
    status = status_after_recovery(daemon)
    assert status["healthy"] is True
    assert status["recovery"] == {"state": "done", "volumes_in_transition": 0}
    assert status["metrics"] is None
    (only,) = status["drivers"]
    assert only["name"] == driver and only["serving"] is True
    assert only["backend_reachable"] is None  # no backend call yet
    assert status["background"]["recovery"]["last_result"] == "ok"
    client = daemon.client()
    client.ok("Create", Name="s1", Opts={})
    client.ok("Mount", Name="s1", ID="c1")
    (only,) = status_after_recovery(daemon)["drivers"]
    assert only["backend_reachable"] is True
    assert (only["volumes"], only["attached"], only["faulted"]) == (1, 1, [])
    client.ok("Unmount", Name="s1", ID="c1")


def test_status_text_and_exit_codes(daemon: OrlopDaemon) -> None:
    status_after_recovery(daemon)
    text = daemon.cli("status").stdout
    driver = next(iter(daemon.drivers))
    assert "orlop: healthy" in text
    assert f"driver {driver} (directory): serving; backend reachable: unknown" in text
    daemon.stop()
    gone = daemon.cli("status", check=False)
    assert gone.returncode == 1
    assert "the orlop daemon is not running" in gone.stderr


def test_status_json_when_the_daemon_is_not_running(daemon: OrlopDaemon) -> None:
    daemon.stop()
    gone = daemon.cli("status", "--json", check=False)
    assert gone.returncode == 1
    assert json.loads(gone.stdout) == {"error": gone.stderr.strip().removeprefix("orlop: ")}
    assert "the orlop daemon is not running" in json.loads(gone.stdout)["error"]
