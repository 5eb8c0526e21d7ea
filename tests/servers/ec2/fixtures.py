"""pytest fixtures for EBS tests. A test module loads them with
`pytest_plugins = ["tests.servers.ec2.fixtures"]`, so only EBS tests start a moto server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orlop.host.mounts import mounts_under, unmount
from tests.servers.ec2.server import (
    CREDENTIALS,
    REGION,
    ZONE,
    EbsTestbed,
    Ec2Proxy,
    MotoServer,
    SimulatedHost,
    SimulatedNode,
    namespace_volumes,
    run_instance,
    unset_ca_bundles,
)
from tests.support.cloud.presenter import DevicePresenter
from tests.support.names import unique


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    saved = dict(os.environ)
    unset_ca_bundles()
    server = MotoServer()
    try:
        yield server.start()
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def ec2_api(moto: MotoServer) -> Iterator[Ec2Proxy]:
    """EC2 as Orlop meets it: moto behind a proxy that refuses a second attachment."""
    proxy = Ec2Proxy(moto.url)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def presenter() -> Iterator[DevicePresenter]:
    shared = DevicePresenter()
    try:
        yield shared
    finally:
        shared.destroy()


@pytest.fixture
def namespace() -> str:
    return unique("ns")


@pytest.fixture
def ec2_host(
    moto: MotoServer, ec2_api: Ec2Proxy, presenter: DevicePresenter, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., SimulatedHost]]:
    """Make simulated hosts: `ec2_host(style="xen", present=True, endpoint_url=…)`."""
    hosts: list[SimulatedHost] = []

    def make(
        style: str = "nvme", present: bool = True, endpoint_url: str | None = None
    ) -> SimulatedHost:
        client = moto.client()
        instance_id = run_instance(client)
        root = tmp_path / instance_id
        node = SimulatedNode(client, instance_id, presenter, root, style, present)
        node.start()
        settings: dict[str, Any] = {
            **CREDENTIALS,
            "region": REGION,
            "endpoint_url": endpoint_url or ec2_api.url,
            "instance_id": instance_id,
            "availability_zone": ZONE,
            "namespace": namespace,
            "attach_timeout": 8,
            "detach_timeout": 8,
            "create_timeout": 8,
            "claim_settle": 0.3,
            "api_retry_base": 0.01,
            "api_retry_cap": 0.05,
            "poll_max": 0.2,
            **node.settings(),
        }
        host = SimulatedHost(instance_id, node, settings, root / "state")
        hosts.append(host)
        return host

    try:
        yield make
        # Every test ends with its volumes unmounted: no mount of ours may linger.
        assert mounts_under(str(tmp_path)) == []
    finally:
        for mounted in mounts_under(str(tmp_path)):
            with contextlib.suppress(Exception):
                unmount(mounted, lazy_if_busy=True)
        client = moto.client()
        for host in hosts:
            host.node.stop()
        # Leave no attachment behind for the next test's nodes to present.
        for volume in namespace_volumes(client, namespace):
            for attachment in volume.get("Attachments", []):
                with contextlib.suppress(Exception):
                    client.detach_volume(
                        VolumeId=volume["VolumeId"], InstanceId=attachment["InstanceId"]
                    )
        for host in hosts:
            with contextlib.suppress(Exception):
                client.terminate_instances(InstanceIds=[host.instance_id])


@pytest.fixture
def ebs_testbed(ec2_host: Callable[..., SimulatedHost], moto: MotoServer) -> EbsTestbed:
    return EbsTestbed(ec2_host, moto)
