"""Fencing: who holds a cloud disk, and under which generation, written on the disk itself.

A disk carries one logical label, `fence` = "<generation> <instance>": the instance that
last took it over and a number that grows with every take-over (an attach by another
instance than the label's) and every preempt. One label, so one write changes both. This
host keeps the generation it attached under in its attachment file (`state.VolumeFiles`).

    hold     after an attach succeeded: become the owner (generation + 1) unless this
             instance owns it already; the generation goes into the attachment file
    bump     before a preempt detaches the disk from its holder: owner = this instance,
             generation + 1 — the old holder's next look sees it is stale
    check    before this host attaches again what it believes it holds (its attachment file
             names the disk, or recovery re-attaches): refuse if the label shows another
             owner, or a generation above the one kept here
    stale    the same test for a disk that is mounted here: a remount, recovery's look at
             its mounts, a snapshot's freeze and discovery ask it (the leftover mount goes)

Generation 0 (no label: a disk from before fencing, or one whose labels were dropped) is
unfenced: nothing is refused, and the first attach writes generation 1. An attachment file
without a generation (written before fencing) is checked by owner only. docs/fencing.md
says what this protects against and what it does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from orlop.backends.base import VolumeRef
from orlop.backends.cloud.api import Disk, Identity
from orlop.backends.cloud.calls import CloudCalls
from orlop.backends.cloud.state import VolumeFiles
from orlop.core.model import Conflict

log = logging.getLogger(__name__)

LABEL_FENCE = "fence"  # "<generation> <instance>"


@dataclass(frozen=True, slots=True)
class Fence:
    generation: int = 0  # 0: unfenced
    owner: str | None = None

    @classmethod
    def of(cls, disk: Disk) -> Fence:
        return cls.parse(disk.labels.get(LABEL_FENCE))

    @classmethod
    def parse(cls, text: str | None) -> Fence:
        """The label's value; an unreadable one (not Orlop's) counts as unfenced."""
        number, _, owner = (text or "").strip().partition(" ")
        if not number.isdigit() or not owner:
            if text:
                log.warning("ignoring an unreadable fence label %r", text)
            return cls()
        return cls(int(number), owner)

    def label(self) -> str:
        return f"{self.generation} {self.owner}"

    def next_for(self, instance: str) -> Fence:
        return Fence(self.generation + 1, instance)


@dataclass(frozen=True, slots=True)
class Stale:
    """Why this host's hold on a disk is stale: the fence shown and the generation kept here."""

    fence: Fence
    local: int | None

    def holder(self, what: str) -> str:
        return f"{what} {self.fence.owner} (fence generation {self.fence.generation})"

    def explain(
        self, volume: str, disk_id: str, what: str, attached: list[str] | None = None
    ) -> str:
        """Why the hold is stale; `attached`: the instances the cloud shows the disk on now."""
        now = f" and is attached to {what} {', '.join(attached)}" if attached else ""
        here = (
            "this host keeps no generation for it"
            if self.local is None
            else f"this host attached it under generation {self.local}"
        )
        return (
            f"volume {volume} ({disk_id}) was taken over by {self.holder(what)}{now}; {here}: not "
            "attaching, remounting or flushing it here (mount it here again once it is "
            "unmounted there, or with preempt=true)"
        )


def stale_against(fence: Fence, me: str, local: int | None) -> Stale | None:
    """None if this host, which kept `local` (None: unknown), still holds the disk."""
    if fence.generation == 0:
        return None
    if fence.owner != me or (local is not None and fence.generation > local):
        return Stale(fence, local)
    return None


class Fencing:
    """The fence steps of one cloud driver, over its calls and this host's attachment files."""

    def __init__(self, calls: CloudCalls, files: VolumeFiles) -> None:
        self.calls = calls
        self.files = files
        # Volume → the generation this host kept for a disk it found taken over and whose
        # attachment file it dropped (its leftover mount gone too), so the refusal that
        # follows still says which generation this host had.
        self.superseded: dict[str, int | None] = {}

    def forget(self, volume: str) -> None:
        """Drop the attachment file of a disk this host lost, remembering its generation."""
        known = self.files.attachment(volume) or {}
        generation = known.get("generation")
        self.superseded[volume] = generation if isinstance(generation, int) else None
        self.files.drop_attachment(volume)

    def local_generation(self, volume: str, disk_id: str) -> tuple[bool, int | None]:
        """(whether this host's attachment file names `disk_id`, the generation it keeps)."""
        known: dict[str, Any] | None = self.files.attachment(volume)
        if not known or known.get("disk_id") != disk_id:
            return False, None
        generation = known.get("generation")
        return True, generation if isinstance(generation, int) else None

    def stale(self, volume: str, disk: Disk, me: Identity) -> Stale | None:
        """Whether the disk, which this host believes it holds, was taken over."""
        _, local = self.local_generation(volume, disk.id)
        return stale_against(Fence.of(disk), me.instance, local)

    def check(self, volume: VolumeRef, disk: Disk, me: Identity) -> None:
        """Before an attach: refuse if this host believes it holds the disk (its file names
        it, or recovery re-attaches) and the fence says it was taken over since."""
        recorded, local = self.local_generation(volume.name, disk.id)
        if not recorded:
            local = self.superseded.get(volume.name)
        if not recorded and (not volume.repair or disk.others(me.instance)):
            self.superseded.pop(volume.name, None)
            return  # a new attach (a take-over, which `hold` records), or the attachment
            # check of a repair names the holder
        stale = stale_against(Fence.of(disk), me.instance, local)
        if stale is None:
            self.superseded.pop(volume.name, None)
            return
        self.files.drop_attachment(volume.name)  # this host no longer holds it
        attached = [a.instance for a in disk.others(me.instance)]
        message = stale.explain(volume.name, disk.id, me.what, attached)
        log.error("%s", message)
        raise Conflict(message)

    def bump(self, disk: Disk, me: Identity) -> Fence:
        """Before a preempt detaches the disk elsewhere: this instance owns the next generation."""
        fence = Fence.of(disk).next_for(me.instance)
        self.calls.set_labels("fence (preempt)", disk, {LABEL_FENCE: fence.label()})
        disk.labels[LABEL_FENCE] = fence.label()
        log.warning("%s: fence generation %d, owner %s", disk.id, fence.generation, me.instance)
        return fence

    def hold(self, disk: Disk, me: Identity) -> int:
        """After an attach: the generation this host holds the disk under (written if the
        label shows another owner, or none)."""
        fence = Fence.of(disk)
        if fence.owner == me.instance and fence.generation > 0:
            return fence.generation
        taken = fence.next_for(me.instance)
        self.calls.set_labels("fence", disk, {LABEL_FENCE: taken.label()})
        disk.labels[LABEL_FENCE] = taken.label()
        log.info("%s: fence generation %d, owner %s", disk.id, taken.generation, me.instance)
        return taken.generation
