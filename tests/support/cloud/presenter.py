"""The device presenter: real loop devices where a guest would see an attached cloud disk.

There is no cloud here, but everything on the host stays real. When a test server (a fake,
moto, vcsim, Cinder + our Nova) reports a disk attached to the instance that plays "this
host", the presenter shows a real loop device at the paths the guest would see it under
(`/dev/disk/by-id/google-…` inside a test's own by-id directory) and removes the links on
detach. Each disk has one sparse image for the whole test, kept across attachments and
hosts, so data written on one attachment is there on the next, as on a cloud disk.

Two ways to drive it:
* in-process fakes call `show` / `hide` directly when they attach and detach;
* `PollingPresenter` asks a callback which disks are attached now (for servers in another
  process) and keeps the links in step with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from orlop.host.run import run


class DevicePresenter:
    """One sparse image and loop device per disk key, for the whole test."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-cloud-images-"))
        self.devices: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.shown: dict[str, list[Path]] = {}  # disk key → links now present
        self.appeared: Counter[str] = Counter()  # how often each disk was shown
        self.lock = threading.Lock()
        # Where a new disk's data lives: None, a sparse image of its own under `root`; a
        # chaos run sets it to back one disk by a FaultyDisk (a file that fails on demand).
        self.backing: Callable[[str, int], Path | None] | None = None

    def device_for(self, key: str, size: int) -> str:
        """The loop device of disk `key`, made (or grown to `size` bytes) as needed."""
        with self.lock:
            image = self.root / f"{_safe(key)}.img"
            if key not in self.devices:
                backing = self.backing(key, size) if self.backing is not None else None
                if backing is None:
                    with open(image, "wb") as file:
                        file.truncate(size)
                device = run(["losetup", "--find", "--show", str(backing or image)]).stdout
                device = device.strip()
                self.devices[key], self.sizes[key] = device, size
            elif size > self.sizes[key]:  # the cloud grew the disk: so does the device
                with open(image, "r+b") as file:
                    file.truncate(size)
                run(["losetup", "--set-capacity", self.devices[key]])
                self.sizes[key] = size
            return self.devices[key]

    def show(self, key: str, size: int, links: Iterable[str | Path]) -> str:
        """Present disk `key` at each of `links` (symlinks to its loop device)."""
        device = self.device_for(key, size)
        with self.lock:
            fresh = key not in self.shown
            paths = self.shown.setdefault(key, [])
            for link in map(Path, links):
                if link in paths:
                    continue
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(device)
                paths.append(link)
            if fresh:
                self.appeared[key] += 1
        return device

    def hide(self, key: str, links: Iterable[str | Path] | None = None) -> None:
        """The disk was detached: its links go, its data stays. With `links`, only those go:
        a watcher of one host must not take away what another host shows by now (a disk
        preempted from A to B can appear on B before A's watcher sees it leave A)."""
        with self.lock:
            current = self.shown.pop(key, [])
            drop = set(current) if links is None else {Path(link) for link in links}
            kept = [link for link in current if link not in drop]
            if kept:
                self.shown[key] = kept
            for link in current:
                if link in drop:
                    link.unlink(missing_ok=True)

    def forget(self, key: str) -> None:
        """The disk was deleted: links, loop device and image go."""
        self.hide(key)
        with self.lock:
            device = self.devices.pop(key, None)
            self.sizes.pop(key, None)
        if device is not None:
            with contextlib.suppress(Exception):
                run(["losetup", "-d", device])
        (self.root / f"{_safe(key)}.img").unlink(missing_ok=True)

    def destroy(self) -> None:
        for key in list(self.shown):
            self.hide(key)
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                run(["losetup", "-d", device])
        self.devices.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class Presented:
    """A disk attached to the watched instance: its size and where the guest shows it."""

    key: str
    size: int
    links: tuple[str, ...]


class PollingPresenter(threading.Thread):
    """Keeps a presenter in step with `attached()`, the disks a server says are attached to
    one instance now. With `present=False` nothing ever appears: a broken host."""

    def __init__(
        self,
        presenter: DevicePresenter,
        attached: Callable[[], Iterable[Presented]],
        interval: float = 0.05,
        present: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="device-presenter")
        self.presenter = presenter
        self.attached = attached
        self.interval = interval
        self.present = present
        self.mine: dict[str, tuple[str, ...]] = {}  # disk key → the links this watcher made
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            with contextlib.suppress(Exception):
                self.sync()

    def sync(self) -> None:
        now = {disk.key: disk for disk in self.attached()}
        for key in list(self.mine):
            if key not in now:
                self.presenter.hide(key, self.mine.pop(key))
        if not self.present:
            return
        for key, disk in now.items():
            if key not in self.mine:
                self.presenter.show(key, disk.size, disk.links)
                self.mine[key] = disk.links
            else:  # the cloud may have grown it: so does the device
                self.presenter.device_for(key, disk.size)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for key, links in list(self.mine.items()):
            self.presenter.hide(key, links)
        self.mine.clear()


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key) or "disk"


def by_id(by_id_dir: str | Path, name: str) -> str:
    return os.path.join(str(by_id_dir), name)
