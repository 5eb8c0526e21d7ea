"""PowerScale sessions: one login per driver over a whole volume lifecycle and discovery
passes, a new login only when the cluster ends the session, a logout at shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.share.powerscale.backend import PowerScaleBackend
from tests.support import network_fixtures, share_fixtures
from tests.support.daemon import OrlopDaemon
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.share_fixtures import PowerScaleCluster

samba = share_fixtures.samba
powerscale = share_fixtures.powerscale
unmount_all = network_fixtures.unmount_all
OPTIONS = {"size": "32M", "protocol": "smb", "timeout": "60"}


@pytest.fixture
def harness(tmp_path: Path, powerscale: PowerScaleCluster) -> Iterator[Harness]:
    settings = powerscale.settings(base_path=f"/ifs/{unique('logins')}")
    backend = PowerScaleBackend(BackendContext("isi", str(tmp_path / "driver"), {}, settings))
    harness = Harness(backend, "isi", str(tmp_path / "db"))
    try:
        yield harness
    finally:
        if not harness.loop.is_closed():
            harness.close()
        unmount_all(str(tmp_path))


def test_one_login_per_session_and_a_logout_at_shutdown(
    harness: Harness, powerscale: PowerScaleCluster
) -> None:
    cluster = powerscale.server
    logins, logouts, sessions = cluster.logins, cluster.logouts, len(cluster.sessions)
    for _ in range(3):
        harness.run(harness.service.discover("isi"))
    harness.create("cycle", **OPTIONS)
    Path(harness.mount("cycle", "m1"), "f").write_text("x")
    harness.run(harness.service.refresh_usage("isi", "cycle"))
    harness.unmount("cycle", "m1")
    for _ in range(3):
        harness.run(harness.service.discover("isi"))
    harness.remove("cycle")
    assert cluster.logins - logins == 1
    assert len(cluster.sessions) == sessions + 1
    harness.close()  # the daemon stops
    assert cluster.logouts - logouts == 1
    assert len(cluster.sessions) == sessions  # no session left open on the cluster


def test_a_session_the_cluster_ended_is_opened_again_once(
    harness: Harness, powerscale: PowerScaleCluster
) -> None:
    cluster = powerscale.server
    harness.run(harness.service.discover("isi"))
    logins = cluster.logins
    cluster.end_sessions()  # the cluster restarted, or an administrator ended them
    harness.create("again", **OPTIONS)
    harness.run(harness.service.discover("isi"))
    assert cluster.logins - logins == 1
    harness.remove("again")


def test_a_daemon_logs_in_once_and_out_at_stop(powerscale: PowerScaleCluster) -> None:
    cluster, driver = powerscale.server, unique("isi")
    settings = powerscale.settings(base_path=f"/ifs/{unique('serve')}", discover_interval=0.2)
    daemon = OrlopDaemon(
        {driver: {"backend": "powerscale", "options": OPTIONS, "settings": settings}}
    )
    logins, logouts = cluster.logins, cluster.logouts
    try:
        daemon.start()
        client = daemon.client(driver)
        client.ok("Create", Name="served", Opts={})
        client.ok("Mount", Name="served", ID="m1")
        client.ok("Unmount", Name="served", ID="m1")
        client.ok("Remove", Name="served")
        time.sleep(1.5)  # several discovery passes
        daemon.kill(signal.SIGTERM)
        # The daemon's own count (the cluster is shared with the session's other tests).
        assert daemon.log().count(": logged in (session ") == 1, daemon.log()
        assert cluster.logins - logins >= 1 and cluster.logouts - logouts >= 1
    finally:
        daemon.destroy()
