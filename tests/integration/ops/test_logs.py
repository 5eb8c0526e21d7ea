"""`orlop serve --log-format json`: every line of a real daemon's log is one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.daemon import OrlopDaemon, wait_for_socket
from tests.support.names import unique
from tests.support.processes import stop_process


def test_json_log_lines() -> None:
    driver = unique()
    daemon = OrlopDaemon({driver: {"backend": "directory"}})
    process = None
    try:
        with open(daemon.log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orlop",
                    "--config",
                    str(daemon.config_path),
                    "serve",
                    "--log-format",
                    "json",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_socket(daemon.admin_socket, process=process)
        daemon.client(driver).ok("Create", Name="logged")
        stop_process(process)
        lines = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
        assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
        assert any("created volume logged" in line["message"] for line in lines)
        assert all(line["time"].endswith("+00:00") for line in lines)
    finally:
        stop_process(process)
        daemon.destroy()
