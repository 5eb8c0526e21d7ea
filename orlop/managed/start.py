"""A managed plugin's entry point: listen on the driver's socket first, then start Orlop.

`docker plugin enable` starts the plugin, probes its socket once after 0.5 s and then only
every 3 s. Importing Orlop (pydantic, the backend) takes longer than 0.5 s on a busy host;
binding a unix socket takes microseconds. So the socket is bound and listening before
anything heavy is imported, and the daemon serves on that very socket: a request that
arrives meanwhile waits in its backlog, none is refused. Only the standard library and
`orlop.managed.env`'s constants are loaded before the bind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from orlop.managed.paths import PLUGIN_DIR, socket_name


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
    kind = os.environ.get("ORLOP_PLUGIN_KIND", "")
    name = socket_name(kind)
    if name is not None:
        path = os.path.join(PLUGIN_DIR, name)
        listener = bind(path)
        from orlop.frontends.http import adopt_socket

        adopt_socket(path, listener)
    from orlop.cli.main import cli

    cli.main(args=["serve", *sys.argv[1:]], prog_name="orlop")


if __name__ == "__main__":
    main()
