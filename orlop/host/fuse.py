"""FUSE clients: start one with a deadline, tell a live mount from a dead one, unmount it.

A network volume is a FUSE client process (sshfs, rclone mount) serving one mount point.
The client runs in the foreground as a child in its own session, so it outlives neither
more nor less than its mount: it exits when the mount goes away, and a restart of Orlop
leaves it running (the kernel mount is the source of truth, not the process).

Secrets reach a client through its standard input or a 0600 file, never its argv: argv is
visible to every user in `ps`.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orlop.core.model import BackendError
from orlop.host import mounts
from orlop.host.run import CommandError, run, which

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0
UNMOUNT_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0
LOG_TAIL = 1500
POLL = 0.01  # seconds between looks at mountinfo, fusectl and /proc
FUSECTL = "/sys/fs/fuse/connections"

# Children we started, by pid, so they are reaped (no zombies) once their mount is gone.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


class MountState(enum.Enum):
    ABSENT = "absent"  # nothing mounted there
    ALIVE = "alive"  # mounted and answering
    DEAD = "dead"  # mounted, but the client is gone ("Transport endpoint is not connected")
    HUNG = "hung"  # mounted, and a stat did not answer in time


@dataclass(frozen=True, slots=True)
class FuseCommand:
    """How to start one FUSE client in the foreground."""

    args: list[str]
    env: Mapping[str, str] | None = None
    stdin: bytes | None = None  # e.g. a password for sshfs -o password_stdin
    secrets: Sequence[str] = ()  # strings to redact from errors taken from its log


def _file_path(path: str) -> str:
    return os.path.realpath(path)


def state(mountpoint: str, timeout: float = PROBE_TIMEOUT) -> MountState:
    """Whether a FUSE mount at `mountpoint` is there, and whether it answers."""
    path = _file_path(mountpoint)
    before = mounts.mount_at(path)
    if before is None:
        return MountState.ABSENT
    outcome: list[MountState] = []

    def probe() -> None:
        try:
            os.stat(path)
            os.listdir(path)
        except OSError as error:
            dead = error.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO)
            outcome.append(MountState.DEAD if dead else MountState.ALIVE)
            return
        outcome.append(MountState.ALIVE)

    # A stat on a FUSE mount whose server hangs blocks in the kernel: probe in a thread.
    thread = threading.Thread(target=probe, name=f"probe {path}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return MountState.HUNG
    after = mounts.mount_at(path)
    if after is None or after.mount_id != before.mount_id:
        # The client went away during the probe (sshfs mounts, then fails to log in): the
        # probe may have answered from the directory underneath, which proves nothing.
        return MountState.ABSENT
    return outcome[0]


def pending_requests(mountpoint: str) -> int | None:
    """Requests the kernel holds for this FUSE mount's client, not yet answered.

    Closing a file sends FUSE's release in the background: a client that uploads at
    release (rclone) may not have seen it when the close() returns. Read from fusectl's
    `waiting`; None when fusectl is unavailable.
    """
    path = _file_path(mountpoint)
    device = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields = line.split()
            if mounts._unescape(fields[4]) == path:
                device = fields[2]
    if device is None:
        return 0
    major, minor = (int(part) for part in device.split(":"))
    connection = os.path.join(FUSECTL, str((major << 20) | minor))
    if not os.path.isdir(connection):
        _mount_fusectl()
    try:
        with open(os.path.join(connection, "waiting"), encoding="ascii") as waiting:
            return int(waiting.read().strip())
    except (OSError, ValueError):
        return None


def wait_idle(mountpoint: str, timeout: float) -> bool:
    """Wait until the kernel has no request pending for the mount; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        pending = pending_requests(mountpoint)
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)


def _mount_fusectl() -> None:
    # systemd mounts it at boot (sys-fs-fuse-connections.mount); other hosts may not.
    if mounts.mount_at(FUSECTL) is None and os.path.isdir(FUSECTL):
        with contextlib.suppress(CommandError):
            run(["mount", "-t", "fusectl", "fusectl", FUSECTL], timeout=10)


def start(
    command: FuseCommand,
    mountpoint: str,
    *,
    log_path: str,
    timeout: float,
    what: str,
) -> int:
    """Start a foreground FUSE client; return its pid once `mountpoint` is mounted.

    On failure or timeout the client is stopped, nothing stays mounted, and the error
    quotes the client's own last words (with secrets redacted).
    """
    path = _file_path(mountpoint)
    _reap()
    os.makedirs(os.path.dirname(log_path), mode=0o700, exist_ok=True)
    log.debug("starting %s: %s", what, " ".join(command.args))
    start_offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    with open(log_path, "ab") as log_file:
        os.chmod(log_path, 0o600)
        try:
            process = subprocess.Popen(
                command.args,
                stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(command.env) if command.env is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise CommandError(
                f"{command.args[0]} is not installed on this host (needed for {what}); "
                "`orlop doctor` lists what each backend needs"
            ) from None
    with _children_lock:
        _children[process.pid] = process
    if command.stdin is not None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(command.stdin)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Some clients (sshfs) mount first and log in after: the mount counts once it
        # answers, and a client that exits meanwhile has failed.
        if mounts.mount_at(path) is not None and process.poll() is None:
            answer = state(path, timeout=max(0.1, deadline - time.monotonic()))
            if answer is MountState.ALIVE and process.poll() is None:
                return process.pid
            if answer is MountState.HUNG:
                break
        if process.poll() is not None:
            with contextlib.suppress(Exception):
                unmount(path, pid=None)
            _forget(process.pid)
            raise BackendError(
                f"{what} failed (exit {process.returncode}): "
                f"{_tail(log_path, start_offset, command.secrets)}"
            )
        time.sleep(POLL)
    # Too slow: stop the client and undo a mount that may have appeared meanwhile.
    _stop(process)
    with contextlib.suppress(Exception):
        unmount(path, pid=None)
    raise BackendError(
        f"{what} did not finish within {timeout:g}s (unreachable server?): "
        f"{_tail(log_path, start_offset, command.secrets) or 'no output'}"
    )


def unmount(mountpoint: str, pid: int | None, timeout: float = UNMOUNT_TIMEOUT) -> None:
    """Unmount a FUSE mount and wait until its client `pid` has exited.

    Tries fusermount3 -u, then umount; a lazy unmount is the last resort, for a mount that
    is dead or hung (its data is unreachable anyway), never for a live busy one.
    """
    path = _file_path(mountpoint)
    if mounts.mount_at(path) is not None:
        _unmount_now(path, timeout)
    if pid is not None:
        wait_exit(pid, path, timeout=EXIT_TIMEOUT)


def _unmount_now(path: str, timeout: float) -> None:
    errors: list[str] = []
    tools = [[which("fusermount3") or "fusermount3", "-u", path], ["umount", "--", path]]
    for args in tools:
        try:
            run(args, timeout=timeout)
        except CommandError as error:
            errors.append(str(error))
        if mounts.mount_at(path) is None:
            return
    if state(path) in (MountState.DEAD, MountState.HUNG):
        log.warning("lazily unmounting dead FUSE mount %s", path)
        run(["umount", "--lazy", "--", path], timeout=timeout)
        if mounts.mount_at(path) is None:
            return
    raise BackendError(f"could not unmount {path}: {'; '.join(errors)}")


def wait_exit(pid: int, mountpoint: str, timeout: float = EXIT_TIMEOUT) -> None:
    """Wait for the client serving `mountpoint` to exit (it finishes its writes first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _children_lock:
            child = _children.get(pid)
        if child is not None:
            if child.poll() is not None:
                _forget(pid)
                return
        elif not _is_client(pid, mountpoint):
            return
        time.sleep(POLL)
    raise BackendError(
        f"the FUSE client (pid {pid}) of {mountpoint} did not exit within {timeout:g}s "
        "after the unmount"
    )


def kill(pid: int, mountpoint: str) -> None:
    """Stop a client that no longer serves a mount (a dead mount's leftover)."""
    with _children_lock:
        child = _children.get(pid)
    if child is not None:
        _stop(child)
        return
    if _is_client(pid, mountpoint):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)


def _is_client(pid: int, mountpoint: str) -> bool:
    """Whether `pid` is still a process whose command line names `mountpoint` (no reuse)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as stat:
            zombie = stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
    return not zombie and os.fsencode(mountpoint) in args


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    _forget(process.pid)


def _reap() -> None:
    """Collect clients that exited on their own (a server gone, a lost connection)."""
    with _children_lock:
        finished = [pid for pid, child in _children.items() if child.poll() is not None]
        for pid in finished:
            del _children[pid]


def _forget(pid: int) -> None:
    with _children_lock:
        _children.pop(pid, None)


def _tail(log_path: str, offset: int, secrets: Sequence[str]) -> str:
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode(errors="replace").strip()
    except OSError:
        return ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[-LOG_TAIL:]
