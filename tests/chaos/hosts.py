"""One simulated host of a chaos run: its `orlop serve`, its writer, and what Docker would
still send it. Calls go over the host's real plugin socket, one connection each (a daemon
killed and restarted answers the next call); a daemon that dies during a call raises
`DaemonGone`."""

from __future__ import annotations

import contextlib
import http.client
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.chaos.worlds import Host
from tests.support.daemon import OrlopDaemon, wait_for_socket
from tests.support.plugin_client import PluginClient
from tests.support.processes import stop_process

WRITER = str(Path(__file__).with_name("writer.py"))
DRIVER = "chaos"
RECORDS = "records"  # the file the writer appends to, in the volume


class DaemonGone(Exception):
    """The host's Orlop is down, or died while answering."""


class CallTimedOut(DaemonGone):
    """The host's Orlop is alive but did not answer in time (Docker gives up likewise)."""


class Writer:
    """The workload process; `acked` are the numbers it acknowledged (after fsync)."""

    def __init__(self, mountpoint: str, first: int, seed: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, WRITER, str(Path(mountpoint, RECORDS)), str(first), seed],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True, name="writer-acks")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.acked.append(int(line))

    def alive(self) -> bool:
        return self.process.poll() is None

    def end(self, sig: int) -> str:
        """Stop it (SIGTERM: a container stopped; SIGKILL: killed) and collect its acks;
        returns what it said on stderr."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        said = self.process.stderr.read()
        self.process.stderr.close()
        assert self.process.stdout is not None
        self.process.stdout.close()
        return said


class SimHost:
    def __init__(
        self,
        index: int,
        host: Host,
        kind: str,
        root: Path,
        options: dict[str, str] | None = None,
    ) -> None:
        self.index = index
        self.host = host
        self.instance = host.instance
        options = {"fs": "ext4"} if options is None else options
        config = {"backend": kind, "options": options, "settings": host.settings}
        self.daemon = OrlopDaemon({DRIVER: config}, root=str(root))
        self.pending: list[str] = []  # mount IDs whose Unmount this host still owes Docker
        self.mountpoint: str | None = None  # the volume's, as its Orlop said
        self.failpoint: str | None = None  # armed in the running daemon
        self.full = 0  # steps its state disk stays full (hostfaults.fill)

    @property
    def name(self) -> str:
        return f"host{self.index}"

    @property
    def up(self) -> bool:
        process = self.daemon.process
        return process is not None and process.poll() is None

    def start(self, failpoint: str | None = None) -> None:
        self.failpoint = failpoint
        env = {"ORLOP_FAILPOINTS": failpoint} if failpoint else {}
        self.daemon.start(extra_env=env, wait=False)
        # Sockets listen before recovery; a loaded machine (2 CPUs, a test run beside) may
        # still take more than OrlopDaemon's 10 s to import and bind.
        try:
            wait_for_socket(self.daemon.socket(DRIVER), timeout=60, process=self.daemon.process)
        except RuntimeError as error:  # a failpoint armed for recovery's own steps
            raise DaemonGone(f"{self.name}'s Orlop died while starting: {error}") from None

    def kill(self) -> None:
        if self.up:
            self.daemon.kill(signal.SIGKILL)

    def terminate(self) -> None:
        stop_process(self.daemon.process)

    def call(self, method: str, timeout: float = 60, **body: Any) -> dict[str, Any]:
        """One plugin call; the answer (Err may be set), or DaemonGone."""
        if not self.up:
            raise DaemonGone(f"{self.name}'s Orlop is down")
        client = PluginClient(self.daemon.socket(DRIVER), timeout=timeout)
        try:
            answer = client.call(method, **body)
        except TimeoutError:
            if self.up:  # alive, still at it: Docker gives up on the call, as here
                raise CallTimedOut(
                    f"{self.name}'s Orlop did not answer {method} within {timeout:g} s"
                ) from None
            raise DaemonGone(f"{self.name}'s Orlop died during {method}") from None
        except (OSError, http.client.HTTPException) as error:
            with contextlib.suppress(Exception):
                self.daemon.wait(timeout=5)
            raise DaemonGone(f"{self.name}'s Orlop died during {method}: {error!r}") from None
        finally:
            client.close()
        if method in ("Mount", "Get", "Path") and not answer.get("Err"):
            where = answer.get("Mountpoint") or answer.get("Volume", {}).get("Mountpoint")
            if where:
                self.mountpoint = where
        return answer

    def status(self, volume: str) -> dict[str, Any] | None:
        """The volume as this host's Orlop reports it; None when down or unknown there."""
        try:
            answer = self.call("Get", timeout=10, Name=volume)
        except DaemonGone:
            return None
        if answer.get("Err"):
            return None
        found: dict[str, Any] = answer["Volume"]
        return found

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.daemon.log().splitlines()[-lines:])
