"""`orlop status [--json]`: is the daemon healthy, per driver; recovery; background work."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

import click

from orlop.cli.client import AdminClient
from orlop.cli.output import echo_json, fail
from orlop.core.model import OrlopError


class _HasClient(Protocol):
    def client(self) -> AdminClient: ...


def _reachable(driver: dict[str, Any]) -> str:
    reachable = driver["backend_reachable"]
    if reachable is None:
        return "unknown"
    if reachable:
        return "yes"
    return f"NO since {driver['backend_since']}: {driver['backend_error']}"


def _recovery(driver: dict[str, Any]) -> str:
    """What recovery is still doing for the driver ("nothing left" when done)."""
    progress = driver["recovery"]
    parts = []
    if progress["repairing"]:
        parts.append(f"repairing {', '.join(progress['repairing'])}")
    waiting = progress["waiting"] - len(progress["repairing"])
    if waiting > 0:
        parts.append(f"{waiting} volume(s) waiting")
    if progress["failed"]:
        parts.append(f"{progress['failed']} repair(s) failed")
    return "; ".join(parts) or "nothing left"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _print(status: dict[str, Any]) -> None:
    recovery = status["recovery"]
    click.echo(f"orlop: {'healthy' if status['healthy'] else 'NOT HEALTHY'}")
    click.echo(
        f"recovery: {recovery['state']} "
        f"({recovery['volumes_in_transition']} volume(s) in transition)"
    )
    click.echo(f"metrics: {status['metrics'] or 'off'}")
    for driver in status["drivers"]:
        serving = "serving" if driver["serving"] else "NOT SERVING"
        faulted = ", ".join(driver["faulted"]) or "none"
        click.echo(
            f"driver {driver['name']} ({driver['backend']}): {serving}; "
            f"backend reachable: {_reachable(driver)}; volumes: {driver['volumes']} "
            f"({driver['attached']} attached); faulted: {faulted}; "
            f"recovery: {_recovery(driver)}"
        )
    for work, last in status["background"].items():
        click.echo(
            f"background {work}: {last['last_result']} (last success {_when(last['last_success'])})"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(ctx: _HasClient, as_json: bool) -> None:
    """Health: per driver whether it serves and its backend answers; recovery; background
    work and its last result. Exits 1 when the daemon is not healthy or not reachable."""
    try:
        data = ctx.client().call("status")
    except OrlopError as error:
        fail(error, as_json)  # with --json, also {"error": …} on stdout
    if as_json:
        echo_json(data)
    else:
        _print(data)
    if not data["healthy"]:
        sys.exit(1)
