"""DigitalOcean Block Storage volumes: the `digitalocean` CloudProvider, through pydo.

A volume is named `orlop-<slug>-<hash>` (`naming.disk_name`, 64 characters at most: DO's rule
is lower case, digits and hyphens, starting with a letter, unique per region); Orlop's labels
are tags (`labels.py`), so another droplet lists and adopts the volume by its Docker name. DO
refuses to attach a volume that is attached to another droplet (422): the layer needs no race
guard. Attach, detach and resize are volume *actions* that stay in-progress for a while, and
`droplet_ids` does not say whether an attach or detach is done (DigitalOcean documents no
moment at which it changes; its own tools wait on the action). So that the layer sees an
attach or detach it started as `attaching` / `detaching` until DigitalOcean completes it,
the provider remembers the actions it started (in memory, `actions.py`) and asks for their
status while they are in progress, always *before* it reads the volume: a reading is one
action status and the volume as it was after that status, so an action that completes
between the two requests shows as still in progress once more, never as a volume that lost
its droplet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from orlop.backends.base import Check
from orlop.backends.cloud import naming
from orlop.backends.cloud.api import (
    LABEL_NAMESPACE,
    LABEL_TOKEN,
    Attachment,
    CloudError,
    CloudSettings,
    Disk,
    DiskSpec,
    ErrorKind,
    Identity,
    Snapshot,
)
from orlop.backends.cloud.digitalocean import labels as do_labels
from orlop.backends.cloud.digitalocean.actions import PendingActions, with_action
from orlop.backends.cloud.digitalocean.client import Api, DigitalOceanSettings, metadata
from orlop.backends.cloud.digitalocean.labels import NAME_MAX
from orlop.backends.cloud.digitalocean.snapshots import DoSnapshots, is_snapshot_id
from orlop.backends.cloud.waiting import wait_until
from orlop.core.model import BackendError, InvalidOption
from orlop.core.options import GIB, Option, OptionSet, bounded_size

log = logging.getLogger(__name__)

MIN_GIB, MAX_GIB, DEFAULT_GIB = 1, 16384, 10


def canonical_size(value: str) -> str:
    """A size rounded up to whole GiB, as bytes, within DigitalOcean's 1 to 16,384 GiB."""
    size = bounded_size(value, MIN_GIB * GIB, MAX_GIB * GIB, "a DigitalOcean volume")
    return str(-(-size // GIB) * GIB)


def canonical_snapshot(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("empty: use a snapshot ID or the name of an Orlop snapshot")
    return value


class DigitalOceanProvider:
    kind: ClassVar[str] = "digitalocean"
    disk_word: ClassVar[str] = "DigitalOcean volume"
    settings_model: ClassVar[type[CloudSettings]] = DigitalOceanSettings
    refuses_second_attach: ClassVar[bool] = True  # 422: attached to another droplet
    options: ClassVar[OptionSet] = OptionSet(
        [
            Option("size", canonical_size, "size, 1G to 16384G, rounded up to GiB (default 10G)"),
            Option("from_snapshot", canonical_snapshot, "snapshot ID or Orlop snapshot name"),
            Option(
                "tags",
                do_labels.canonical_tags,
                "DigitalOcean tags for the volume, comma-separated",
            ),
        ]
    )

    def __init__(self, settings: DigitalOceanSettings, state_dir: str) -> None:
        self.settings = settings
        self.api = Api(settings)
        self.actions = PendingActions(self.api)  # the attaches and detaches we started
        self.snapshots = DoSnapshots(self.api)

    # identity ------------------------------------------------------------------------------
    def identity(self) -> Identity:
        """This droplet, which must exist in the account (checked once: a wrong droplet_id
        fails here, before any volume is made), and its region."""
        droplet_id = self.settings.droplet_id
        if droplet_id is None:
            text = metadata(self.settings, "id")
            if not text.isdigit():
                raise CloudError(
                    f"the droplet metadata service answered {text[:40]!r} for the droplet ID",
                    ErrorKind.FAILED,
                )
            droplet_id = int(text)
        region = self.settings.region
        if region is None and self.settings.droplet_id is None:
            region = metadata(self.settings, "region")
        try:
            droplet = self.api.call("droplet", lambda c: c.droplets.get, droplet_id)["droplet"]
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                raise CloudError(
                    f"droplet {droplet_id} does not exist in this DigitalOcean account: check "
                    "droplet_id (or unset it to ask the metadata service)",
                    ErrorKind.NOT_FOUND,
                ) from None
            raise
        home = str((droplet.get("region") or {}).get("slug") or "")
        if region and home and region != home:
            raise CloudError(
                f"droplet {droplet_id} is in region {home}, not {region}: volumes attach only "
                "within their droplet's region; fix the region setting",
                ErrorKind.INVALID,
            )
        return Identity(str(droplet_id), region or home, region or home, "droplet")

    # disks ---------------------------------------------------------------------------------
    def validate(self, options: dict[str, str]) -> None:
        for key in ("size", "tags"):
            if key in options:
                self.options.options[key].canonical(options[key])

    def create_disk(self, spec: DiskSpec, identity: Identity) -> Disk:
        region = identity.region or ""
        snapshot_gib = math.ceil((spec.snapshot.size or 0) / GIB) if spec.snapshot else 0
        gib = int(spec.options["size"]) // GIB if "size" in spec.options else None
        if gib is None:
            gib = max(snapshot_gib, 1) if spec.snapshot else DEFAULT_GIB
        elif gib < snapshot_gib:
            raise InvalidOption(
                f"size {gib}G is smaller than snapshot {spec.snapshot and spec.snapshot.id} "
                f"({snapshot_gib}G): ask for at least that much"
            )
        if spec.snapshot and spec.snapshot.facts.get("region") not in (None, region):
            raise InvalidOption(
                f"snapshot {spec.snapshot.id} is in region {spec.snapshot.facts['region']} and "
                f"this droplet in {region}: a volume is made from a snapshot in its own region"
            )
        name = naming.disk_name(spec.namespace, spec.volume, NAME_MAX)
        body: dict[str, Any] = {
            "name": name,
            "size_gigabytes": gib,
            "region": region,
            "description": f"Orlop volume {spec.volume} (namespace {spec.namespace})"[:1024],
            "tags": [*do_labels.label_tags(spec.labels), *_user_tags(spec.options)],
        }
        if spec.snapshot:
            body["snapshot_id"] = spec.snapshot.id
        try:
            made = self.api.call("create volume", lambda c: c.volumes.create, body)
        except CloudError as error:
            if error.code not in ("conflict", "already_exists"):  # DO answers either
                raise
            # The name is ours (namespace + volume): a create repeated after a lost answer.
            same = self._by_name(name, region)
            if same is not None and same.labels.get(LABEL_TOKEN) == spec.token:
                return same
            raise CloudError(
                f"a DigitalOcean volume named {name} already exists in {region}: {error}",
                ErrorKind.INVALID,
                error.code,
            ) from None
        return self._disk(made["volume"])

    def _by_name(self, name: str, region: str) -> Disk | None:
        found = self.api.call("find volume", lambda c: c.volumes.list, name=name, region=region)
        volumes = found.get("volumes") or []
        return self._disk(volumes[0]) if volumes else None

    def get_disk(self, disk_id: str) -> Disk | None:
        in_progress = self.actions.in_progress(disk_id)  # first: see the module's docstring
        try:
            found = self.api.call("get volume", lambda c: c.volumes.get, disk_id)
        except CloudError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        return with_action(self._disk(found["volume"]), in_progress)

    def find_disks(self, namespace: str, volume: str | None = None) -> list[Disk]:
        in_progress = {d: self.actions.in_progress(d) for d in self.actions.started()}
        disks = []
        for found in self.api.list_all("list volumes", lambda c: c.volumes.list, "volumes"):
            disk = self._disk(found)
            if disk.labels.get(LABEL_NAMESPACE) != namespace:
                continue
            if volume is not None and disk.volume != volume:
                continue
            disks.append(with_action(disk, in_progress.get(disk.id)))
        return disks

    def delete_disk(self, disk: Disk) -> None:
        try:
            self.api.call("delete volume", lambda c: c.volumes.delete, disk.id)
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        # Tags outlive what they tag; the create token's is this disk's alone: drop it.
        token = disk.labels.get(LABEL_TOKEN)
        for tag in do_labels.label_tags({LABEL_TOKEN: token}) if token else []:
            try:
                self.api.call("delete tag", lambda c: c.tags.delete, tag)
            except CloudError as error:
                log.info("left tag %s behind: %s", tag, error)

    def set_labels(self, disk: Disk, labels: Mapping[str, str | None]) -> None:
        found = self.api.call("get volume", lambda c: c.volumes.get, disk.id)["volume"]
        current = list(found.get("tags") or [])
        drop: list[str] = []
        put: list[str] = []
        for key, value in labels.items():
            old = do_labels.tags_of_key(current, key)
            new = do_labels.label_tags({key: value}) if value is not None else []
            drop.extend(tag for tag in old if tag not in new)
            put.extend(tag for tag in new if tag not in old)
        resource = {"resources": [{"resource_id": disk.id, "resource_type": "volume"}]}
        for tag in put:
            self.api.call("create tag", lambda c: c.tags.create, {"name": tag})
            self.api.call("tag volume", lambda c: c.tags.assign_resources, tag, resource)
        for tag in drop:
            try:
                self.api.call("untag volume", lambda c: c.tags.unassign_resources, tag, resource)
            except CloudError as error:
                if error.kind is not ErrorKind.NOT_FOUND:
                    raise

    # attachments -----------------------------------------------------------------------------
    def device_name(self, disk: Disk, identity: Identity) -> str | None:
        return None  # DigitalOcean names the device after the volume

    def attach_disk(self, disk: Disk, identity: Identity, device_name: str | None) -> None:
        body = {"type": "attach", "droplet_id": int(identity.instance), "region": disk.zone}
        try:
            action = self._act("attach volume", disk.id, body)
        except CloudError as error:
            if error.kind is not ErrorKind.INVALID:
                raise
            holders = self._holders_once_known(disk.id)
            if identity.instance in holders:
                return  # attached here already (an attach this host started before a restart)
            raise CloudError(
                f"DigitalOcean refused to attach {disk.id} to droplet {identity.instance}: {error}",
                ErrorKind.IN_USE,  # DO's 422 to an attach: attached or busy elsewhere
                error.code,
                holders[0] if holders else None,
            ) from None
        self.actions.remember(disk.id, action, identity.instance)

    def _holders_once_known(self, disk_id: str) -> list[str]:
        """The droplets holding a volume DO refused to attach. Refused with no droplet in
        `droplet_ids` means an attach under way (another droplet's, or this one's from before
        a restart): a droplet enters `droplet_ids` when its attach completes, so wait for that,
        within attach_timeout; [] if none showed."""

        def holders() -> list[str] | None:
            now = self.get_disk(disk_id)
            return _droplets(now) or None if now is not None else []

        try:
            return wait_until(
                holders,
                self.settings.attach_timeout,
                f"the holder of {disk_id}",
                self.settings.poll_max,
            )
        except BackendError:
            return []

    def detach_disk(self, disk: Disk, instance: str, force: bool = False) -> None:
        # DigitalOcean has no forced detach: a detach is a detach.
        body = {"type": "detach", "droplet_id": int(instance), "region": disk.zone}
        try:
            action = self._act("detach volume", disk.id, body)
        except CloudError as error:
            now = self.get_disk(disk.id) if error.kind is ErrorKind.INVALID else None
            if now is not None and instance not in _droplets(now):
                return  # not attached there (any more)
            raise
        self.actions.remember(disk.id, action, instance)

    def _act(self, what: str, disk_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.api.call(what, lambda c: c.volume_actions.post_by_id, disk_id, body)
        action: dict[str, Any] = answer["action"]
        if action.get("status") == "errored":
            raise CloudError(
                f"{what}: DigitalOcean action {action.get('id')} errored", ErrorKind.FAILED
            )
        return action

    def device_paths(self, disk: Disk, attachment: Attachment) -> list[str]:
        return [f"{self.settings.by_id_dir.rstrip('/')}/scsi-0DO_Volume_{disk.name}"]

    def resize_disk(self, disk: Disk, size: int) -> None:
        gib = math.ceil(size / GIB)
        if gib > MAX_GIB:
            raise InvalidOption(
                f"{gib}G is more than a DigitalOcean volume can hold (16384G, 16 TiB)"
            )
        body = {"type": "resize", "size_gigabytes": gib, "region": disk.zone}
        self._act("resize volume", disk.id, body)

    # facts ---------------------------------------------------------------------------------
    def options_of(self, disk: Disk) -> dict[str, str]:
        options = {"size": str(disk.size)}
        if disk.facts.get("tags"):
            options["tags"] = str(disk.facts["tags"])
        return options

    def describe(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "volume_id": record.get("disk_id"),
            "volume_name": record.get("disk_name"),
            "size_gib": (record["size"] // GIB) if record.get("size") else None,
            "region": record.get("zone"),
            "tags": record.get("tags") or None,
        }

    @classmethod
    def host_checks(cls) -> list[Check]:
        try:
            import pydo

            return [Check("python package pydo", True, str(pydo.__version__))]
        except ImportError:
            return [Check("python package pydo", False, "not installed", "pip install pydo")]

    def _disk(self, volume: Mapping[str, Any]) -> Disk:
        all_tags = list(volume.get("tags") or [])
        droplets = [str(d) for d in volume.get("droplet_ids") or []]
        region = (volume.get("region") or {}).get("slug")
        return Disk(
            id=str(volume["id"]),
            name=str(volume["name"]),
            size=int(volume.get("size_gigabytes") or 0) * GIB,
            state="ready",
            zone=region,
            labels=do_labels.labels_of(all_tags),
            attachments=[Attachment(d) for d in droplets],
            facts={
                "region": region,
                "tags": ",".join(do_labels.user_tags(all_tags)),
                "filesystem_type": volume.get("filesystem_type") or None,
            },
            created_at=volume.get("created_at"),
        )

    # snapshots: the calls are in snapshots.py --------------------------------------------
    def create_snapshot(self, disk: Disk, name: str, labels: Mapping[str, str]) -> Snapshot:
        return self.snapshots.create_snapshot(disk, name, labels)

    def find_snapshots(
        self, namespace: str, volume: str | None = None, name: str | None = None
    ) -> list[Snapshot]:
        return self.snapshots.find_snapshots(namespace, volume, name)

    def get_snapshot(self, snapshot_id: str) -> Snapshot | None:
        return self.snapshots.get_snapshot(snapshot_id)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.delete_snapshot(snapshot)

    def is_snapshot_id(self, text: str) -> bool:
        return is_snapshot_id(text)  # no state: also on a provider not yet set up


def _user_tags(options: Mapping[str, str]) -> list[str]:
    return [t for t in options.get("tags", "").split(",") if t]


def _droplets(disk: Disk) -> list[str]:
    return [a.instance for a in disk.attachments]
