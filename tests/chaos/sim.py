"""The chaos simulation: N hosts, one single-attach volume, a workload that moves, and faults.

A seeded `random.Random` picks each step's move from those the state allows:

    start      the workload (a writer of fsynced, numbered records) on a random live host
    stop       the workload ends (SIGTERM), Docker unmounts
    move       stop here, start on another host (timed: the move's seconds)
    failover   the workload's host is dead: its writer is killed (fenced: one kernel plays
               every host, so it cannot lose its disk for real), start elsewhere with
               preempt=true (timed)
    kill       kill -9 a host's Orlop, its writer, or both
    restart    start a dead Orlop (sometimes with a failpoint armed: it dies again at that
               step); send the Unmounts Docker still owes it
    faults     the fault proxy meets the API calls of the next 1-3 steps with faults

Docker's part is played plainly: a Mount or Unmount that fails is repeated (a restarted
container, a retried stop) up to four times, the last with the API calm. After every step
`checks.invariants` must hold (within `checks.SETTLE`); records acknowledged are checked at
every start; a detached, unused volume must pass `e2fsck -fn`; `finish` stops everything and
looks for leaks. Any violation ends the run with the seed and the step log.
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

from orlop.core.options import parse_size
from orlop.host.run import run
from tests.chaos import checks, hostfaults
from tests.chaos.checks import Violation
from tests.chaos.datapath import DataPath
from tests.chaos.docker import VOLUME, DockerSide, MoveFailed
from tests.chaos.hosts import RECORDS, CallTimedOut, DaemonGone, SimHost, Writer
from tests.chaos.report import Report, Step
from tests.chaos.worlds import World, open_world
from tests.chaos.writer import parse
from tests.support.faults import Fault
from tests.support.processes import unmount_all_under

IDLE = "chaos-idle"  # made at the start, never mounted: what Get asks of while a disk fails
FAILPOINTS = (
    "block.after_attach_device",
    "block.after_mount",
    "block.after_unmount",
    "block.after_detach_device",
)
# Seconds a calm move may take beyond the provider's own detach + attach: 20, as this 2-core
# machine is shared by 8 sessions (load 10+: one HTTPS call through the proxy took up to 1.5 s).
MOVE_BOUND = 20.0
FAULT_BOUND = 40.0  # … and a move whose API calls met faults (retries, slow answers)


class Simulation(DockerSide):
    def __init__(
        self,
        provider: str,
        seed: int,
        steps: int,
        hosts: int = 3,
        out: Callable[[str], None] = print,
        verbose: bool = False,
        faults_first: bool = False,
    ) -> None:
        """`faults_first`: the first step arms API faults (rate 0.5 for 3 steps), so that a
        short run surely meets some."""
        if hosts < 3:
            raise ValueError("a chaos run needs at least 3 hosts")
        self.faults_first = faults_first
        self.provider, self.seed, self.steps, self.count = provider, seed, steps, hosts
        self.rng = random.Random(seed)
        self.out, self.verbose = out, verbose
        self.report = Report(provider, seed)
        self.log: list[Step] = []
        self.hosts: list[SimHost] = []
        self.work_host: SimHost | None = None
        self.work_id: str | None = None
        self.writer: Writer | None = None
        self.acked: set[int] = set()
        self.made = False
        self.faulty_steps = 0
        self.fsck_due = False
        self.ids = 0
        self.record_seed = f"chaos-{seed}"
        self.datapath = DataPath()
        self.idle = IDLE
        self.eio_allowed = False  # the writer's disk failed reads: an EIO end is no violation

    # running -------------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="orlop-chaos-"))
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, self.root, ignore_errors=True)
            self.world: World = open_world(self.provider, stack, self.root)
            stack.callback(self.datapath.close)
            for index in range(self.count):
                home = self.root / f"host{index}"
                (home / "orlop").mkdir(parents=True)
                host = self.world.host(home)
                self.hosts.append(SimHost(index, host, self.world.kind, home / "orlop"))
            stack.callback(self._teardown)
            for sim_host in self.hosts:
                hostfaults.mount_state_disk(sim_host)
                sim_host.start()
            self.report.bare = self.world.bare_move(self.hosts[0].host, self.hosts[1].host)
            answer = self.hosts[0].call("Create", Name=IDLE, Opts=self.world.create_options)
            if answer.get("Err"):
                raise Violation(f"Create {IDLE} failed: {answer['Err']}")
            idle = {disk.id for disk in self.world.disks(IDLE)}
            size = parse_size(self.world.create_options["size"])
            self.datapath.install(self.world.presenter, exclude=idle, size=size)
            try:
                for number in range(1, self.steps + 1):
                    self._step(number)
                self._finish()
            except Violation as error:
                self.out(self.failure(error))
                raise
            except Exception as error:  # the run itself broke: still say how to repeat it
                self.out(self.failure(error))
                raise Violation(f"the run broke: {error!r}") from error
        self.report.seconds = time.monotonic() - started
        return self.report

    def failure(self, error: BaseException) -> str:
        steps = len(self.log)
        lines = [
            f"chaos: VIOLATION at step {steps} ({self.provider}, seed {self.seed}): {error}",
            f"reproduce: scripts/chaos --provider {self.provider} --seed {self.seed} "
            f"--steps {steps} --hosts {self.count}",
            "step log:",
            *(step.line() for step in self.log),
        ]
        for host in self.hosts:
            lines += [f"--- {host.name} ({host.instance}) log tail ---", host.log_tail()]
        return "\n".join(lines)

    def _step(self, number: int) -> None:
        name, detail, action = self._choose()
        if number == 1 and self.faults_first:
            name, detail, action = "faults", "first", partial(self._faults, 0.5, 3)
        step = Step(number, name, detail)
        self.log.append(step)
        faulty = self.faulty_steps > 0
        met_before = len(self.world.faults.injected)
        began = time.monotonic()
        try:
            step.outcome = action() or "ok"
        except CallTimedOut as late:
            step.outcome = f"timed out: {late}"
            self.report.timed_out += 1
        except DaemonGone as gone:
            step.outcome = f"orlop died: {gone}"
        except MoveFailed as failed:
            step.outcome = f"failed: {failed}"
        step.seconds = time.monotonic() - began
        met = self.world.faults.injected[met_before:]
        if met:
            step.outcome += f" [faults: {', '.join(f'{i.label}={i.fault}' for i in met)}]"
            self.report.faults_met.update(str(i.fault) for i in met)
        if name in ("move", "failover") and step.outcome.startswith("ok"):
            limit = self.report.bare + (FAULT_BOUND if faulty or met else MOVE_BOUND)
            (self.report.fault_moves if faulty or met else self.report.calm_moves).append(
                step.seconds
            )
            if step.seconds > limit:
                raise Violation(f"the {name} took {step.seconds:.1f}s (bound {limit:.1f}s)")
        if self.faulty_steps:
            self.faulty_steps -= 1
            if not self.faulty_steps:
                self.world.faults.calm()
        self.report.moves[name] += 1
        self.report.steps = number
        self._full_window()
        self._check()
        if self.verbose:
            self.out(step.line())

    def _check(self) -> None:
        checks.settled(
            lambda: checks.invariants(self.world, VOLUME, self.hosts, self.work_host, self.writer)
        )
        if self.fsck_due and self.work_host is None and not any(h.pending for h in self.hosts):
            disks = self.world.disks(VOLUME)
            if disks and not disks[0].holders:
                device = self.world.presenter.devices.get(disks[0].id)
                if device is not None:
                    said = checks.fsck_clean(device)
                    if said is not None:
                        raise Violation(said)
                    self.fsck_due = False

    def _full_window(self) -> None:
        for host in self.hosts:
            if not host.full:
                continue
            host.full -= 1
            self.report.state_full += 1
            if not host.full:
                hostfaults.empty(host)
                if host.up:
                    for mount_id in list(host.pending):
                        self._unmount(host, mount_id)

    # choosing ----------------------------------------------------------------------------
    def _choose(self) -> tuple[str, str, Callable[[], str | None]]:
        # Each action binds its own arguments (partial): a lambda would see the last value of
        # a name reused below (a move sent to the host a later option picked).
        rng, up = self.rng, [h for h in self.hosts if h.up]
        down = [h for h in self.hosts if not h.up]
        options: list[tuple[float, str, str, Callable[[], str | None]]] = []
        work = self.work_host
        owes_full = any(h.full and h.pending and h.up for h in self.hosts)
        if work is None and up and not owes_full:
            target = rng.choice(up)
            options.append((5, "start", target.name, partial(self._start, target)))
        if work is not None and work.up:
            others = [h for h in up if h is not work]
            options.append((2, "stop", work.name, partial(self._stop, signal.SIGTERM)))
            if others:
                target = rng.choice(others)
                options.append(
                    (4, "move", f"{work.name}->{target.name}", partial(self._move, target))
                )
        if work is not None and not work.up:
            others = [h for h in up if h is not work]
            if others:
                target = rng.choice(others)
                options.append(
                    (4, "failover", f"{work.name}->{target.name}", partial(self._move, target))
                )
        if self.writer is not None and work is not None:
            options.append((1, "kill", f"writer on {work.name}", self._kill_writer))
        if up:
            victim = work if work is not None and work.up and rng.random() < 0.6 else rng.choice(up)
            options.append((1.5, "kill", f"orlop on {victim.name}", partial(self._kill, victim)))
            if victim is work and self.writer is not None:
                options.append((1, "kill", f"host {victim.name}", partial(self._kill_host, victim)))
        if down:
            target = rng.choice(down)
            failpoint = rng.choice(FAILPOINTS) if rng.random() < 0.25 else None
            what = f"{target.name}" + (f" +{failpoint}" if failpoint else "")
            options.append((3, "restart", what, partial(self._restart, target, failpoint)))
        if not self.faulty_steps:
            options.append((1.5, "faults", "", self._faults))
        faulty = self.datapath.key is not None and self.datapath.key in self.presenter_keys()
        if work is not None and work.up and self.writer is not None and faulty:
            fault = rng.choice(("stall", "errors"))
            seconds = rng.uniform(1.0, 3.0)
            options.append(
                (
                    1,
                    "disk",
                    f"{fault} {seconds:.1f}s on {work.name}",
                    partial(hostfaults.disk_fault, self, fault, seconds),
                )
            )
        idle = [h for h in up if h is not work and not h.full and not h.pending]
        if idle:
            target = rng.choice(idle)
            steps = rng.randint(1, 3)
            options.append(
                (
                    1,
                    "full",
                    f"state of {target.name}, {steps} steps",
                    partial(self._fill, target, steps),
                )
            )
        weights = [weight for weight, *_ in options]
        _, name, detail, action = rng.choices(options, weights)[0]
        return name, detail, action

    # moves -------------------------------------------------------------------------------
    def _start(self, host: SimHost) -> str:
        held = self.world.disks(VOLUME)
        holders = held[0].holders if held else []
        preempt = any(holder != host.instance for holder in holders)
        mount_id, path = self._mount(host, preempt)
        data = Path(path, RECORDS).read_bytes() if Path(path, RECORDS).exists() else b""
        found = parse(data, self.record_seed)
        lost = self.acked - found
        if lost:
            self.report.lost = len(lost)
            raise Violation(
                f"{len(lost)} acknowledged records are missing on {host.name} "
                f"(first: {sorted(lost)[:5]})"
            )
        first = max(found | self.acked | {0}) + 1
        self.writer = Writer(path, first, self.record_seed)
        self.work_host, self.work_id = host, mount_id
        deadline = time.monotonic() + 10
        while not self.writer.acked:  # it writes: at least one record acknowledged
            if not self.writer.alive() or time.monotonic() > deadline:
                said = self.writer.end(signal.SIGKILL)
                raise Violation(f"the writer on {host.name} acknowledged nothing: {said}")
            time.sleep(0.01)
        time.sleep(self.rng.uniform(0.0, 0.2))
        return "ok (preempt)" if preempt else "ok"

    def _stop(self, sig: int) -> str:
        host, mount_id = self.work_host, self.work_id
        assert host is not None and mount_id is not None
        if self.writer is not None:
            self._end_writer(sig)
        self.work_host = self.work_id = None
        self.fsck_due = True
        if host.up:
            self._unmount(host, mount_id)
            return "ok"
        host.pending.append(mount_id)
        return "ok (Unmount owed: its Orlop is down)"

    def _move(self, target: SimHost) -> str:
        dead = self.work_host is not None and not self.work_host.up
        self._stop(signal.SIGKILL if dead else signal.SIGTERM)
        return self._start(target)

    def _kill_writer(self) -> str:
        return self._stop(signal.SIGKILL)

    def _kill(self, host: SimHost) -> str:
        host.kill()
        return "ok"

    def _kill_host(self, host: SimHost) -> str:
        host.kill()
        return self._stop(signal.SIGKILL)

    def _restart(self, host: SimHost, failpoint: str | None) -> str:
        host.start(failpoint)
        owed = list(host.pending)
        for mount_id in owed:
            self._unmount(host, mount_id)
        return f"ok ({len(owed)} Unmount sent)" if owed else "ok"

    def presenter_keys(self) -> set[str]:
        """The disk of the run's volume now (its presenter key), if it is the faulty one."""
        return {disk.id for disk in self.world.disks(VOLUME)}

    def _fill(self, host: SimHost, steps: int) -> str:
        hostfaults.fill(host)
        host.full = steps + 1  # this step's own count goes first
        return "ok"

    def _faults(self, rate: float | None = None, steps: int | None = None) -> str:
        self.faulty_steps = (steps or self.rng.randint(1, 3)) + 1  # this step's count first
        rate = rate or self.rng.choice((0.1, 0.25, 0.5))
        self.world.faults.schedule(
            self.rng.randrange(1 << 30), rate, tuple(Fault), delay=self.rng.uniform(0.2, 1.5)
        )
        return f"ok (rate {rate} for {self.faulty_steps - 1} steps)"

    # the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        step = Step(len(self.log) + 1, "finish", "calm, restart all, unmount, remove")
        self.log.append(step)
        self.world.faults.calm()
        self.faulty_steps = 0
        for host in self.hosts:
            host.full = 0
            hostfaults.empty(host)
        if self.work_host is not None:
            self._stop(signal.SIGTERM if self.work_host.up else signal.SIGKILL)
        for host in self.hosts:
            if not host.up:
                host.start()
        for host in self.hosts:
            for mount_id in list(host.pending):
                self._unmount(host, mount_id)
        self._check()
        reader = self.rng.choice(self.hosts)
        self._start(reader)  # the records, read once more
        self._stop(signal.SIGTERM)
        self._check()
        if self.fsck_due:
            raise Violation("the volume was never free for fsck at the end")
        for name in (VOLUME, IDLE):
            answer = reader.call("Remove", Name=name)
            if answer.get("Err"):
                raise Violation(f"Remove {name} at the end failed: {answer['Err']}")
        checks.settled(lambda: self._gone(), timeout=15)
        for host in self.hosts:
            host.terminate()
            run(["umount", str(host.daemon.state_dir)], timeout=60)
        devices = list(self.world.presenter.devices.values())
        self.report.leaks = checks.leaks(self.world, self.root, devices)
        step.outcome = "ok"
        if self.report.leaks:
            raise Violation("left behind: " + "; ".join(self.report.leaks))

    def _gone(self) -> None:
        if self.world.all_disks():
            raise Violation(f"disks left after Remove: {self.world.all_disks()}")

    def _teardown(self) -> None:
        """Whatever happened: no process, mount or writer of the run stays."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.end(signal.SIGKILL)
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.terminate()
        unmount_all_under(str(self.root))
