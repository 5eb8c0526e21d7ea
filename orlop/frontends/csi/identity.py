"""CSI Identity for one driver: its name (`<driver>.csi.orlop.dev`), version, capabilities."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from orlop.frontends.csi.messages import enum_value, message
from orlop.frontends.csi.server import Call
from orlop.frontends.csi.shape import DriverShape, plugin_name


def orlop_version() -> str:
    try:
        return metadata.version("orlop")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Identity:
    def __init__(self, shape: DriverShape) -> None:
        self.shape = shape

    def calls(self) -> dict[str, Call]:
        return {
            "GetPluginInfo": self.get_info,
            "GetPluginCapabilities": self.get_capabilities,
            "Probe": self.probe,
        }

    async def get_info(self, request: Any) -> Any:
        return message("GetPluginInfoResponse")(
            name=plugin_name(self.shape.driver), vendor_version=orlop_version()
        )

    async def get_capabilities(self, request: Any) -> Any:
        def service(kind: str) -> Any:
            number = enum_value("PluginCapability.Service", "Type", kind)
            return message("PluginCapability")(
                service=message("PluginCapability.Service")(type=number)
            )

        capabilities = [service("CONTROLLER_SERVICE")]
        if self.shape.local or self.shape.zone:
            capabilities.append(service("VOLUME_ACCESSIBILITY_CONSTRAINTS"))
        if self.shape.resize:
            online = enum_value("PluginCapability.VolumeExpansion", "Type", "ONLINE")
            capabilities.append(
                message("PluginCapability")(
                    volume_expansion=message("PluginCapability.VolumeExpansion")(type=online)
                )
            )
        return message("GetPluginCapabilitiesResponse")(capabilities=capabilities)

    async def probe(self, request: Any) -> Any:
        response = message("ProbeResponse")()
        response.ready.value = True
        return response
