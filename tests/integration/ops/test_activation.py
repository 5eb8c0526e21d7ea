"""Socket activation (sd_listen_fds) from a real daemon, without systemd: the sockets are
bound here first, calls sent before the daemon starts are answered once it serves, and the
sockets (systemd's) stay listening across a daemon restart."""

from __future__ import annotations

import json
import os
import signal

from tests.support.activation import listening, start_activated
from tests.support.daemon import OrlopDaemon
from tests.support.names import unique
from tests.support.plugin_client import PluginClient


def test_calls_sent_before_the_daemon_starts_are_answered_on_the_passed_sockets() -> None:
    first, second = unique(), unique()
    daemon = OrlopDaemon({first: {"backend": "directory"}, second: {"backend": "directory"}})
    sockets = {
        first: listening(daemon.socket(first)),
        second: listening(daemon.socket(second)),
        "admin": listening(daemon.admin_socket),
    }
    bound = os.stat(daemon.socket(first)).st_ino
    try:
        create = PluginClient(daemon.socket(first)).connection
        create.request("POST", "/VolumeDriver.Create", body=json.dumps({"Name": "v1"}).encode())
        activate = PluginClient(daemon.socket(second)).connection
        activate.request("POST", "/Plugin.Activate", body=b"{}")
        start_activated(daemon, sockets)  # both calls are queued already
        assert json.loads(create.getresponse().read()) == {"Err": ""}
        assert json.loads(activate.getresponse().read()) == {"Implements": ["VolumeDriver"]}
        assert os.stat(daemon.socket(first)).st_ino == bound  # served, not bound anew
        assert "v1" in daemon.cli("volume", "ls").stdout  # the admin socket was passed too
        assert daemon.kill(signal.SIGTERM) == 0
        assert os.path.exists(daemon.socket(first))  # left to its owner, still listening
        late = PluginClient(daemon.socket(first)).connection
        late.request("POST", "/VolumeDriver.Get", body=json.dumps({"Name": "v1"}).encode())
        start_activated(daemon, sockets)
        assert json.loads(late.getresponse().read())["Volume"]["Name"] == "v1"
        assert "serving on the socket systemd passed" in daemon.log()
    finally:
        daemon.destroy()
        for sock in sockets.values():
            sock.close()
