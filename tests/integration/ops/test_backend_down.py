"""A real daemon whose backend is unreachable: `orlop status` says NO, /healthz answers 503,
both say it is back once the endpoint answers, and the log has one line each way.

EBS against moto, its endpoint behind a port that refuses connections until the test
opens it (tests/support/late.py): the daemon meets a truly unreachable endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.servers.ec2.server import Ec2Proxy, SimulatedHost
from tests.support.daemon import OrlopDaemon
from tests.support.late import LateRelay
from tests.support.names import unique
from tests.support.scrape import fetch

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.servers.ec2.fixtures"]

Host = Callable[..., SimulatedHost]


@pytest.fixture
def relay(ec2_api: Ec2Proxy) -> Iterator[LateRelay]:
    port = int(ec2_api.url.rsplit(":", 1)[1])
    late = LateRelay("127.0.0.1", port)
    try:
        yield late
    finally:
        late.close()


@pytest.fixture
def start_daemon() -> Iterator[Callable[[str, dict[str, Any]], tuple[OrlopDaemon, str]]]:
    started: list[OrlopDaemon] = []

    def start(driver: str, config: dict[str, Any]) -> tuple[OrlopDaemon, str]:
        daemon = OrlopDaemon({driver: config})
        started.append(daemon)
        metrics = str(daemon.root / "metrics.sock")
        written = yaml.safe_load(daemon.config_path.read_text())
        written["metrics"] = metrics
        daemon.config_path.write_text(yaml.safe_dump(written))
        daemon.start()
        return daemon, metrics

    try:
        yield start
    finally:
        for daemon in started:
            daemon.destroy()


def status(daemon: OrlopDaemon) -> dict[str, Any]:
    result = daemon.cli("status", "--json", check=False)
    parsed: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (0 if parsed["healthy"] else 1)
    return parsed


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def transitions(daemon: OrlopDaemon, driver: str) -> list[str]:
    log = daemon.log_path.read_text(errors="replace").splitlines()
    return [
        line
        for line in log
        if f"driver {driver}: backend" in line and ("DOWN" in line or "answers again" in line)
    ]


def test_discovery_finds_the_backend_down_and_back(
    ec2_host: Host,
    relay: LateRelay,
    start_daemon: Callable[[str, dict[str, Any]], tuple[OrlopDaemon, str]],
) -> None:
    driver = unique("ebs-down")
    config = ec2_host(endpoint_url=relay.url()).driver_config()
    config["settings"]["discover_interval"] = 0.5  # no request needed: discovery finds it
    daemon, metrics = start_daemon(driver, config)

    def down_status() -> dict[str, Any] | None:
        found = status(daemon)
        return found if found["drivers"][0]["backend_reachable"] is False else None

    found = wait_for("status says the backend is down", down_status)
    (only,) = found["drivers"]
    assert found["healthy"] is False and found["down"] == [driver]
    assert only["backend_since"].endswith("Z") and "cannot reach" in only["backend_error"]
    assert only["backend_fault_source"] in ("provider call", "discovery")
    text = daemon.cli("status", check=False)
    assert text.returncode == 1 and "orlop: NOT HEALTHY" in text.stdout
    assert f"backend reachable: NO since {only['backend_since']}: " in text.stdout
    code, body = fetch(metrics, "/healthz")
    assert code == 503 and json.loads(body)["down"] == [driver]
    assert json.loads(body)["status"] == "down"
    time.sleep(1.5)  # a few more failed discovery passes: still one line
    assert len(transitions(daemon, driver)) == 1

    relay.open()
    wait_for("status says the backend is back", lambda: status(daemon)["healthy"])
    (only,) = status(daemon)["drivers"]
    assert only["backend_reachable"] is True and only["backend_error"] is None
    assert only["backend_last_answer"] is not None
    code, body = fetch(metrics, "/healthz")
    assert code == 200 and json.loads(body)["down"] == []
    went_down, came_back = transitions(daemon, driver)
    assert "backend DOWN" in went_down and "cannot reach" in went_down
    assert "backend answers again" in came_back


def test_a_request_shows_it_down_at_once_and_a_success_back(
    ec2_host: Host,
    relay: LateRelay,
    start_daemon: Callable[[str, dict[str, Any]], tuple[OrlopDaemon, str]],
) -> None:
    driver = unique("ebs-req")
    config = ec2_host(endpoint_url=relay.open().url()).driver_config()
    config["settings"]["discover_interval"] = 3600  # one pass at start, then only requests
    daemon, metrics = start_daemon(driver, config)
    wait_for("the first discovery pass", lambda: status(daemon)["drivers"][0]["backend_reachable"])
    relay.shut()  # the endpoint goes away
    client = daemon.client(driver)
    refused = client.call("Create", Name="v1", Opts={"size": "1G"})
    assert "cannot reach" in refused["Err"]
    found = status(daemon)  # at once: the request's failed attempts said so
    assert found["healthy"] is False and found["drivers"][0]["backend_reachable"] is False
    assert fetch(metrics, "/healthz")[0] == 503
    relay.open()
    client.ok("Create", Name="v1", Opts={"size": "1G"})
    assert status(daemon)["healthy"] is True and fetch(metrics, "/healthz")[0] == 200
    assert len(transitions(daemon, driver)) == 2
    client.ok("Remove", Name="v1")
