"""PowerFlex logins: one authenticated client per driver. A volume's whole life (create,
attach, detach, remove) and discovery passes take one login per token lifetime, a token the
gateway ends is replaced by one new login, and close logs out. (PyPowerFlex alone logs in
once or twice for every request and never leaves a session ended.) And the order the
gateway answers in: a mapping at once, its device on the SDC later."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.powerflex.provider import PowerFlexProvider
from tests.contracts.cloud import backend_for
from tests.servers.powerflex.server import PowerFlexGateway, Tls
from tests.servers.powerflex.testbed import PowerFlexTestbed
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique

pytest_plugins = ["tests.servers.powerflex.fixtures"]

BOTH_APIS = pytest.mark.parametrize("pf_api_version", ["3.6", "4.5"])


def _testbed(gateway: PowerFlexGateway, tls: Tls, password: Path, root: Path) -> PowerFlexTestbed:
    root.mkdir()
    return PowerFlexTestbed(gateway, tls, password, root)


def logins(gateway: PowerFlexGateway) -> int:
    """Sessions begun: on 4.x the client's first 3.x login only asks the version."""
    with gateway.lock:
        return gateway.logins["rest"] if gateway.api_version >= "4" else gateway.logins["api"]


@BOTH_APIS
def test_one_login_over_a_volume_cycle_and_discovery_then_logout(
    pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
) -> None:
    backend = backend_for(_testbed(pf_gateway, pf_tls, pf_password, tmp_path / "t").host())
    disks = backend.provider
    ref = VolumeRef("logins", disks.options.validate({"size": "8G"}))
    ref.record = disks.create(ref)
    disks.attach_device(ref)
    disks.detach_device(ref)
    for _ in range(3):
        assert [name for name, _, _ in backend.list_volumes()] == ["logins"]
    disks.remove(ref)
    assert logins(pf_gateway) == 1, pf_gateway.logins
    assert pf_gateway.logins["api"] <= 1  # 4.x: the version question, its session ended
    assert len(pf_gateway.tokens) == 1  # one session open, the driver's

    provider = disks.cloud
    assert isinstance(provider, PowerFlexProvider)
    provider.close()
    assert pf_gateway.tokens == {} and pf_gateway.logouts >= 1


@BOTH_APIS
def test_a_token_the_gateway_ended_is_replaced_by_one_new_login(
    pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
) -> None:
    backend = backend_for(_testbed(pf_gateway, pf_tls, pf_password, tmp_path / "t").host())
    assert backend.list_volumes() == []
    first = logins(pf_gateway)
    assert first == 1
    pf_gateway.expire_tokens()  # the gateway ends the session; the client holds the token
    assert backend.list_volumes() == []
    assert backend.list_volumes() == []
    assert logins(pf_gateway) == first + 1
    assert len(pf_gateway.tokens) == 1


def test_attach_waits_for_the_device_the_sdc_shows_after_the_mapping(
    pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
) -> None:
    """Mapping is synchronous, the device is not: with the device 300 ms behind the mapping
    and 30 ms a request, attach answers only with a device that is there, and each
    attach/detach cycle still takes one login in all."""
    pf_gateway.device_delay, pf_gateway.latency = 0.3, 0.03
    backend = backend_for(_testbed(pf_gateway, pf_tls, pf_password, tmp_path / "t").host())
    disks = backend.provider
    ref = VolumeRef("late-device", disks.options.validate({"size": "8G"}))
    ref.record = disks.create(ref)
    try:
        for _ in range(3):
            device = disks.attach_device(ref)
            assert os.path.exists(device) and os.path.realpath(device).startswith("/dev/")
            disks.detach_device(ref)
            assert pf_gateway.volumes[ref.record["disk_id"]]["mappedSdcInfo"] in (None, [])
    finally:
        pf_gateway.device_delay = pf_gateway.latency = 0.0
        disks.detach_device(ref)
        disks.remove(ref)
    assert logins(pf_gateway) == 1


def test_a_daemon_logs_in_once_across_discovery_passes_and_out_when_it_stops(
    pf_gateway: PowerFlexGateway, pf_tls: Tls, pf_password: Path, tmp_path: Path
) -> None:
    host = _testbed(pf_gateway, pf_tls, pf_password, tmp_path / "t").host()
    config = host.driver_config()
    config["settings"] = {**config["settings"], "discover_interval": 0.2}
    driver = unique("pf-logins")
    daemon = OrlopDaemon({driver: config})
    try:
        client = daemon.start().client(driver)
        client.ok("Create", Name="kept", Opts={"size": "8G"})
        client.ok("Mount", Name="kept", ID="c1")
        client.ok("Unmount", Name="kept", ID="c1")
        time.sleep(1.0)  # a few discovery passes
        assert [v["Name"] for v in client.ok("List")["Volumes"]] == ["kept"]
        client.ok("Remove", Name="kept")
        assert daemon.kill(signal.SIGTERM) == 0
    finally:
        daemon.destroy()
    assert logins(pf_gateway) == 1, pf_gateway.logins
    assert pf_gateway.tokens == {}  # logged out at shutdown: no session left open
