"""The classic volume plugin protocol on Docker Engine 28, what most users run now.

tests/e2e/docker/test_docker.py runs against this machine's dockerd (Debian 12's 20.10);
this is its core on a standalone dockerd of the Engine 28 that `scripts/setup --test`
caches for the Swarm tests (its own data-root, exec-root and socket; no Swarm): create,
a container writing, another reading, `--mount` with `volume-driver=`, remove. The Orlop
daemon is the e2e session's (directory driver), found in /run/docker/plugins as by any
dockerd."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.swarm import SwarmNode, engine_dir


@pytest.fixture(scope="module")
def engine28() -> Iterator[SwarmNode]:
    engine = engine_dir()
    if engine is None:
        pytest.skip("Docker Engine 28 is not cached: run scripts/setup --test")
    dockerd = SwarmNode(engine, "127.0.0.1", "engine28")  # a plain dockerd: never joins a Swarm
    try:
        dockerd.start()
        dockerd.ensure_image()
        yield dockerd
    finally:
        dockerd.destroy()


def test_a_volume_written_and_read_on_engine_28(
    engine28: SwarmNode, orlop_e2e: OrlopDaemon
) -> None:
    version = engine28.run("version", "-f", "{{.Server.Version}}").stdout.strip()
    assert version.startswith("28."), version
    driver = next(iter(orlop_e2e.drivers))
    name = unique("e28")
    engine28.run("volume", "create", "-d", driver, "--opt", "mode=0750", name)
    (info,) = json.loads(engine28.run("volume", "inspect", name).stdout)
    assert info["Driver"] == driver and info["Status"]["backend"] == "directory"
    assert info["Status"]["options"] == {"mode": "0750"}

    engine28.sh(name, "stat -c %a /data > /data/mode; echo written on 28 > /data/row")
    client = orlop_e2e.client()
    assert client.ok("Get", Name=name)["Volume"]["Status"]["mounts"] == 0  # --rm unmounted it
    read = engine28.sh(f"type=volume,src={name},dst=/data,volume-driver={driver}", "cat /data/*")
    assert read.split("\n") == ["750", "written on 28", ""]  # the mode file, then the row

    engine28.run("volume", "rm", name)
    listed = engine28.run("volume", "ls", "-q", "--filter", f"driver={driver}").stdout.split()
    assert name not in listed
    assert "not found" in client.call("Get", Name=name)["Err"]
