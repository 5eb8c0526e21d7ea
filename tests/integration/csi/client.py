"""A CSI client over a real gRPC channel on a unix socket, for the conformance suite."""

from __future__ import annotations

import os
from typing import Any

import grpc
import yaml

from orlop.frontends.csi.messages import enum_value, message, service
from tests.support.daemon import OrlopDaemon, wait_for_socket

SERVICES = ("Identity", "Controller", "Node")


class CsiClient:
    """`client.call("CreateVolume", name=…)` → the response; errors raise grpc.RpcError."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.channel = grpc.insecure_channel(f"unix://{path}")
        self.methods: dict[str, Any] = {}
        for service_name in SERVICES:
            for method in service(service_name).methods:
                self.methods[method.name] = self.channel.unary_unary(
                    f"/csi.v1.{service_name}/{method.name}",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=message(method.output_type.name).FromString,
                )
        self._inputs = {
            method.name: method.input_type.name
            for service_name in SERVICES
            for method in service(service_name).methods
        }

    def call(self, method: str, **fields: Any) -> Any:
        request = message(self._inputs[method])(**fields)
        return self.methods[method](request, timeout=120)

    def code(self, method: str, **fields: Any) -> tuple[grpc.StatusCode, str]:
        """The status code and message of a call expected to fail."""
        try:
            self.call(method, **fields)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        raise AssertionError(f"{method} succeeded")

    def close(self) -> None:
        self.channel.close()


def capability(mode: str = "SINGLE_NODE_WRITER", fs_type: str = "") -> Any:
    return message("VolumeCapability")(
        mount=message("VolumeCapability.MountVolume")(fs_type=fs_type),
        access_mode=message("VolumeCapability.AccessMode")(
            mode=enum_value("VolumeCapability.AccessMode", "Mode", mode)
        ),
    )


def block_capability(mode: str = "SINGLE_NODE_WRITER") -> Any:
    return message("VolumeCapability")(
        block=message("VolumeCapability.BlockVolume")(),
        access_mode=message("VolumeCapability.AccessMode")(
            mode=enum_value("VolumeCapability.AccessMode", "Mode", mode)
        ),
    )


def capacity(required: int) -> Any:
    return message("CapacityRange")(required_bytes=required)


def start_csi_daemon(
    drivers: dict[str, dict[str, Any]], node_id: str = "", env: dict[str, str] | None = None
) -> OrlopDaemon:
    """An `orlop serve` with a csi: section; its CSI sockets in <root>/csi/<driver>.sock.
    No `node_id`: the daemon finds its own (the provider's identity, else the hostname)."""
    daemon = OrlopDaemon(drivers, env=env)
    config = yaml.safe_load(daemon.config_path.read_text())
    config["csi"] = {"socket_dir": str(daemon.root / "csi")}
    if node_id:
        config["csi"]["node_id"] = node_id
    daemon.config_path.write_text(yaml.safe_dump(config))
    daemon.start()
    for driver in drivers:
        wait_for_socket(csi_socket(daemon, driver), process=daemon.process)
    return daemon


def csi_socket(daemon: OrlopDaemon, driver: str) -> str:
    return os.path.join(daemon.root, "csi", f"{driver}.sock")
