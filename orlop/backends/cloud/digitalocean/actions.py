"""The volume actions this provider started (attach, detach), remembered while DigitalOcean
has them in progress, so the layer sees the droplet `attaching` or `detaching` until the
action completes (see the provider's docstring for why `droplet_ids` cannot say)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Literal

from orlop.backends.cloud.api import Attachment, CloudError, Disk, ErrorKind
from orlop.backends.cloud.digitalocean.client import Api

log = logging.getLogger(__name__)

IN_PROGRESS = "in-progress"


class PendingActions:
    """Volume ID → the action this provider started on it, while still in progress (in
    memory: after a restart the volume's `droplet_ids` is all there is)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def started(self) -> list[str]:
        """The volumes with an action remembered (maybe completed by now)."""
        with self._lock:
            return list(self._pending)

    def remember(self, disk_id: str, action: dict[str, Any], droplet: str) -> None:
        if action.get("status") == IN_PROGRESS:
            with self._lock:
                self._pending[disk_id] = {**action, "droplet": droplet}

    def in_progress(self, disk_id: str) -> dict[str, Any] | None:
        """The attach or detach this provider started on the disk, if DigitalOcean still has
        it in progress (asked now); one that ended is forgotten."""
        with self._lock:
            pending = self._pending.get(disk_id)
        if pending is None:
            return None
        try:
            answer = self.api.call(
                "volume action", lambda c: c.volume_actions.get, disk_id, pending["id"]
            )
            status = answer["action"].get("status")
        except CloudError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
            status = "gone"
        if status == IN_PROGRESS:
            return pending
        with self._lock:
            if self._pending.get(disk_id) is pending:
                del self._pending[disk_id]
        if status == "errored":
            log.warning(
                "DigitalOcean action %s (%s) on %s errored", pending["id"], pending["type"], disk_id
            )
        return None


def with_action(disk: Disk, pending: Mapping[str, Any] | None) -> Disk:
    """The disk as read after `pending` (an action still in progress) was seen in progress:
    its droplet `attaching` or `detaching` whatever `droplet_ids` said."""
    if pending is None:
        return disk
    droplet = str(pending["droplet"])
    state: Literal["attaching", "detaching"] = (
        "attaching" if str(pending.get("type", "")).startswith("attach") else "detaching"
    )
    if disk.attached_to(droplet) is None:
        if state == "attaching":
            disk.attachments.append(Attachment(droplet, state))
        return disk
    disk.attachments = [
        Attachment(a.instance, state) if a.instance == droplet else a for a in disk.attachments
    ]
    return disk
