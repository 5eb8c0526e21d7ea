"""The Docker volume plugin protocol for one driver: request → VolumeService → response.

No storage logic here: decode, call the service, encode. OrlopError becomes {"Err": …}.
Get, Path and List are answered synchronously from the service's memory. List's encoded
body is cached until the driver's volumes change; so is each volume's Get body, also keyed
on the fields of its Status that change without a new generation (state, mounts, fault).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orlop.core import context
from orlop.core.model import OrlopError, Volume
from orlop.core.service import VolumeService
from orlop.frontends.docker.messages import CreateRequest, MountRequest, NameRequest, describe
from orlop.frontends.http import Handler, Response

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

FIRST_PASS_WAIT = 5.0  # seconds List (and Get of an unknown name) wait after start, at most
# Docker gives up on a Create or Mount after 2 minutes, on an Unmount after 1 (moby's
# volume/drivers/proxy.go): answer before that with a clear error (the operation goes on,
# and Docker's retry joins it: see orlop.core.inflight).
OPERATION_TIMEOUT = 100.0
UNMOUNT_TIMEOUT = 50.0
_ACTIVATE = json.dumps({"Implements": ["VolumeDriver"]}).encode()
_OK = b'{"Err":""}'
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _err(message: str, status: int = 200) -> Response:
    return status, _dumps({"Err": message}).encode()


class DockerPlugin:
    """Handlers for `/VolumeDriver.*` on the socket of `driver`."""

    def __init__(self, service: VolumeService, driver: str) -> None:
        self.service = service
        self.driver = driver
        scope = service.driver(driver).backend.capabilities.scope
        self._capabilities = _dumps({"Capabilities": {"Scope": scope}}).encode()
        self._list_cache: tuple[int, bytes] = (-1, b"")
        # name → (volume, what its Status shows that may change in place, encoded body)
        self._get_cache: dict[str, tuple[Volume, tuple[Any, ...], bytes]] = {}
        self._path_cache: dict[str, bytes] = {}  # name → encoded Path answer
        self._cached_generation = -1
        self._get_now = self._sync("Get", NameRequest, self.get)

    def routes(self) -> dict[bytes, Handler]:
        return {
            b"/Plugin.Activate": lambda body: (200, _ACTIVATE),
            b"/VolumeDriver.Capabilities": lambda body: (200, self._capabilities),
            b"/VolumeDriver.Create": self._async("Create", CreateRequest, self.create),
            b"/VolumeDriver.Remove": self._async("Remove", NameRequest, self.remove),
            b"/VolumeDriver.Mount": self._async("Mount", MountRequest, self.mount),
            b"/VolumeDriver.Unmount": self._async("Unmount", MountRequest, self.unmount),
            b"/VolumeDriver.Get": self._get,
            b"/VolumeDriver.Path": self._sync("Path", NameRequest, self.path),
            b"/VolumeDriver.List": self.list,
        }

    # decoding ---------------------------------------------------------------------------
    def _sync(
        self, call: str, model: type[M], handler: Callable[[M], bytes]
    ) -> Callable[[bytes], Response]:
        endpoint = f"/VolumeDriver.{call}"

        def handle(body: bytes) -> Response:
            try:
                return 200, handler(model.model_validate_json(body or b"{}"))
            except ValidationError as error:
                return _err(describe(error, endpoint), 400)
            except OrlopError as error:
                return _err(str(error))

        return handle

    def _async(
        self, call: str, model: type[M], handler: Callable[[M], Awaitable[bytes]]
    ) -> Handler:
        endpoint = f"/VolumeDriver.{call}"

        def handle(body: bytes) -> Response | Awaitable[Response]:
            try:
                request = model.model_validate_json(body or b"{}")
            except ValidationError as error:
                return _err(describe(error, endpoint), 400)
            return self._guard(handler, request, call)

        return handle

    async def _guard(
        self, handler: Callable[[M], Awaitable[bytes]], request: M, call: str
    ) -> Response:
        # One operation ID per Docker call: on its log lines, its events, its worker threads.
        name = getattr(request, "Name", "")
        with context.operation(call.lower(), self.driver, name if isinstance(name, str) else ""):
            try:
                return 200, await handler(request)
            except OrlopError as error:
                log.info("/VolumeDriver.%s: %s", call, error)
                return _err(str(error))

    # endpoints --------------------------------------------------------------------------
    async def create(self, request: CreateRequest) -> bytes:
        await self.service.create(
            self.driver, request.Name, dict(request.Opts or {}), timeout=OPERATION_TIMEOUT
        )
        return _OK

    async def remove(self, request: NameRequest) -> bytes:
        await self.service.remove(self.driver, request.Name)
        return _OK

    async def mount(self, request: MountRequest) -> bytes:
        path = await self.service.mount(
            self.driver, request.Name, request.ID, timeout=OPERATION_TIMEOUT
        )
        return _dumps({"Mountpoint": path, "Err": ""}).encode()

    async def unmount(self, request: MountRequest) -> bytes:
        await self.service.unmount(self.driver, request.Name, request.ID, timeout=UNMOUNT_TIMEOUT)
        return _OK

    def _get(self, body: bytes) -> Response | Awaitable[Response]:
        """Get; a name not known yet waits for the first discovery pass after start."""
        answer = self._get_now(body)
        if answer[1].startswith(b'{"Err":') and not self.service.discovery.settled(self.driver):
            return self._after_first_pass(lambda: self._get_now(body))
        return answer

    async def _after_first_pass(self, answer: Callable[[], Response]) -> Response:
        await self.service.discovery.first_pass(self.driver, FIRST_PASS_WAIT)
        return answer()

    def get(self, request: NameRequest) -> bytes:
        volume = self.service.get(self.driver, request.Name)
        self._drop_stale_caches()
        key = (
            volume.state,
            len(volume.mount_ids),
            volume.fault,
            volume.usage,
            volume.mountpoint,
            id(volume.record),
        )
        cached = self._get_cache.get(volume.name)
        if cached is not None and cached[0] is volume and cached[1] == key:
            return cached[2]
        body = _dumps({"Volume": self._describe(volume), "Err": ""}).encode()
        self._get_cache[volume.name] = (volume, key, body)
        return body

    def path(self, request: NameRequest) -> bytes:
        self._drop_stale_caches()
        cached = self._path_cache.get(request.Name)
        if cached is None:
            mountpoint = self.service.path(self.driver, request.Name)
            cached = _dumps({"Mountpoint": mountpoint, "Err": ""}).encode()
            self._path_cache[request.Name] = cached
        return cached

    def _drop_stale_caches(self) -> None:
        """Forget cached Get and Path answers once the driver's volumes have changed."""
        generation = self.service.generation[self.driver]
        if generation != self._cached_generation:
            self._get_cache.clear()
            self._path_cache.clear()
            self._cached_generation = generation

    def list(self, body: bytes) -> Response | Awaitable[Response]:
        """List; right after start it waits (bounded) for the first discovery pass, so it
        does not miss volumes other hosts made."""
        if not self.service.discovery.settled(self.driver):
            return self._after_first_pass(self._list_now)
        return self._list_now()

    def _list_now(self) -> Response:
        generation = self.service.generation[self.driver]
        if self._list_cache[0] != generation:
            volumes = [
                {"Name": v.name, "Mountpoint": v.mountpoint, "CreatedAt": v.created_at}
                for v in self.service.list(self.driver)
            ]
            self._list_cache = (generation, _dumps({"Volumes": volumes, "Err": ""}).encode())
        return 200, self._list_cache[1]

    def _describe(self, volume: Volume) -> dict[str, Any]:
        return {
            "Name": volume.name,
            "Mountpoint": volume.mountpoint,
            "CreatedAt": volume.created_at,
            "Status": self.service.status(volume),
        }
