"""A real `orlop serve` with the metrics listener: scraped after real Docker protocol calls."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.scrape import fetch, samples, value

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_metrics(daemon: OrlopDaemon, address: str) -> OrlopDaemon:
    config = yaml.safe_load(daemon.config_path.read_text())
    config["metrics"] = address
    daemon.config_path.write_text(yaml.safe_dump(config))
    return daemon


def wait_for_page(address: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fetch(address, "/healthz")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def metrics_daemon() -> Iterator[tuple[OrlopDaemon, str]]:
    driver = unique("orlop-m")
    daemon = OrlopDaemon({driver: {"backend": "directory"}})
    address = str(daemon.root / "metrics.sock")
    try:
        with_metrics(daemon, address).start()
        wait_for_page(address)
        yield daemon, address
    finally:
        daemon.destroy()


def test_scrape_after_real_operations(metrics_daemon: tuple[OrlopDaemon, str]) -> None:
    daemon, address = metrics_daemon
    driver = next(iter(daemon.drivers))
    client = daemon.client()
    client.ok("Create", Name="v1", Opts={})
    client.ok("Mount", Name="v1", ID="c1")
    failed = client.call("Create", Name="v2", Opts={"nosuchoption": "hunter2-secret"})
    assert failed["Err"]
    status, text = fetch(address, "/metrics")
    assert status == 200
    page = samples(text)
    for operation in ("create", "mount"):
        assert value(page, "orlop_operations_total", driver=driver, operation=operation) >= 1
    labels = {"driver": driver, "operation": "create", "kind": "InvalidOption"}
    assert value(page, "orlop_operation_errors_total", **labels) == 1
    assert value(page, "orlop_volume_mounts", driver=driver, volume="v1") == 1
    assert value(page, "orlop_volume_attached", driver=driver, volume="v1") == 1
    assert value(page, "orlop_volumes", driver=driver) == 1
    assert "hunter2" not in text
    client.ok("Unmount", Name="v1", ID="c1")
    client.ok("Remove", Name="v1")
    page = samples(fetch(address, "/metrics")[1])
    assert value(page, "orlop_volumes", driver=driver) == 0
    assert value(page, "orlop_operations_total", driver=driver, operation="remove") == 1


def test_healthz_reports_drivers_and_recovery(metrics_daemon: tuple[OrlopDaemon, str]) -> None:
    daemon, address = metrics_daemon
    deadline = time.monotonic() + 10
    while True:
        status, body = fetch(address, "/healthz")
        health = json.loads(body)
        if health["recovery"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200
    assert health == {
        "status": "ok",
        "recovery": "done",
        "drivers": dict.fromkeys(daemon.drivers, True),
        "down": [],  # no driver's backend is down
    }
    page = samples(fetch(address, "/metrics")[1])
    assert value(page, "orlop_background_last_success_timestamp_seconds", work="recovery") > 0


def test_tcp_listener_and_off_by_default() -> None:
    driver = unique("orlop-m")
    daemon = OrlopDaemon({driver: {"backend": "directory"}})
    try:
        daemon.start()
        assert "metrics listening" not in daemon.log()
        daemon.stop()
        address = f"127.0.0.1:{free_port()}"
        with_metrics(daemon, address).start()
        wait_for_page(address)
        assert fetch(address, "/metrics")[0] == 200
        assert f"metrics listening on {address}" in daemon.log()
    finally:
        daemon.destroy()
