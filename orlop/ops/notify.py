"""systemd's notify protocol: READY once crash recovery is done, WATCHDOG pings, STOPPING.

A datagram to $NOTIFY_SOCKET (a path, or `@name` in the abstract namespace); without it
(not under systemd, or `Type=simple`) every call does nothing. The send never blocks: it
runs on the event loop (WATCHDOG pings), and a datagram socket whose reader is slow (a
busy systemd, a full receive queue) would freeze the loop with a blocking send. A message
that cannot go at once is dropped (the next ping is due soon); a failure is logged once,
not at every ping, until a send works again.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)
_failing = False  # the last send failed (and was logged): say nothing until one works


def notify(message: str) -> bool:
    """Send `message` ("READY=1", …) to systemd; False when there is no one to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    global _failing
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError as error:  # BlockingIOError too: dropped, never waited for
        if not _failing:
            _failing = True
            log.warning(
                "telling systemd %r: %s (said once; later failures are not logged)",
                message.split("\n", 1)[0],
                error,
            )
        return False
    if _failing:
        _failing = False
        log.info("telling systemd works again")
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
