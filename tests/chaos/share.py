"""The chaos run of a share kind: sshfs against the real sshd, a multi-writer volume.

A share has no single-attach invariant: any number of hosts mount it at once. So the run
keeps up to `MAX_WRITERS` writers on random hosts at the same time, each appending fsynced
records to a file of its own (`wK/records` in the volume), and checks other things:

  * every record a writer acknowledged is in its file *on the server* (read from sshd's
    directory, bypassing Orlop and FUSE), after every step, for every writer, running or not;
  * a writer runs in a mounted mountpoint; a live Orlop reports a mount for each writer on it;
  * at the end (every writer stopped, every Unmount sent, every host's Orlop stopped): no FUSE
    mount under the run's root, no sshfs process of the run, the volume's directory gone.

Moves: start a writer on a live host (Create on that host first, as Docker does for a global
driver), stop one (SIGTERM), kill one (SIGKILL), kill -9 a host's Orlop (its writers and
their sshfs go on: a plugin's death is not the mount's), restart it (Unmounts owed are sent
then), and stop/start sshd itself for a step (writers may then meet an I/O error: what they
acknowledged before must still be on the server).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from orlop.host.mounts import is_mountpoint
from tests.chaos import checks
from tests.chaos.checks import Violation
from tests.chaos.hosts import RECORDS, DaemonGone, SimHost, Writer
from tests.chaos.report import Report, Step
from tests.chaos.worlds.base import Host
from tests.chaos.writer import parse
from tests.servers.sshd.server import Sshd
from tests.support.processes import unmount_all_under

VOLUME = "chaos-share"
MAX_WRITERS = 4


class ShareSimulation:
    kind = "sshfs"

    def __init__(self, seed: int, steps: int, hosts: int = 3, verbose: bool = False) -> None:
        if hosts < 3:
            raise ValueError("a chaos run needs at least 3 hosts")
        self.seed, self.steps, self.count, self.verbose = seed, steps, hosts, verbose
        self.rng = random.Random(seed)
        self.report = Report(self.kind, seed)
        self.log: list[Step] = []
        self.hosts: list[SimHost] = []
        self.writers: dict[int, tuple[SimHost, str, Writer]] = {}  # K → host, mount ID, writer
        self.acked: dict[int, set[int]] = {}
        self.made: set[int] = set()  # hosts whose Orlop has the volume
        self.ids = 0

    def run(self) -> Report:
        started = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="orlop-chaos-share-"))
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, self.root, ignore_errors=True)
            self.sshd = Sshd().start()
            stack.callback(self.sshd.destroy)
            self.base = self.sshd.data / f"chaos-{self.seed}-{time.monotonic_ns()}"
            self.base.mkdir(parents=True)
            self.options = self.sshd.options(path=str(self.base))
            for index in range(self.count):
                home = self.root / f"host{index}" / "orlop"
                home.mkdir(parents=True)
                host = SimHost(index, Host(f"host{index}", {}), self.kind, home, options={})
                self.hosts.append(host)
            stack.callback(self._teardown)
            for host in self.hosts:
                host.start()
            try:
                for number in range(1, self.steps + 1):
                    self._step(number)
                self._finish()
            except Exception as error:
                print(self.failure(error))
                if isinstance(error, Violation):
                    raise
                raise Violation(f"the run broke: {error!r}") from error
        self.report.seconds = time.monotonic() - started
        return self.report

    def failure(self, error: BaseException) -> str:
        lines = [
            f"chaos: VIOLATION at step {len(self.log)} (sshfs, seed {self.seed}): {error}",
            f"reproduce: scripts/chaos --provider sshfs --seed {self.seed} "
            f"--steps {len(self.log)} --hosts {self.count}",
            "step log:",
            *(step.line() for step in self.log),
        ]
        for host in self.hosts:
            lines += [f"--- {host.name} log tail ---", host.log_tail()]
        return "\n".join(lines)

    # steps -------------------------------------------------------------------------------
    def _step(self, number: int) -> None:
        name, detail, action = self._choose()
        step = Step(number, name, detail)
        self.log.append(step)
        began = time.monotonic()
        try:
            step.outcome = action() or "ok"
        except DaemonGone as gone:
            step.outcome = f"orlop died: {gone}"
        step.seconds = time.monotonic() - began
        self.report.moves[name] += 1
        self.report.steps = number
        checks.settled(self._invariants)
        if self.verbose:
            print(step.line())

    def _choose(self) -> tuple[str, str, Callable[[], str | None]]:
        rng = self.rng
        up = [h for h in self.hosts if h.up]
        down = [h for h in self.hosts if not h.up]
        options: list[tuple[float, str, str, Callable[[], str | None]]] = []
        if up and len(self.writers) < MAX_WRITERS:
            target = rng.choice(up)
            options.append((4, "start", target.name, partial(self._start, target)))
        if self.writers:
            k = rng.choice(sorted(self.writers))
            where = self.writers[k][0].name
            options.append((2, "stop", f"w{k} on {where}", partial(self._end, k, signal.SIGTERM)))
            options.append((1, "kill", f"w{k} on {where}", partial(self._end, k, signal.SIGKILL)))
        if up:
            victim = rng.choice(up)
            options.append((1.5, "kill", f"orlop on {victim.name}", partial(self._kill, victim)))
        if down:
            target = rng.choice(down)
            options.append((3, "restart", target.name, partial(self._restart, target)))
        options.append((0.5, "server", "sshd down for a step", self._bounce_server))
        _, name, detail, action = rng.choices(options, [o[0] for o in options])[0]
        return name, detail, action

    def _start(self, host: SimHost) -> str:
        answer = host.call("Create", Name=VOLUME, Opts=self.options)
        if answer.get("Err"):
            raise Violation(f"Create on {host.name}: {answer['Err']}")
        self.made.add(host.index)
        self.ids += 1
        mount_id = f"{host.name}-m{self.ids}"
        answer = host.call("Mount", Name=VOLUME, ID=mount_id)
        if answer.get("Err"):
            raise Violation(f"Mount on {host.name}: {answer['Err']}")
        k = self.ids
        directory = Path(answer["Mountpoint"], f"w{k}")
        directory.mkdir()
        writer = Writer(str(directory), 1, f"share-{self.seed}-{k}")
        self.writers[k] = (host, mount_id, writer)
        self.acked[k] = set()
        deadline = time.monotonic() + 10
        while not writer.acked:
            if not writer.alive() or time.monotonic() > deadline:
                raise Violation(f"w{k} on {host.name} acknowledged nothing: {writer.end(9)}")
            time.sleep(0.01)
        return f"ok (w{k})"

    def _end(self, k: int, sig: int) -> str:
        host, mount_id, writer = self.writers.pop(k)
        writer.end(sig)
        self.acked[k].update(writer.acked)
        self.report.acked = sum(len(a) for a in self.acked.values())
        host.pending.append(mount_id)
        if host.up:
            self._send_unmounts(host)
            return "ok"
        return "ok (Unmount owed: its Orlop is down)"

    def _send_unmounts(self, host: SimHost) -> None:
        for mount_id in list(host.pending):
            answer = host.call("Unmount", Name=VOLUME, ID=mount_id)
            if answer.get("Err"):
                raise Violation(f"Unmount {mount_id} on {host.name}: {answer['Err']}")
            host.pending.remove(mount_id)

    def _kill(self, host: SimHost) -> str:
        host.kill()
        return "ok"

    def _restart(self, host: SimHost) -> str:
        host.start()
        owed = len(host.pending)
        self._send_unmounts(host)
        return f"ok ({owed} Unmount sent)" if owed else "ok"

    def _bounce_server(self) -> str:
        self.sshd.stop()
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.sshd.start()
        return "ok"

    # checks ------------------------------------------------------------------------------
    def _on_server(self, k: int) -> set[int]:
        file = self.base / VOLUME / f"w{k}" / RECORDS
        return parse(file.read_bytes(), f"share-{self.seed}-{k}") if file.exists() else set()

    def _invariants(self) -> None:
        for k, (_, _, writer) in self.writers.items():
            self.acked[k].update(writer.acked)
        for k, acked in self.acked.items():
            lost = acked - self._on_server(k)
            if lost:
                self.report.lost = len(lost)
                raise Violation(
                    f"w{k}: {len(lost)} acknowledged records are not on the server "
                    f"(first: {sorted(lost)[:5]})"
                )
        for k, (host, _, writer) in self.writers.items():
            if writer.alive() and not is_mountpoint(str(Path(writer.process.args[2]).parents[1])):
                raise Violation(f"w{k} runs on {host.name} outside a mounted share")

    def _finish(self) -> None:
        self.log.append(Step(len(self.log) + 1, "finish", "stop all, unmount, remove"))
        if not self.sshd.process or self.sshd.process.poll() is not None:
            self.sshd.start()
        for host in self.hosts:
            if not host.up:
                host.start()
        for k in sorted(self.writers):
            self._end(k, signal.SIGTERM)
        for host in self.hosts:
            self._send_unmounts(host)
        self._invariants()
        for host in self.hosts:
            if host.index in self.made:
                answer = host.call("Remove", Name=VOLUME)
                if answer.get("Err"):
                    raise Violation(f"Remove on {host.name}: {answer['Err']}")
        for host in self.hosts:
            host.terminate()
        self.report.leaks = self._leaks()
        if (self.base / VOLUME).exists():
            self.report.leaks.append(f"the volume's directory {self.base / VOLUME}")
        if self.report.leaks:
            raise Violation("left behind: " + "; ".join(self.report.leaks))

    def _leaks(self) -> list[str]:
        found = [f"mount {m}" for m in checks.mounts_under_root(self.root)]
        found += [f"process {p}" for p in checks.processes_of(self.root)]
        return found

    def _teardown(self) -> None:
        for _, _, writer in self.writers.values():
            with contextlib.suppress(Exception):
                writer.end(signal.SIGKILL)
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.terminate()
        unmount_all_under(str(self.root))
