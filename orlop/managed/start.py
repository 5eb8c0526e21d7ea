"""A managed plugin's entry point: listen on the driver's socket first, then start Orlop.

`docker plugin enable` starts the plugin, probes its socket once after 0.5 s and then only
every 3 s. Importing Orlop (pydantic, the backend) takes longer than 0.5 s on a busy host;
binding a unix socket takes microseconds. So the socket is bound and listening before
anything heavy is imported, and the daemon serves on that very socket: a request that
arrives meanwhile waits in its backlog, none is refused.

A configuration Orlop refuses (a bad `docker plugin set`, a required setting missing) does
not end the process: Docker would call the plugin enabled, then retry a dead socket for 15 s
at each volume call and say only "no such file". The socket instead answers every volume
call with the configuration error, so `docker volume create` shows what to set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from orlop.managed.paths import PLUGIN_DIR, socket_name

if TYPE_CHECKING:
    from orlop.frontends.http import Handler

log = logging.getLogger("orlop")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Docker's volume plugin protocol: every call a volume driver answers.
VOLUME_CALLS = ("Create", "Remove", "Mount", "Unmount", "Get", "List", "Path", "Capabilities")


def bind(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a plugin's /run/docker/plugins is its own: a leftover is ours
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(1024)
    return listener


def main() -> None:
    name = socket_name(os.environ.get("ORLOP_PLUGIN_KIND", ""))
    path = os.path.join(PLUGIN_DIR, name) if name else None
    if path is not None:
        listener = bind(path)  # before any other import: asyncio alone takes 0.1-0.4 s
        from orlop.frontends.http import adopt_socket

        adopt_socket(path, listener)
    from orlop.core.model import OrlopError

    try:
        from orlop.config import load_config
        from orlop.daemon import Daemon, serve

        config = load_config()
        logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
        daemon = Daemon(config)
    except OrlopError as error:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        log.error("orlop cannot start: %s", error)
        if path is None:
            sys.exit(1)
        _run(refuse_all(path, f"the Orlop plugin cannot start: {error}"))
        return
    serve(config, daemon)


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    import asyncio

    asyncio.run(coroutine)


async def refuse_all(path: str, message: str) -> None:
    """Answer Docker on `path` (an adopted socket) with `message` until SIGTERM."""
    import asyncio

    from orlop.frontends.http import HttpServer

    error = json.dumps({"Err": message}).encode()
    routes = {f"/VolumeDriver.{call}".encode(): _constant(error) for call in VOLUME_CALLS}
    routes[b"/Plugin.Activate"] = _constant(b'{"Implements": ["VolumeDriver"]}')
    server = HttpServer(routes)
    await server.start(path, mode=0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def _constant(body: bytes) -> Handler:
    return lambda _request: (200, body)


if __name__ == "__main__":
    main()
