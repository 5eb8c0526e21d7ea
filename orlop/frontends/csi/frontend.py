"""The CSI endpoints of a daemon: for each driver, Identity + Controller + Node on one socket."""

from __future__ import annotations

import os
import socket

from orlop.core.service import VolumeService
from orlop.frontends.csi.controller import Controller
from orlop.frontends.csi.errors import InFlight
from orlop.frontends.csi.identity import Identity
from orlop.frontends.csi.node import Node
from orlop.frontends.csi.publications import Publications
from orlop.frontends.csi.server import CsiServer, generic_handler
from orlop.frontends.csi.shape import DriverShape


def default_node_id() -> str:
    return socket.gethostname()


def csi_server(service: VolumeService, driver: str, node_id: str, state_dir: str) -> CsiServer:
    """The gRPC server for `driver`; its controller's claims live under `state_dir`."""
    shape = DriverShape.of(driver, service.driver(driver).backend)
    in_flight = InFlight()
    publications = Publications(os.path.join(state_dir, "csi", f"{driver}.publications.json"))
    controller = Controller(service, shape, node_id, publications, in_flight)
    return CsiServer(
        [
            generic_handler("Identity", Identity(shape).calls()),
            generic_handler("Controller", controller.calls()),
            generic_handler("Node", Node(service, shape, node_id, in_flight).calls()),
        ]
    )
