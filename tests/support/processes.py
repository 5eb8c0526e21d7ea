"""Stopping what tests and benchmarks start, and undoing what it left mounted."""

from __future__ import annotations

import contextlib
import subprocess

from orlop.host.mounts import mounts_under, unmount


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; a process already gone is fine."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def unmount_all_under(root: str) -> None:
    """Unmount everything at or below `root`, deepest first, lazily if busy."""
    for mounted in mounts_under(root):
        with contextlib.suppress(Exception):
            unmount(mounted, lazy_if_busy=True)
