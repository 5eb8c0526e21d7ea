"""Fail points: make the daemon die at a named step, to prove crash recovery.

`ORLOP_FAILPOINTS=block.after_format,…` makes `failpoint("block.after_format")` end the
process at once with exit status 86, as a kill -9 would: no cleanup, no atexit.
"""

from __future__ import annotations

import os

FAILPOINT_EXIT_STATUS = 86


def _armed() -> frozenset[str]:
    return frozenset(filter(None, os.environ.get("ORLOP_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    if name in _armed():
        os.write(2, f"orlop: failpoint {name} reached, exiting\n".encode())
        os._exit(FAILPOINT_EXIT_STATUS)
