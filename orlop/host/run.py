"""Run host commands: an argument list, a timeout, and an error that says what failed."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

from orlop.core.model import BackendError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0


class CommandError(BackendError):
    """A host command failed or timed out."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def run(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    redact: Sequence[str] = (),
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args` (never through a shell) and return its result.

    `redact` lists strings (secrets) that must not appear in logs or error messages.
    """
    shown = _redacted(" ".join(args), redact)
    log.debug("run: %s", shown)
    try:
        result = subprocess.run(
            list(args),
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL if input is None else None,
            close_fds=True,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise CommandError(f"{args[0]} did not finish within {timeout:g}s: {shown}") from None
    except FileNotFoundError:
        raise CommandError(
            f"{args[0]} is not installed on this host (needed for: {shown}); "
            "`orlop doctor` lists what each backend needs"
        ) from None
    if check and result.returncode != 0:
        stderr = _redacted(result.stderr.strip() or result.stdout.strip(), redact)
        raise CommandError(
            f"{shown} failed (exit {result.returncode}): {stderr}", result.returncode, stderr
        )
    return result


def run_lines(
    args: Sequence[str],
    on_line: Callable[[str], None],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> tuple[int, str]:
    """Run `args`, calling `on_line` with each line of its stdout as it comes (progress
    reports); return the exit status and stderr. Killed after `timeout` seconds."""
    shown = " ".join(args)
    log.debug("run: %s", shown)
    try:
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            close_fds=True,
        )
    except FileNotFoundError:
        raise CommandError(
            f"{args[0]} is not installed on this host (needed for: {shown})"
        ) from None
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    reader.start()
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        for line in stdout:
            on_line(line)
        status = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        timer.cancel()
        reader.join(timeout=5)
    if expired:
        raise CommandError(f"{args[0]} did not finish within {timeout:g}s: {shown}")
    return status, "".join(errors)


def _redacted(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def which(command: str) -> str | None:
    """The path of `command` on PATH (plus the sbin directories root expects), or None."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    for directory in path.split(":"):
        candidate = os.path.join(directory, command)
        if directory and os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None
