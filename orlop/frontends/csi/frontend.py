"""The CSI endpoints of a daemon: for each driver, Identity + Controller + Node on one socket."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Protocol, runtime_checkable

from orlop.core.capacity import reports_capacity
from orlop.core.service import VolumeService
from orlop.frontends.csi.controller import Controller
from orlop.frontends.csi.errors import InFlight
from orlop.frontends.csi.identity import Identity
from orlop.frontends.csi.node import Node
from orlop.frontends.csi.publications import Publications
from orlop.frontends.csi.server import CsiServer, generic_handler
from orlop.frontends.csi.shape import DriverShape

log = logging.getLogger(__name__)


@runtime_checkable
class Identified(Protocol):
    """A backend that knows this host as its provider does (a cloud's instance ID)."""

    def identity(self) -> Any: ...  # orlop.backends.cloud.api.Identity: instance, zone


async def host_identity(backend: object) -> tuple[str, str | None]:
    """This node as a driver's provider knows it (instance ID, zone), else its hostname."""
    for candidate in (backend, getattr(backend, "provider", None)):  # block: its provider
        if isinstance(candidate, Identified):
            try:
                found = await asyncio.to_thread(candidate.identity)
                return str(found.instance), found.zone
            except Exception as error:
                log.warning("no provider identity of this host (%s): using the hostname", error)
    return socket.gethostname(), None


def csi_server(
    service: VolumeService,
    driver: str,
    node_id: str,
    state_dir: str,
    zone: str | None = None,
    stage_wait: float = 10.0,
) -> CsiServer:
    """The gRPC server for `driver`; its controller's claims live under `state_dir`;
    NodeStage waits up to `stage_wait` s for a disk moving here (csi.stage_wait)."""
    capable = reports_capacity(service.registry, driver)
    shape = DriverShape.of(driver, service.driver(driver).backend, zone, capable)
    in_flight = InFlight()
    publications = Publications(os.path.join(state_dir, "csi", f"{driver}.publications.json"))
    controller = Controller(service, shape, node_id, publications, in_flight)
    return CsiServer(
        [
            generic_handler("Identity", Identity(shape).calls()),
            generic_handler("Controller", controller.calls()),
            generic_handler("Node", Node(service, shape, node_id, in_flight, stage_wait).calls()),
        ]
    )
