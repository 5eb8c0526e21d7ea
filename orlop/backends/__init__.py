"""Storage backends, by kind. Each implements `orlop.backends.base.Backend`."""

from __future__ import annotations

import importlib

from orlop.backends.base import Backend, BackendContext
from orlop.core.model import ConfigError

# kind → "module:Class"; imported on use so a host without a backend's tools still starts.
BACKENDS: dict[str, str] = {
    "directory": "orlop.backends.directory:DirectoryBackend",
    "loopfile": "orlop.backends.block.loopfile:LoopFileBackend",
    "ebs": "orlop.backends.block.cloud.ebs:EbsBackend",
    "digitalocean": "orlop.backends.block.cloud.digitalocean:DigitalOceanBackend",
    "powerflex": "orlop.backends.block.cloud.powerflex:PowerFlexBackend",
    "gce": "orlop.backends.block.cloud.gce:GceBackend",
    "vsphere": "orlop.backends.block.cloud.vsphere:VsphereBackend",
    "cinder": "orlop.backends.block.cloud.cinder:CinderBackend",
    "sshfs": "orlop.backends.network.sshfs:SshfsBackend",
    "s3": "orlop.backends.network.s3:S3Backend",
    "azurefile": "orlop.backends.share.azurefile.backend:AzureFileBackend",
    "powerscale": "orlop.backends.share.powerscale.backend:PowerScaleBackend",
}


def backend_class(kind: str) -> type[Backend]:
    try:
        module_name, class_name = BACKENDS[kind].split(":")
    except KeyError:
        raise ConfigError(
            f"unknown backend {kind!r}: known backends are {', '.join(sorted(BACKENDS))}"
        ) from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_backend(kind: str, context: BackendContext) -> Backend:
    return backend_class(kind)(context)  # type: ignore[call-arg]
