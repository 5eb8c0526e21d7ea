"""restic, as Orlop uses it: one repository per driver, one restic snapshot per backup.

Secrets stay out of `ps`, logs and Status: the repository password reaches restic as a file
name (RESTIC_PASSWORD_FILE, a 0600 file), the repository's credentials (S3 keys, …) as
environment variables read from a 0600 env file; neither ever appears on a command line.

A backup is `restic backup .` run inside the directory to save, so the restic snapshot holds
the volume's files at its top level (whatever path they were read from) and a restore
writes them straight into the target. The directory is the same for every backup of a
volume (its staging path), so restic takes the last one as the parent and compares files by
size and mtime only: the copy it reads from is new each time (a snapshot), and its inodes
and ctimes say nothing about the data.

Tags: `orlop`, `orlop-volume=<name>`, `orlop-kind=<backend>`, `orlop-size=<bytes>`,
`orlop-fs=<fs>` — what a restore on another host needs to make the volume again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orlop.core.model import BackendError, ConfigError, NotFound, OrlopError
from orlop.host.clone import PROGRESS_INTERVAL, tree_bytes
from orlop.host.run import CommandError, run, run_lines

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 120.0  # restic retries a repository that does not answer; not forever
TRANSFER_TIMEOUT = 24 * 3600.0
# What restic (or the ssh it starts) says when it cannot reach the repository at all.
UNREACHABLE = (
    "dial tcp",
    "connection refused",
    "no such host",
    "i/o timeout",
    "Connection closed",
    "Connection refused",
    "Host key verification failed",
    "Permission denied",
    "subprocess ssh",
)
Progress = Callable[[int, int], None]


def check_secret_file(path: str, what: str) -> None:
    """A secret file must exist and be readable by its owner only (0600)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ConfigError(f"{what} {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"chmod 600 {path}"
        )


def read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped), as for systemd's EnvironmentFile."""
    check_secret_file(path, "backup_env_file")
    variables = {}
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not key.strip().isidentifier():
                raise ConfigError(f"backup_env_file {path} line {number}: expected KEY=VALUE")
            variables[key.strip()] = value.strip().strip("'\"")
    return variables


class RepositoryLocked(BackendError):
    """Another restic holds the repository's lock, or a killed one left it behind."""


@dataclass(slots=True)
class Repository:
    """Where a driver's backups go, and how to open it."""

    location: str  # restic's syntax: s3:http://host:port/bucket/prefix, sftp:user@host:/path
    password_file: str
    env_file: str | None
    cache_dir: str
    ssh_command: str | None = None  # for sftp: the ssh command line restic starts

    def check(self) -> None:
        check_secret_file(self.password_file, "backup_password_file")
        if self.env_file:
            read_env_file(self.env_file)

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "RESTIC_REPOSITORY": self.location,
            "RESTIC_PASSWORD_FILE": self.password_file,
            "RESTIC_CACHE_DIR": self.cache_dir,
            "RESTIC_PROGRESS_FPS": "4",
        }
        if self.env_file:
            env.update(read_env_file(self.env_file))
        return env

    def _args(self, *args: str) -> list[str]:
        extra = ["-o", f"sftp.command={self.ssh_command}"] if self.ssh_command else []
        return ["restic", *extra, *args]

    def _run(self, *args: str, timeout: float = PROBE_TIMEOUT, cwd: str | None = None) -> str:
        try:
            return run(self._args(*args), env=self._env(), timeout=timeout, cwd=cwd).stdout
        except CommandError as error:
            raise self._explain(error.stderr or str(error)) from None

    def _explain(self, stderr: str) -> OrlopError:
        where = f"backup repository {self.location}"
        if "wrong password" in stderr:
            return BackendError(
                f"{where}: wrong password (backup_password_file {self.password_file} does "
                "not open it)"
            )
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        first = lines[0].removeprefix("Fatal: ") if lines else "restic failed"
        if "already locked" in stderr:
            return RepositoryLocked(f"{where} is locked: {first}")
        if any(sign in stderr for sign in UNREACHABLE):
            return BackendError(f"{where} is unreachable: {first}")
        if "Is there a repository" in stderr or "does not exist" in stderr:
            return NotFound(f"{where} does not exist (or is not a restic repository)")
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "restic failed"
        return BackendError(f"{where}: {last}")

    # calls --------------------------------------------------------------------------
    def ensure(self) -> None:
        """Check the secrets; the repository itself is opened (and made) by the first call
        that needs it (`backup`), so a backup costs one restic process, not three: each one
        derives the key from the password, about half a second on a busy host."""
        self.check()

    def backup(self, directory: str, tags: Mapping[str, str], progress: Progress) -> dict[str, Any]:
        """Back up the files below `directory`; return restic's summary (snapshot_id, …).

        `directory` is the same path for every backup of a volume on this host, so restic
        finds the parent (the last backup of that path) itself: no second restic process.
        A repository that does not exist yet is made, once; a lock a killed restic left
        (ours: a prune) is removed, once; then the backup is tried again."""
        try:
            return self._backup(directory, tags, progress)
        except NotFound:
            log.info("initialising backup repository %s", self.location)
            # A failed init: another backup of this driver made it meanwhile, or the retry
            # below says what is wrong.
            with contextlib.suppress(BackendError):
                self._run("init")
        except RepositoryLocked:
            self._run("unlock")  # removes stale locks only: a live restic keeps its own
        return self._backup(directory, tags, progress)

    def _backup(
        self, directory: str, tags: Mapping[str, str], progress: Progress
    ) -> dict[str, Any]:
        args = ["backup", "--json", "--ignore-inode", "--ignore-ctime", "--host", "orlop"]
        args += ["--tag", ",".join(["orlop", *(f"orlop-{k}={v}" for k, v in tags.items())])]
        summary: dict[str, Any] = {}

        def on_line(line: str) -> None:
            try:
                message = json.loads(line)
            except ValueError:
                return
            if message.get("message_type") == "status":
                progress(int(message.get("bytes_done", 0)), int(message.get("total_bytes", 0)))
            elif message.get("message_type") == "summary":
                summary.update(message)

        status, stderr = run_lines(
            self._args(*args, "."),
            on_line,
            env=self._env(),
            cwd=directory,
            timeout=TRANSFER_TIMEOUT,
        )
        if status != 0 or "snapshot_id" not in summary:
            raise self._explain(stderr)
        total = int(summary.get("total_bytes_processed", 0))
        progress(total, total)
        return summary

    def backup_facts(self, summary: dict[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
        """A new backup's facts from restic's summary, without asking the repository again."""
        snapshot_id = str(summary["snapshot_id"])
        return _backup_facts(
            {
                "id": snapshot_id,
                "short_id": snapshot_id[:8],
                "time": summary.get("time") or _now(),
                "tags": [f"orlop-{k}={v}" for k, v in tags.items()],
            }
        )

    def snapshots(self, volume: str | None = None) -> list[dict[str, Any]]:
        """Orlop's backups in the repository (all, or one volume's), oldest first."""
        tag = f"orlop,orlop-volume={volume}" if volume else "orlop"
        found = json.loads(self._run("snapshots", "--json", "--tag", tag) or "[]")
        return sorted((_backup_facts(s) for s in found), key=lambda b: b["created_at"])

    def find(self, backup: str) -> dict[str, Any]:
        """One backup by (short) ID; NotFound says how to list them."""
        matches = [b for b in self.snapshots() if b["id"].startswith(backup) and backup]
        if len(matches) != 1:
            problem = "does not exist" if not matches else "is ambiguous: give more characters"
            raise NotFound(
                f"backup {backup} {problem} in {self.location}: `orlop backup ls` lists them"
            )
        return matches[0]

    def restore(self, backup: str, target: str, progress: Progress) -> None:
        """Write the files of `backup` into the directory `target`."""
        found = self.find(backup)
        total = int(found.get("bytes") or 0)
        progress(0, total)
        done = threading.Event()

        def watch() -> None:  # restic 0.14 says nothing while it restores: measure the target
            while not done.wait(PROGRESS_INTERVAL):
                progress(tree_bytes(target), max(total, tree_bytes(target)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            self._run("restore", backup, "--target", target, timeout=TRANSFER_TIMEOUT)
        finally:
            done.set()
            watcher.join()
        restored = tree_bytes(target)
        progress(restored, restored)

    def forget(self, volume: str, keep: Mapping[str, int]) -> None:
        """Apply retention to one volume's backups (keep_daily=7, …) and prune."""
        # Locks of a restic a kill ended (ours) would block the prune: unlock removes only
        # stale ones, a running restic keeps its lock.
        self._run("unlock")
        args = ["forget", "--prune", "--tag", f"orlop,orlop-volume={volume}", "--group-by", ""]
        for name, count in keep.items():
            args += [f"--{name.replace('_', '-')}", str(count)]
        self._run(*args, timeout=TRANSFER_TIMEOUT)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _backup_facts(snapshot: dict[str, Any]) -> dict[str, Any]:
    tags = dict(
        t.removeprefix("orlop-").split("=", 1) for t in snapshot.get("tags", []) if "=" in t
    )
    return {
        "id": snapshot.get("id", ""),
        "short_id": snapshot.get("short_id", snapshot.get("id", "")[:8]),
        "volume": tags.get("volume", ""),
        "kind": tags.get("kind", ""),
        "driver": tags.get("driver", ""),
        "size": int(tags["size"]) if tags.get("size", "").isdigit() else None,
        "fs": tags.get("fs") or None,
        "bytes": int(tags["bytes"]) if tags.get("bytes", "").isdigit() else None,
        "created_at": snapshot.get("time", ""),
    }
