"""A null volume plugin: Docker's protocol answered from a dict, volumes as bare directories.

No store, no locks, no fsync, no thread pool: the floor of what any plugin costs dockerd.
It runs in its own process on the same HTTP layer as Orlop (orlop/frontends/http.py), so
that bench_e2e.py can split a gap between Orlop and `local` into what the plugin protocol
costs dockerd and what Orlop itself adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

from orlop.frontends.http import Handler, HttpServer, Response


def _routes(root: str) -> dict[bytes, Handler]:
    volumes: dict[str, str] = {}

    def answer(function: Any) -> Handler:
        def handle(body: bytes) -> Response:
            return 200, json.dumps(function(json.loads(body or b"{}"))).encode()

        return handle

    def create(body: dict[str, Any]) -> dict[str, Any]:
        path = os.path.join(root, body["Name"])
        os.makedirs(path, exist_ok=True)
        volumes[body["Name"]] = path
        return {"Err": ""}

    def known(body: dict[str, Any]) -> str | None:
        return volumes.get(body.get("Name", ""))

    def get(body: dict[str, Any]) -> dict[str, Any]:
        path = known(body)
        if path is None:
            return {"Err": f"no volume {body.get('Name')}"}
        return {"Volume": {"Name": body["Name"], "Mountpoint": path, "Status": {}}, "Err": ""}

    def path(body: dict[str, Any]) -> dict[str, Any]:
        found = known(body)
        return {"Mountpoint": found, "Err": ""} if found else {"Err": "no such volume"}

    def remove(body: dict[str, Any]) -> dict[str, Any]:
        found = volumes.pop(body.get("Name", ""), None)
        if found:
            shutil.rmtree(found, ignore_errors=True)
        return {"Err": ""}

    return {
        b"/Plugin.Activate": answer(lambda b: {"Implements": ["VolumeDriver"]}),
        b"/VolumeDriver.Capabilities": answer(lambda b: {"Capabilities": {"Scope": "local"}}),
        b"/VolumeDriver.Create": answer(create),
        b"/VolumeDriver.Remove": answer(remove),
        b"/VolumeDriver.Get": answer(get),
        b"/VolumeDriver.Path": answer(path),
        b"/VolumeDriver.Mount": answer(path),
        b"/VolumeDriver.Unmount": answer(lambda b: {"Err": ""}),
        b"/VolumeDriver.List": answer(
            lambda b: {"Volumes": [{"Name": n, "Mountpoint": p} for n, p in volumes.items()]}
        ),
    }


def _main(socket_path: str, root: str, ready: Any) -> None:
    import uvloop

    async def serve() -> None:
        server = HttpServer(_routes(root))
        await server.start(socket_path)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        ready.set()
        await stop.wait()
        await server.close()

    uvloop.run(serve())


@contextlib.contextmanager
def null_plugin(socket_path: str) -> Iterator[None]:
    """Serve the null plugin on `socket_path` (e.g. /run/docker/plugins/<name>.sock)."""
    root = tempfile.mkdtemp(prefix="orlop-bench-null-")
    context = mp.get_context("fork")
    ready = context.Event()
    process = context.Process(target=_main, args=(socket_path, root, ready), daemon=True)
    process.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the null plugin did not start")
        yield
    finally:
        process.terminate()
        process.join(10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        shutil.rmtree(root, ignore_errors=True)
