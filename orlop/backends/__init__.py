"""Storage backends, by kind. Each implements `orlop.backends.base.Backend`."""

from __future__ import annotations

import importlib

from orlop.backends.base import Backend, BackendContext
from orlop.core.model import ConfigError

# kind → "module:Class"; imported on use so a host without a backend's tools still starts.
BACKENDS: dict[str, str] = {
    "directory": "orlop.backends.directory.backend:DirectoryBackend",
    "loopfile": "orlop.backends.loopfile.provider:LoopFileBackend",
    "ebs": "orlop.backends.cloud.ebs.backend:EbsBackend",
    "digitalocean": "orlop.backends.cloud.digitalocean.backend:DigitalOceanBackend",
    "powerflex": "orlop.backends.cloud.powerflex.backend:PowerFlexBackend",
    "gce": "orlop.backends.cloud.gce.backend:GceBackend",
    "vsphere": "orlop.backends.cloud.vsphere.backend:VsphereBackend",
    "cinder": "orlop.backends.cloud.cinder.backend:CinderBackend",
    "sshfs": "orlop.backends.fuse.sshfs:SshfsBackend",
    "s3": "orlop.backends.fuse.s3:S3Backend",
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


def kinds_with(capability: str) -> list[str]:
    """The backend kinds that can have `capability` (a Capabilities field), e.g. for help
    texts: the class has it, or implements its protocol and has it once configured (backups
    need a repository setting; local snapshots need btrfs or xfs underneath)."""
    method = _CAPABILITY_METHODS.get(capability)
    return [
        kind
        for kind in BACKENDS
        if getattr(backend_class(kind).capabilities, capability)
        or (method is not None and hasattr(backend_class(kind), method))
    ]


_CAPABILITY_METHODS = {"snapshot": "create_snapshot", "backup": "stage_backup"}
