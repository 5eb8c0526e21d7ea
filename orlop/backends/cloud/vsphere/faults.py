"""pyVmomi as the provider sees it: its dynamic types said to be Any once, and its faults
and socket errors as `CloudError`s of the layer's kinds (the layer decides what to retry)."""

from __future__ import annotations

import http.client
import ssl
from typing import Any

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from orlop.backends.cloud.api import CloudError, ErrorKind

# pyVmomi's data objects and managed objects are built at run time from the API's own
# description: to a type checker they are Any, and they are said to be so here once.
vim: Any = _vim
vmodl: Any = _vmodl
SmartConnect: Any = _connect.SmartConnect
Disconnect: Any = _connect.Disconnect

_KINDS: list[tuple[tuple[type[BaseException], ...], ErrorKind]] = [
    ((vim.fault.InvalidLogin, vim.fault.NoPermission, vim.fault.NotAuthenticated),
     ErrorKind.CREDENTIALS),
    ((vim.fault.FileNotFound, vmodl.fault.ManagedObjectNotFound, vim.fault.NotFound),
     ErrorKind.NOT_FOUND),
    ((vim.fault.FileLocked, vim.fault.ResourceInUse), ErrorKind.IN_USE),
    ((vim.fault.TaskInProgress, vim.fault.ConcurrentAccess, vmodl.fault.HostCommunication),
     ErrorKind.RETRYABLE),
    ((vim.fault.InvalidDatastore, vim.fault.InvalidDatastorePath, vmodl.fault.InvalidArgument,
      vim.fault.InvalidDeviceSpec, vim.fault.NoDiskSpace, vim.fault.FileTooLarge,
      vmodl.fault.NotSupported, vmodl.fault.InvalidRequest),
     ErrorKind.INVALID),
]  # fmt: skip


def fault_name(fault: BaseException) -> str:
    name = type(fault).__name__
    return name.rsplit(".", 1)[-1]


def to_cloud_error(what: str, error: BaseException) -> CloudError:
    """A pyVmomi fault or socket error as a CloudError whose message says what failed."""
    if isinstance(error, CloudError):
        return error
    if isinstance(error, vmodl.MethodFault):
        name = fault_name(error)
        kind = next((k for types, k in _KINDS if isinstance(error, types)), ErrorKind.FAILED)
        detail = getattr(error, "msg", "") or ""
        if detail.startswith("*types."):  # vcsim's message is the Go type name: say nothing
            detail = ""
        if isinstance(error, vim.fault.GenericVmConfigFault) and "lock" in detail.lower():
            # ESXi refusing to open a disk that a running VM holds: "Failed to lock the file"
            kind = ErrorKind.IN_USE
        extra = [
            f"{field}={getattr(error, field)}"
            for field in ("file", "invalidProperty", "name", "datastore")
            if getattr(error, field, None) and not isinstance(getattr(error, field), vim.Datastore)
        ]
        text = ", ".join(part for part in (detail, *extra) if part)
        return CloudError(f"{what}: vSphere answered {name}{': ' + text if text else ''}",
                          kind, name)  # fmt: skip
    if isinstance(error, ssl.SSLError):
        return CloudError(f"{what}: TLS failed ({error}); check ca_file/verify", ErrorKind.FAILED)
    if isinstance(error, OSError | http.client.HTTPException):
        return CloudError(f"{what}: no answer from vSphere ({error})", ErrorKind.UNREACHABLE)
    return CloudError(f"{what}: {type(error).__name__}: {error}", ErrorKind.FAILED)
