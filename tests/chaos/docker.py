"""Docker's part in a chaos run, played plainly: Create then Mount (a failed one repeated up
to `ATTEMPTS` times, the last with the API calm, as a restarted container would), Unmount
(repeated likewise; owed while the host's Orlop is down), the writer's end. A host whose state
disk is full must refuse new work saying so (`_refused_full`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.chaos import hostfaults
from tests.chaos.checks import Violation
from tests.chaos.hosts import DaemonGone, SimHost

ATTEMPTS = 4
VOLUME = "chaos-data"


class MoveFailed(Exception):
    pass


class DockerSide:
    if TYPE_CHECKING:  # the Simulation's
        world: Any
        report: Any
        writer: Any
        acked: set[int]
        made: bool
        ids: int
        eio_allowed: bool

    def _end_writer(self, sig: int) -> None:
        assert self.writer is not None
        writer, self.writer = self.writer, None
        said = writer.end(sig)
        self.acked.update(writer.acked)
        self.report.acked = len(self.acked)
        allowed, self.eio_allowed = self.eio_allowed, False
        if writer.process.returncode == 3 and not allowed:
            raise Violation(f"the writer met an I/O error: {said.strip()}")

    def _mount(self, host: SimHost, preempt: bool) -> tuple[str, str]:
        options = {"preempt": "true" if preempt else "false"}
        if not self.made:
            options.update(self.world.create_options)
        error = ""
        for attempt in range(ATTEMPTS):
            if attempt == ATTEMPTS - 1:
                self.world.faults.calm()
            elif attempt:
                time.sleep(0.2)
            answer = host.call("Create", Name=VOLUME, Opts=options)
            if answer.get("Err"):
                self._refused_full(host, "Create", answer["Err"])
                error = f"Create: {answer['Err']}"
                self.report.failed_calls += 1
                continue
            self.made = True
            self.ids += 1
            mount_id = f"{host.name}-m{self.ids}"
            try:
                answer = host.call("Mount", Name=VOLUME, ID=mount_id)
            except DaemonGone:
                self._failpoint(host)
                host.pending.append(mount_id)  # did it record the ID? Unmount it to be sure
                raise
            if not answer.get("Err"):
                return mount_id, str(answer["Mountpoint"])
            self._refused_full(host, "Mount", answer["Err"])
            error = f"Mount: {answer['Err']}"
            self.report.failed_calls += 1
        raise Violation(f"{host.name} could not mount {VOLUME} with the API calm: {error}")

    def _unmount(self, host: SimHost, mount_id: str) -> None:
        error = ""
        if mount_id not in host.pending:
            host.pending.append(mount_id)
        for attempt in range(ATTEMPTS):
            if attempt == ATTEMPTS - 1:
                self.world.faults.calm()
            elif attempt:
                time.sleep(0.2)
            try:
                answer = host.call("Unmount", Name=VOLUME, ID=mount_id)
            except DaemonGone:
                self._failpoint(host)
                raise
            if not answer.get("Err"):
                host.pending.remove(mount_id)
                return
            if host.full and hostfaults.clear_full_error(answer["Err"]):
                self.report.refused_full += 1
                return  # owed until the space is back (`_full_window`)
            error = answer["Err"]
            self.report.failed_calls += 1
        raise Violation(f"{host.name} could not unmount {VOLUME} with the API calm: {error}")

    def _refused_full(self, host: SimHost, method: str, error: str) -> None:
        """A host whose state disk is full refuses new work, saying why; anything else it
        says then is not a clear refusal."""
        if not host.full:
            return
        if not hostfaults.clear_full_error(error):
            raise Violation(f"{method} on {host.name} (state disk full) failed unclearly: {error}")
        self.report.refused_full += 1
        raise MoveFailed(f"{method} refused, state disk full: {error}")

    def _failpoint(self, host: SimHost) -> None:
        if host.failpoint and f"failpoint {host.failpoint} reached" in host.daemon.log():
            self.report.failpoints_hit += 1
