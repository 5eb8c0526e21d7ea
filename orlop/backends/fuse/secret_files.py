"""Secrets on this host's disk: 0600 files under a driver's state, never in the database."""

from __future__ import annotations

import os

from orlop.core.model import InvalidOption


def write_secret(path: str, content: str) -> str:
    """Write `content` to `path` with mode 0600 from the first byte; return the path."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    os.replace(temporary, path)
    return path


def read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except OSError as error:
        raise InvalidOption(f"cannot read the {what} {path}: {error.strerror}") from None
