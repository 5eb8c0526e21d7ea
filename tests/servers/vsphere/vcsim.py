"""vcsim, VMware's vCenter simulator, for the vsphere driver's tests — and its testbed.

`Vcsim` builds `tests/servers/vsphere/vcsim-go/main.go` against Debian's govmomi source
(golang-github-vmware-govmomi-dev) once, cached by a hash of its inputs under
/var/cache/orlop-test, and serves it on 127.0.0.1. `VsphereTestbed` makes hosts: a new VM
per host (disk.EnableUUID on, powered on) whose attached Orlop disks the shared device
presenter shows as real loop devices at the by-id paths a guest would show.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from orlop.backends.cloud.vsphere.files import DiskPath
from orlop.backends.cloud.vsphere.labels import load_metadata, namespace_tag
from orlop.host.run import run
from tests.support.cloud.presenter import DevicePresenter, PollingPresenter, Presented
from tests.support.cloud.testbed import CloudHost
from tests.support.names import unique
from tests.support.processes import stop_process

SOURCE = Path(__file__).parent / "vcsim-go" / "main.go"
CACHE = Path(os.environ.get("ORLOP_TEST_CACHE", "/var/cache/orlop-test"))
USERNAME = "orlop"
FOLDER = "orlop-volumes"
DATASTORE = "LocalDS_0"
MIB = 1024**2


def _inputs_hash() -> str:
    versions = run(
        ["dpkg-query", "-W", "-f=${Version} ", "golang-go", "golang-github-vmware-govmomi-dev"]
    ).stdout
    return hashlib.sha256(SOURCE.read_bytes() + versions.encode()).hexdigest()[:16]


def build_vcsim() -> Path:
    """The vcsim binary for this main.go and these packages, built once (about 30 s)."""
    target = CACHE / f"vcsim-{_inputs_hash()}" / "vcsim"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build, however many sessions start at once
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(prefix="orlop-vcsim-build-") as gopath:
            package = Path(gopath) / "src" / "orlopvcsim"
            package.mkdir(parents=True)
            shutil.copy(SOURCE, package / "main.go")
            env = {
                **os.environ,
                "GO111MODULE": "off",
                "GOPATH": f"{gopath}:/usr/share/gocode",
                "GOCACHE": str(CACHE / "go-build"),
                "HOME": os.environ.get("HOME") or str(CACHE),  # go wants one for its config
            }
            subprocess.run(
                ["go", "build", "-o", str(target) + ".new", "."],
                cwd=package,
                env=env,
                check=True,
                timeout=900,
            )
        os.replace(str(target) + ".new", target)
    return target


class Vcsim:
    """One vcsim process: a vCenter with datacenter DC0, datastores LocalDS_0 and LocalDS_1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-vcsim-"))
        self.password_file = self.root / "password"
        self.password_file.write_text(unique("pw") + "\n")
        self.password_file.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.datastores: dict[str, str] = {}
        self.si: Any = None

    def start(self) -> Vcsim:
        binary = build_vcsim()
        self.process = subprocess.Popen(
            [str(binary), "-username", USERNAME, "-password-file", str(self.password_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(self.root / "vcsim.log", "wb"),  # noqa: SIM115 - lives with the process
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        if not ready:
            self.stop()
            raise RuntimeError(f"vcsim did not start within 120 s: see {self.root}/vcsim.log")
        info = json.loads(self.process.stdout.readline())
        self.url, self.datastores = info["url"], info["datastores"]
        self.si = self.connect()
        return self

    def connect(self) -> Any:
        url = urlsplit(self.url)
        return SmartConnect(
            protocol="http",
            host=url.hostname,
            port=url.port,
            user=USERNAME,
            pwd=self.password_file.read_text().strip(),
        )

    @property
    def content(self) -> Any:
        return self.si.RetrieveContent()

    @property
    def datacenter(self) -> Any:
        return self.content.rootFolder.childEntity[0]

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": self.url,
            "username": USERNAME,
            "password_file": str(self.password_file),
            "datastore": DATASTORE,
            "folder": FOLDER,
            **extra,
        }

    def wait(self, task: Any) -> Any:
        """Poll a task by its info properties (WaitForTask trips on some vcsim tasks)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = task.info.state
            if state == "success":
                return task.info.result
            if state == "error":
                raise RuntimeError(f"vcsim task failed: {task.info.error}")
            time.sleep(0.02)
        raise TimeoutError("vcsim task did not finish")

    def create_vm(self, name: str, enable_uuid: bool = True) -> Any:
        """A new powered-on VM without disks; disk.EnableUUID as a guest for Orlop needs."""
        dc = self.datacenter
        host = dc.hostFolder.childEntity[0]
        extra = [vim.option.OptionValue(key="disk.EnableUUID", value="TRUE")] if enable_uuid else []
        spec = vim.vm.ConfigSpec(
            name=name,
            guestId="otherGuest64",
            numCPUs=1,
            memoryMB=64,
            files=vim.vm.FileInfo(vmPathName=f"[{DATASTORE}]"),
            extraConfig=extra,
        )
        vm = self.wait(dc.vmFolder.CreateVM_Task(spec, host.resourcePool))
        self.wait(vm.PowerOnVM_Task())
        return vm

    def destroy_vm(self, vm: Any) -> None:
        with contextlib.suppress(Exception):
            # Detach Orlop's disks first: Destroy would delete their files with the VM.
            disks = [
                d
                for d in vm.config.hardware.device
                if isinstance(d, vim.vm.device.VirtualDisk) and FOLDER in d.backing.fileName
            ]
            remove = vim.vm.device.VirtualDeviceSpec.Operation.remove
            changes = [vim.vm.device.VirtualDeviceSpec(operation=remove, device=d) for d in disks]
            if changes:
                self.wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=changes)))
            self.wait(vm.PowerOffVM_Task())
            self.wait(vm.Destroy_Task())

    def files(self, namespace: str) -> list[DiskPath]:
        """The VMDKs of `namespace` on the server's own storage, bypassing the API."""
        tag = namespace_tag(namespace)
        found = []
        for name, root in self.datastores.items():
            folder = Path(root) / FOLDER
            for file in sorted(folder.glob(f"*.{tag}.vmdk")) if folder.is_dir() else []:
                found.append(DiskPath(name, FOLDER, file.name[: -len(".vmdk")]))
        return found

    def local(self, datastore: str, path: str) -> Path:
        return Path(self.datastores[datastore]) / path

    def stop(self) -> None:
        if self.si is not None:
            with contextlib.suppress(Exception):
                Disconnect(self.si)
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()  # vcsim exits and removes its datastores
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def disk_uuid(server: Vcsim, disk_id: str) -> str:
    manager = server.content.virtualDiskManager
    uuid: str = manager.QueryVirtualDiskUuid(disk_id, server.datacenter)
    return re.sub(r"[^0-9a-f]", "", uuid.lower())


class VsphereTestbed:
    """CloudTestbed over one vcsim: each host is a VM of its own."""

    kind = "vsphere"
    create_options = {"size": "64M"}
    grow_to = 128 * MIB

    def __init__(self, server: Vcsim, root: Path, namespace: str | None = None) -> None:
        self.server = server
        self.root = root
        self.namespace = namespace or unique("ns")
        self.presenter = DevicePresenter()
        self.pollers: list[PollingPresenter] = []
        self.vms: list[Any] = []
        self.si = server.connect()  # the presenters' own session
        self._uuids: dict[str, str] = {}

    def host(self, present: bool = True, **settings: Any) -> CloudHost:
        name = unique("vm")
        vm = self.server.create_vm(name)
        self.vms.append(vm)
        state_dir = self.root / name / "state"
        by_id = self.root / name / "by-id"
        state_dir.mkdir(parents=True)
        by_id.mkdir(parents=True)
        moref = vm._moId
        host_settings = self.server.settings(
            vm_uuid=vm.config.uuid,
            namespace=self.namespace,
            by_id_dir=str(by_id),
            attach_timeout=60.0,
            detach_timeout=60.0,
            claim_settle=0.3,
            poll_max=0.2,
            **settings,
        )
        poller = PollingPresenter(
            self.presenter, lambda: self._attached(moref, by_id), interval=0.1, present=present
        )
        poller.start()
        self.pollers.append(poller)
        return CloudHost(moref, self.kind, host_settings, state_dir, {"vm": vm, "name": name})

    def _attached(self, moref: str, by_id: Path) -> list[Presented]:
        vm = vim.VirtualMachine(moref, self.si._stub)
        shown = []
        for device in vm.config.hardware.device:
            if not isinstance(device, vim.vm.device.VirtualDisk):
                continue
            file = device.backing.fileName
            if f"] {FOLDER}/" not in file:
                continue
            if file not in self._uuids:
                self._uuids[file] = disk_uuid(self.server, file)
            serial = self._uuids[file]
            links = (str(by_id / f"wwn-0x{serial}"), str(by_id / f"scsi-3{serial}"))
            size = device.capacityInKB * 1024
            if size > self.presenter.sizes.get(file, size):
                self.presenter.device_for(file, size)  # grown while attached: so is the device
            shown.append(Presented(file, size, links))
        return shown

    def attached_to(self) -> dict[str, list[str]]:
        """disk file → VM morefs, from every VM's devices."""
        view = self.server.content.viewManager.CreateContainerView(
            self.server.datacenter.vmFolder, [vim.VirtualMachine], True
        )
        try:
            found: dict[str, list[str]] = {}
            for vm in view.view:
                for device in vm.config.hardware.device:
                    if isinstance(device, vim.vm.device.VirtualDisk):
                        found.setdefault(device.backing.fileName, []).append(vm._moId)
            return found
        finally:
            view.Destroy()

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        attached = self.attached_to()
        disks = []
        for path in self.server.files(namespace):
            metadata = self.server.local(path.datastore, path.metadata)
            loaded = load_metadata(metadata.read_bytes()) if metadata.exists() else None
            labels = loaded[0] if loaded else {}
            disks.append(
                {
                    "id": path.id,
                    "volume": labels.get("volume") or path.volume(),
                    "attached_to": attached.get(path.id, []),
                    "labels": labels,
                }
            )
        return disks

    def delete_behind_orlop(self, disk_id: str) -> None:
        path = DiskPath.parse(disk_id)
        assert path is not None
        content, dc = self.server.content, self.server.datacenter
        self.server.wait(content.virtualDiskManager.DeleteVirtualDisk_Task(disk_id, dc))
        with contextlib.suppress(Exception):
            metadata = f"[{path.datastore}] {path.metadata}"
            self.server.wait(content.fileManager.DeleteDatastoreFile_Task(metadata, dc))

    def destroy(self) -> None:
        for poller in self.pollers:
            poller.stop()
        for vm in self.vms:
            self.server.destroy_vm(vm)
        for path in self.server.files(self.namespace):
            with contextlib.suppress(Exception):
                self.delete_behind_orlop(path.id)
        with contextlib.suppress(vmodl.MethodFault, OSError):
            Disconnect(self.si)
        self.presenter.destroy()


def open_vsphere_testbed(stack: contextlib.ExitStack, work: Path) -> VsphereTestbed:
    """For bench/bench_cloud.py: a vcsim and a testbed over it, stopped by `stack`."""
    server = Vcsim().start()
    stack.callback(server.stop)
    work.mkdir(parents=True, exist_ok=True)
    testbed = VsphereTestbed(server, work)
    stack.callback(testbed.destroy)
    return testbed
