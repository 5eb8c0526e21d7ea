"""Boot order: dockerd and Orlop start together, the file server answers only later, and a
`--restart always` container on an Orlop volume still comes back running with its data.

A private dockerd (tests/support/dockerd.py), an sshfs volume on a test sshd. Both daemons
stop as at a host's shutdown (dockerd keeps its containers); then Orlop and dockerd start
at the same moment with sshd down, and sshd starts `DELAY` seconds later. dockerd starts the
container at once; its Mount reaches Orlop before the backend ever answered, and Orlop
tries the attach again until sshd answers (orlop.core.boot) instead of failing it: dockerd
would not start the container a second time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.servers.sshd.server import Sshd
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import IMAGE, Dockerd
from tests.support.names import unique

pytestmark = pytest.mark.e2e

PLUGIN_DIR = "/run/docker/plugins"  # dockerd looks for plugin sockets only here
DELAY = 8.0  # seconds sshd stays down after both daemons started
# Each start of the container appends a line; the first one writes the data.
SCRIPT = (
    "test -f /data/data || echo precious > /data/data; "
    "echo started >> /data/starts; exec sleep 100000"
)


@pytest.fixture
def sshd() -> Iterator[Sshd]:
    server = Sshd()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def engine() -> Iterator[Dockerd]:
    dockerd = Dockerd()
    try:
        dockerd.start()
        dockerd.ensure_image()
        yield dockerd
    finally:
        dockerd.destroy()


def state(engine: Dockerd, name: str) -> dict[str, object]:
    found = engine.run("inspect", "-f", "{{json .State}}", name, check=False)
    return json.loads(found.stdout) if found.returncode == 0 else {}


def wait_running(engine: Dockerd, name: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        now = state(engine, name)
        if now.get("Running") or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def test_restart_always_container_comes_back_when_the_backend_answers_late(
    engine: Dockerd, sshd: Sshd
) -> None:
    driver = unique("orlop-boot")
    base = sshd.data / unique("boot")
    base.mkdir()
    orlop = OrlopDaemon(
        {driver: {"backend": "sshfs", "options": sshd.options(path=str(base))}},
        plugin_dir=PLUGIN_DIR,
    )
    volume, name = unique("bootvol"), unique("boot-c")
    late: threading.Timer | None = None
    try:
        orlop.start()
        engine.run("volume", "create", "-d", driver, volume)
        engine.run(
            "run", "-d", "--name", name, "--restart", "always", "--network", "none",
            "-v", f"{volume}:/data", IMAGE, "sh", "-c", SCRIPT,
        )  # fmt: skip
        assert wait_running(engine, name, 60).get("Running"), engine.log()[-3000:]

        # Shutdown: dockerd stops the container (Orlop unmounts), then Orlop, then the server.
        engine.stop_keeping_containers()
        orlop.stop()
        sshd.stop()
        assert (base / volume / "starts").read_text().split() == ["started"]

        # Boot: both daemons at once, the server only DELAY seconds later.
        started = time.monotonic()
        late = threading.Timer(DELAY, sshd.start)
        late.start()
        orlop.start(wait=False)
        engine.start()
        now = wait_running(engine, name, 110)
        took = time.monotonic() - started
        assert now.get("Running"), (now, engine.log()[-3000:], orlop.log_path.read_text()[-3000:])
        assert took >= DELAY - 1  # it did wait for the server
        mounted = engine.run("exec", name, "cat", "/data/data", "/data/starts").stdout
        assert mounted.split() == ["precious", "started", "started"]
        log = orlop.log_path.read_text(errors="replace")
        assert "has not answered since start" in log and "(boot order)" in log
        assert "the backend answered after" in log
    finally:
        if late is not None:
            late.cancel()
            late.join()
        with contextlib.suppress(Exception):
            engine.run("rm", "-f", name, check=False)
            engine.run("volume", "rm", "-f", volume, check=False)
        orlop.destroy()
