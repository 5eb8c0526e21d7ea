"""`orlop status` (the admin API's `status`): per driver, whether its backend answers, what
recovery is still doing, background work and its last result. From memory, no I/O."""

from __future__ import annotations

from typing import Any

from orlop.core.model import State
from orlop.core.service import VolumeService
from orlop.ops.counters import BACKENDS, BACKGROUND

IN_TRANSITION = frozenset({State.CREATING, State.REMOVING, State.ATTACHING, State.DETACHING})


def driver_status(service: VolumeService, name: str, serving: bool) -> dict[str, Any]:
    volumes = list(service.registry.volumes[name].values())
    last = BACKENDS.get(name)
    return {
        "name": name,
        "backend": service.drivers[name].kind,
        "serving": serving,
        # None: no backend call yet; else the outcome of the last one
        "backend_reachable": None if last is None else last["reachable"],
        "backend_error": None if last is None else last["error"],
        "volumes": len(volumes),
        "attached": sum(1 for v in volumes if v.state is State.ATTACHED),
        "faulted": sorted(v.name for v in volumes if v.fault),
    }


def daemon_status(
    service: VolumeService, recovery: str, serving: dict[str, bool], metrics: str | None
) -> dict[str, Any]:
    drivers = [driver_status(service, name, serving[name]) for name in sorted(service.drivers)]
    in_transition = sum(
        1
        for vols in service.registry.volumes.values()
        for v in vols.values()
        if v.state in IN_TRANSITION
    )
    healthy = recovery != "failed" and all(
        d["serving"] and d["backend_reachable"] is not False for d in drivers
    )
    return {
        "healthy": healthy,
        "recovery": {"state": recovery, "volumes_in_transition": in_transition},
        "drivers": drivers,
        "background": {work: dict(last) for work, last in sorted(BACKGROUND.items())},
        "metrics": metrics,
    }
