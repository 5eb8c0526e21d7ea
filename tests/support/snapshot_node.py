"""A restartable orlop daemon with a directory and a loopfile driver, its state on a real
host filesystem, and a local restic repository: for snapshot, clone, restore and backup tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from orlop.cli.client import AdminClient
from orlop.core.failpoints import FAILPOINT_EXIT_STATUS
from orlop.core.model import OrlopError
from tests.support.block import cleanup, loop_devices_under
from tests.support.daemon import OrlopDaemon
from tests.support.hostfs import HostFilesystem
from tests.support.names import unique


def repository_settings(root: str, location: str | None = None) -> dict[str, Any]:
    """Settings for a restic repository (a local directory unless `location` is given)."""
    password = os.path.join(root, "restic.pass")
    if not os.path.exists(password):
        with open(os.open(password, os.O_WRONLY | os.O_CREAT, 0o600), "w") as file:
            file.write("orlop-test-repository-password\n")
    return {
        "backup_repository": location or os.path.join(root, "repository"),
        "backup_password_file": password,
    }


class SnapshotNode:
    def __init__(self, hostfs: HostFilesystem, settings: dict[str, Any] | None = None) -> None:
        self.root = os.path.join(hostfs.path, unique("node"))
        os.makedirs(self.root)
        self.dir_driver = unique("dir")
        self.blk_driver = unique("blk")
        settings = settings if settings is not None else repository_settings(self.root)
        self.daemon = OrlopDaemon(
            {
                self.dir_driver: {"backend": "directory", "settings": settings},
                self.blk_driver: {
                    "backend": "loopfile",
                    "options": {"size": "64M", "fs": "ext4"},
                    "settings": settings,
                },
            },
            root=self.root,
        )
        self.state = str(self.daemon.state_dir)

    def start(self, failpoint: str = "") -> SnapshotNode:
        self.daemon.start(extra_env={"ORLOP_FAILPOINTS": failpoint})
        return self

    def restart(self, failpoint: str = "") -> None:
        assert self.daemon.kill(signal.SIGTERM) == 0
        self.start(failpoint)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli(*args, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def api(self, endpoint: str, **body: Any) -> Any:
        """A call on the admin socket, in this process (faster than the CLI)."""
        return AdminClient(self.daemon.admin_socket, timeout=300).call(endpoint, **body)

    def crash_on(self, endpoint: str, **body: Any) -> None:
        """Make the admin call, which must reach the armed fail point."""
        try:
            result = self.api(endpoint, **body)
        except OrlopError as error:
            result = error  # the connection dies with the daemon
        status = self.daemon.wait(timeout=120)
        assert status == FAILPOINT_EXIT_STATUS, (result, self.daemon.log()[-3000:])

    def plugin(self, driver: str) -> Any:
        return self.daemon.client(driver)

    def driver_dir(self, driver: str, *parts: str) -> str:
        return os.path.join(self.state, "drivers", driver, *parts)

    def half_made(self) -> list[str]:
        """Everything a half-done snapshot, clone, restore or backup could leave behind."""
        found = []
        for driver in (self.dir_driver, self.blk_driver):
            for sub in ("snapshots", "backup", "restoring", "freezing"):
                path = self.driver_dir(driver, sub)
                if os.path.isdir(path):
                    found += [
                        f"{sub}/{e}"
                        for e in os.listdir(path)
                        if e.startswith(".") or sub != "snapshots"
                    ]
            for sub in ("volumes", "images"):
                path = self.driver_dir(driver, sub)
                for entry in os.listdir(path) if os.path.isdir(path) else []:
                    if entry.endswith((".part", ".restore")):
                        found.append(f"{sub}/{entry}")
                    inner = os.path.join(path, entry)
                    if os.path.isdir(inner):
                        found += [f"{sub}/{entry}/{e}" for e in os.listdir(inner) if e != "_data"]
        found += loop_devices_under(self.driver_dir(self.blk_driver, "backup"))
        return found

    def destroy(self) -> None:
        self.daemon.stop()
        cleanup(self.root)
        self.daemon.destroy()
