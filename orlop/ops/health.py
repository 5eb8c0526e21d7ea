"""`orlop status` (the admin API's `status`) and `/healthz`: per driver, whether its backend
answers (`reachability`), what recovery is still doing, background work and its last
result. From memory, no I/O: a status never waits on a backend."""

from __future__ import annotations

from typing import Any

from orlop.core.model import State
from orlop.core.service import VolumeService
from orlop.ops import reachability
from orlop.ops.counters import BACKGROUND

IN_TRANSITION = frozenset({State.CREATING, State.REMOVING, State.ATTACHING, State.DETACHING})


def driver_status(service: VolumeService, name: str, serving: bool) -> dict[str, Any]:
    volumes = list(service.registry.volumes[name].values())
    reach = reachability.state(name) or reachability.Reach()
    return {
        "name": name,
        "backend": service.drivers[name].kind,
        "serving": serving,
        # None: nothing reached the backend yet; False: down since `backend_since`
        "backend_reachable": reach.up,
        "backend_error": reach.error or None,
        "backend_since": reachability.as_time(reach.since),
        "backend_last_answer": reachability.as_time(reach.last_answer),
        "backend_fault_source": (reach.source or None) if reach.up is False else None,
        "recovery": service.recovery.progress(name),
        "volumes": len(volumes),
        "attached": sum(1 for v in volumes if v.state is State.ATTACHED),
        "faulted": sorted(v.name for v in volumes if v.fault),
    }


def daemon_status(
    service: VolumeService, recovery: str, serving: dict[str, bool], metrics: str | None
) -> dict[str, Any]:
    reachability.sweep()  # a call hanging now counts, not only at the next daemon tick
    drivers = [driver_status(service, name, serving[name]) for name in sorted(service.drivers)]
    in_transition = sum(
        1
        for vols in service.registry.volumes.values()
        for v in vols.values()
        if v.state in IN_TRANSITION
    )
    down = [d["name"] for d in drivers if d["backend_reachable"] is False]
    healthy = recovery != "failed" and not down and all(d["serving"] for d in drivers)
    return {
        "healthy": healthy,
        "down": down,
        "recovery": {"state": recovery, "volumes_in_transition": in_transition},
        "drivers": drivers,
        "background": {work: dict(last) for work, last in sorted(BACKGROUND.items())},
        "metrics": metrics,
    }


def healthz(
    service: VolumeService, recovery: str, serving: dict[str, bool]
) -> tuple[bool, dict[str, Any]]:
    """For /healthz: healthy while every driver socket serves and no driver's backend is
    down (503 otherwise, naming those in `down`); recovery's state."""
    reachability.sweep()
    down = reachability.down(sorted(service.drivers))
    healthy = all(serving.values()) and not down
    return healthy, {
        "status": "ok" if healthy else "down",
        "recovery": recovery,
        "drivers": serving,
        "down": down,
    }
