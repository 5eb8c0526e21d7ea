"""vSphere as the provider uses it: one pyVmomi session, tasks, faults, inventory, files.

Every call goes through `Vsphere.call`, which turns pyVmomi's faults and socket errors into
`CloudError`s of the layer's kinds (`faults.py`); the layer decides what to retry. A session
that expired is logged in again once, transparently. Tasks are waited for by polling only
`info.state`/`info.result`/`info.error` through the property collector (some servers report
a task's entity in a shape `WaitForTask` cannot read). The password is read from its file
at login and kept nowhere else.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.vsphere.faults import Disconnect, SmartConnect
from orlop.backends.cloud.vsphere.faults import to_cloud_error as to_cloud_error  # re-exported
from orlop.backends.cloud.vsphere.faults import vim as vim
from orlop.backends.cloud.vsphere.faults import vmodl as vmodl
from orlop.backends.cloud.vsphere.settings import VsphereSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def swapped_uuid(value: str) -> str:
    """A BIOS UUID with its first three groups byte-swapped: some guests read the SMBIOS UUID
    in the other byte order than vSphere's `config.uuid`."""
    parts = value.split("-")
    if len(parts) != 5:
        return value
    swap = ["".join(reversed([p[i : i + 2] for i in range(0, len(p), 2)])) for p in parts[:3]]
    return "-".join([*swap, *parts[3:]])


class Vsphere:
    """A thread-safe vSphere session that answers in the layer's error kinds."""

    def __init__(self, settings: VsphereSettings) -> None:
        self.settings = settings
        url = urllib.parse.urlsplit(settings.url)
        self.scheme = url.scheme
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = url.path or "/sdk"
        self._si: Any = None
        self._view: Any = None
        self._dc: Any = None
        self._dc_name = ""
        self._content: Any = None  # the session's ServiceContent, fetched once
        self._stores: dict[str, Any] = {}  # datastore name → managed object
        self._lock = threading.Lock()

    # session --------------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        if not self.settings.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _password(self) -> str:
        try:
            with open(self.settings.password_file, encoding="utf-8") as file:
                return file.read().strip()
        except OSError as error:
            raise CloudError(
                f"cannot read the vSphere password_file {self.settings.password_file}: "
                f"{error.strerror}",
                ErrorKind.CREDENTIALS,
            ) from None

    def _connect(self) -> Any:
        with self._lock:
            if self._si is None:
                password = self._password()
                try:
                    self._si = SmartConnect(
                        protocol=self.scheme,
                        host=self.host,
                        port=self.port,
                        path=self.path,
                        user=self.settings.username,
                        pwd=password,
                        sslContext=self._ssl(),
                        httpConnectionTimeout=self.settings.api_timeout,
                    )
                    self._content = self._si.RetrieveContent()
                except Exception as error:
                    self._si = None
                    raise to_cloud_error(f"logging in to {self.settings.url}", error) from None
                self._view = self._dc = None
                self._stores = {}
            return self._si

    def close(self) -> None:
        with self._lock:
            si, self._si, self._view, self._dc = self._si, None, None, None
        if si is not None:
            try:
                Disconnect(si)
            except Exception as error:  # closing is best effort: the session expires anyway
                log.debug("vSphere logout: %s", error)

    @property
    def content(self) -> Any:
        self._connect()
        return self._content

    def call(self, what: str, function: Callable[[], T]) -> T:
        """Run `function` (pyVmomi calls); log in again once if the session expired."""
        for attempt in (1, 2):
            si = self._connect()
            try:
                return function()
            except vim.fault.NotAuthenticated as error:
                if attempt == 2 or not self._login_again(si):
                    raise to_cloud_error(what, error) from None
            except Exception as error:
                raise to_cloud_error(what, error) from None
        raise AssertionError("unreachable")

    def _login_again(self, si: Any) -> bool:
        """A new session on the same connection (vCenter ends idle ones after 30 minutes), so
        that every object already fetched works again; False if that fails too."""
        with self._lock:
            try:
                manager = si.content.sessionManager
                manager.Login(self.settings.username, self._password())
            except Exception as error:
                log.warning("logging in to vSphere again failed: %s", to_cloud_error("", error))
                if self._si is si:
                    self._si = self._view = self._dc = None
                return False
            self._view = None  # a container view belongs to the session that made it
            return True

    def wait(self, task: Any, what: str, timeout: float | None = None) -> Any:
        """Wait for a vSphere task; its result, or its fault as a CloudError."""
        deadline = time.monotonic() + (timeout or self.settings.task_timeout)
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=task, skip=False)],
            propSet=[
                vmodl.query.PropertyCollector.PropertySpec(
                    type=vim.Task, all=False, pathSet=["info.state", "info.result", "info.error"]
                )
            ],
        )
        pause = 0.02
        while True:
            contents = self.call(
                what, lambda: self.content.propertyCollector.RetrieveContents([spec])
            )
            info = {prop.name: prop.val for prop in contents[0].propSet} if contents else {}
            state = info.get("info.state")
            if state == "success":
                return info.get("info.result")
            if state == "error":
                fault = info.get("info.error")
                if not isinstance(fault, vmodl.MethodFault):  # a LocalizedMethodFault
                    fault = getattr(fault, "fault", None) or Exception(str(fault))
                raise to_cloud_error(what, fault)
            if time.monotonic() > deadline:
                raise CloudError(
                    f"{what}: the vSphere task did not finish in time", ErrorKind.FAILED
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # inventory ------------------------------------------------------------------------------
    def datacenter(self) -> Any:
        if self._dc is not None:
            return self._dc
        wanted = self.settings.datacenter

        def find() -> Any:
            found = [
                e for e in self.content.rootFolder.childEntity if isinstance(e, vim.Datacenter)
            ]
            names = [dc.name for dc in found]
            if wanted is None and len(found) == 1:
                return found[0]
            for dc in found:
                if dc.name == wanted:
                    return dc
            raise CloudError(
                f"datacenter {wanted} does not exist: vSphere has {', '.join(names) or 'none'}"
                if wanted
                else f"vSphere has several datacenters ({', '.join(names)}): set datacenter",
                ErrorKind.NOT_FOUND if wanted else ErrorKind.INVALID,
            )

        dc = self.call("finding the datacenter", find)
        self._dc_name = self.call("finding the datacenter", lambda: dc.name)
        self._dc = dc
        return dc

    def datacenter_name(self) -> str:
        self.datacenter()
        return self._dc_name

    def datastore(self, name: str) -> Any:
        known = self._stores.get(name)
        if known is not None:
            return known

        def find() -> Any:
            stores = self.datastores()
            if name in stores:
                return stores[name]
            names = ", ".join(sorted(stores)) or "none"
            raise CloudError(
                f"datastore {name} does not exist in datacenter {self.datacenter_name()}: "
                f"it has {names}",
                ErrorKind.INVALID,
            )

        return self.call(f"finding datastore {name}", find)

    def datastores(self) -> dict[str, Any]:
        """The datacenter's datastores by name, in one round trip (and kept for `datastore`)."""
        collector = vmodl.query.PropertyCollector
        spec = collector.FilterSpec(
            objectSet=[
                collector.ObjectSpec(
                    obj=self.datacenter(),
                    skip=True,
                    selectSet=[
                        collector.TraversalSpec(
                            name="stores", path="datastore", skip=False, type=vim.Datacenter
                        )
                    ],
                )
            ],
            propSet=[collector.PropertySpec(type=vim.Datastore, all=False, pathSet=["name"])],
        )
        found = self.call(
            "listing datastores", lambda: self.content.propertyCollector.RetrieveContents([spec])
        )
        stores = {item.propSet[0].val: item.obj for item in found or [] if item.propSet}
        self._stores = stores
        return stores

    def vm_ref(self, moref: str) -> Any:
        return vim.VirtualMachine(moref, self._connect()._stub)

    def find_vm(self, uuid: str | None, name: str | None) -> Any:
        """This VM by name, else by BIOS UUID (in either byte order); None if absent."""
        dc = self.datacenter()
        search = self.content.searchIndex
        if name:
            return self.call(
                f"finding VM {name}",
                lambda: next(
                    (vm for vm, props in self.vm_properties(["name"]) if props.get("name") == name),
                    None,
                ),
            )
        for candidate in dict.fromkeys([uuid or "", swapped_uuid(uuid or "")]):
            vm = self.call(
                f"finding VM {candidate}",
                lambda c=candidate: search.FindByUuid(dc, c, True, False),  # type: ignore[misc]
            )
            if vm is not None:
                return vm
        return None

    def vm_properties(self, paths: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        """(vm, {path: value}) for every VM of the datacenter, in one round trip."""
        content = self.content
        folder = self.datacenter().vmFolder
        with self._lock:  # one view per session, however many threads ask at once
            if self._view is None:
                self._view = content.viewManager.CreateContainerView(
                    folder, [vim.VirtualMachine], True
                )
            view = self._view
        collector = vmodl.query.PropertyCollector
        spec = collector.FilterSpec(
            objectSet=[
                collector.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        collector.TraversalSpec(
                            name="view", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[collector.PropertySpec(type=vim.VirtualMachine, all=False, pathSet=paths)],
        )
        found = content.propertyCollector.RetrieveContents([spec])
        return [(item.obj, {p.name: p.val for p in item.propSet}) for item in found]

    # datastore files ------------------------------------------------------------------------
    def _file_url(self, datastore: str, path: str) -> str:
        query = urllib.parse.urlencode({"dcPath": self.datacenter_name(), "dsName": datastore})
        quoted = urllib.parse.quote(path)
        return f"{self.scheme}://{self.host}:{self.port}/folder/{quoted}?{query}"

    def _file_request(self, method: str, datastore: str, path: str, data: bytes | None) -> Any:
        si = self._connect()
        cookie = si._stub.cookie.split(";")[0]
        request = urllib.request.Request(
            self._file_url(datastore, path), data=data, method=method, headers={"Cookie": cookie}
        )
        if data is not None:
            request.add_header("Content-Type", "application/octet-stream")
        context = self._ssl()
        return urllib.request.urlopen(request, timeout=self.settings.api_timeout, context=context)

    def read_file(self, datastore: str, path: str) -> bytes | None:
        """A small file from a datastore; None if it does not exist."""
        what = f"reading [{datastore}] {path}"
        try:
            with self._file_request("GET", datastore, path, None) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code in (401, 403):
                raise CloudError(f"{what}: HTTP {error.code}", ErrorKind.CREDENTIALS) from None
            raise CloudError(f"{what}: HTTP {error.code}", ErrorKind.RETRYABLE) from None
        except OSError as error:
            raise to_cloud_error(what, error) from None

    def write_file(self, datastore: str, path: str, data: bytes) -> None:
        what = f"writing [{datastore}] {path}"
        try:
            with self._file_request("PUT", datastore, path, data) as response:
                response.read()
        except urllib.error.HTTPError as error:
            kind = ErrorKind.CREDENTIALS if error.code in (401, 403) else ErrorKind.FAILED
            raise CloudError(f"{what}: HTTP {error.code}", kind) from None
        except OSError as error:
            raise to_cloud_error(what, error) from None
