"""Make a PowerScale volume when other hosts may make the same one at the same moment.

A Swarm service starting on two nodes creates its volume on both at once. The quota is the
claim (see labels.py): the host whose quota create succeeds makes the rest (export or SMB
share), proves the mount and marks the quota ready; a host that gets 409 for the quota
adopts the volume: it waits until the quota is marked ready and takes it as it is. A
rollback undoes only what this host made: its own quota (recognised by this create's
token, even when the answer to the create was lost), and the directory only if this host
made it and no quota claims it. The token is also kept on this host's disk while the
create runs: a daemon that died mid-create undoes it at the next start (undo_interrupted).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orlop.backends.share.naming import share_name
from orlop.backends.share.powerscale.labels import Mark
from orlop.core.failpoints import failpoint
from orlop.core.model import BackendError, Conflict

if TYPE_CHECKING:  # the SDK is imported at the first call (client.py), not at start
    from orlop.backends.share.powerscale.client import OneFs

POLL_SECONDS = 0.2
Record = dict[str, Any]


class VolumeMaker:
    """One Create of volume `name` at `path`; `prove(record)` mounts it once."""

    def __init__(
        self,
        api: OneFs,
        name: str,
        path: str,
        options: dict[str, str],
        size: int,
        prove: Callable[[Record], None],
        timeout: float,
        keep_token: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.api, self.name, self.path, self.options = api, name, path, options
        self.size, self.prove, self.timeout = size, prove, timeout
        self.keep_token = keep_token  # kept on this host's disk until the create ends
        self.protocol = options.get("protocol", "nfs")
        self.keep = options.get("keep_on_remove") == "true"

    def make(self) -> Record:
        deadline = time.monotonic() + self.timeout
        while True:
            made_directory = False
            if not self.api.directory_exists(self.path):
                self.api.make_directory(self.path)
                made_directory = True
            token = uuid.uuid4().hex
            claim = Mark(self.name, "creating", self.keep, token)
            # Before the claim: a crash from here on leaves what undo_interrupted() needs.
            self.keep_token(f"{token} {'made' if made_directory else 'found'}")
            try:
                quota_id = self.api.create_quota(self.path, self.size, claim.text())
                failpoint("powerscale.after_claim")
            except Conflict:
                quota = self._quota_of(token)
                if quota is None:
                    record = self._adopt(deadline)
                    if record is not None:
                        return record
                    continue  # the other host's create failed and was undone: try again
                quota_id = str(quota["id"])  # ours: the answer to our create was lost
            except BaseException:
                self._undo_claim(token, made_directory)
                raise
            return self._finish(quota_id, made_directory)

    # the host that holds the claim ----------------------------------------------------
    def _finish(self, quota_id: str, made_directory: bool) -> Record:
        api = self.api
        undo: list[Callable[[], None]] = [lambda: api.delete_quota(quota_id)]
        if made_directory:
            undo.append(lambda: api.delete_directory(self.path))
        record: Record = {"path": self.path, "protocol": self.protocol, "quota_id": quota_id}
        try:
            record.update(self._reach(undo))
            self.prove(record)
            api.describe_quota(quota_id, Mark(self.name, "ready", self.keep).text())
        except BaseException:
            for step in reversed(undo):  # last made, first undone; the directory last
                with contextlib.suppress(Exception):
                    step()
            raise
        return record

    def _undo_claim(self, token: str, made_directory: bool) -> None:
        """A quota create that failed: undo only this create's quota and directory."""
        with contextlib.suppress(Exception):
            quota = self._quota_of(token)
            if quota is not None:
                self.api.delete_quota(str(quota["id"]))
            if made_directory and self.api.find_quota(self.path) is None:
                self.api.delete_directory(self.path)

    def undo_interrupted(self, kept: str) -> None:
        """Undo a create this host began and never ended (the daemon died): only if the
        quota still carries its token (`kept` is what keep_token was given)."""
        token, _, directory = kept.partition(" ")
        quota = self._quota_of(token)
        if quota is None:
            return  # the claim was never made, or another host's create won
        api, share = self.api, share_name(self.name)
        if api.smb_share_path(share) == self.path:
            api.delete_smb_share(share)
        export = api.find_export(self.path)
        if export is not None:
            api.delete_export(export)
        api.delete_quota(str(quota["id"]))
        if directory == "made":
            api.delete_directory(self.path)

    def _quota_of(self, token: str) -> dict[str, Any] | None:
        quota = self.api.find_quota(self.path)
        mark = Mark.parse(quota["description"]) if quota else None
        return quota if mark is not None and mark.token == token else None

    # a host that found the volume made (or being made) --------------------------------
    def _adopt(self, deadline: float) -> Record | None:
        """The volume another host made or is making, once complete; None if it vanished."""
        while True:
            quota = self.api.find_quota(self.path)
            if quota is None:
                return None
            mark = Mark.parse(quota["description"])
            if mark is None or mark.state != "creating":
                break
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"volume {self.name} is being created by another host: its quota on "
                    f"{self.path} is still marked creating after {self.timeout:g}s; try again "
                    "later (if that host died mid-create, delete the quota on the cluster)"
                )
            time.sleep(POLL_SECONDS)
        record: Record = {"path": self.path, "protocol": self.protocol, "quota_id": quota["id"]}
        undo: list[Callable[[], None]] = []
        try:
            record.update(self._reach(undo))
            self.prove(record)
        except BaseException:
            for step in reversed(undo):
                with contextlib.suppress(Exception):
                    step()
            raise
        keep = mark is not None and mark.keep and self.options.get("keep_on_remove") != "false"
        if keep:
            record["keep"] = True  # kept by its maker: Remove keeps it unless asked not to
        if mark is not None and mark.state == "kept":  # a Create of a kept volume, on purpose
            self.api.describe_quota(str(quota["id"]), Mark(self.name, "ready", keep).text())
        return record

    # the export or share, found or made -----------------------------------------------
    def _reach(self, undo: list[Callable[[], None]]) -> Record:
        """Find or make the NFS export or SMB share; what is made here goes into `undo`."""
        api, path, options = self.api, self.path, self.options
        if self.protocol == "nfs":
            export = api.find_export(path)
            if export is None:
                clients = [c for c in options.get("clients", "").split(",") if c]
                export = api.create_export(
                    path,
                    clients,
                    options.get("readonly") == "true",
                    options.get("root_squash", "true") == "true",
                )
                made = export
                undo.append(lambda: api.delete_export(made))
            return {"export_id": export}
        name = share_name(self.name)
        existing = api.smb_share_path(name)
        if existing is None:
            try:
                api.create_smb_share(name, path)
                undo.append(lambda: api.delete_smb_share(name))
            except Conflict:  # another host made it meanwhile: not ours to undo
                existing = api.smb_share_path(name)
        if existing is not None and existing != path:
            raise Conflict(f"SMB share {name} exists on the cluster for {existing}, not {path}")
        return {"smb_share": name}
