"""`orlop events [--json] [--since DURATION] [--follow]`: what happened, from the daemon's
journal (orlop.core.events), oldest first.

Without `--follow` it prints the events kept (since `--since`) and exits; with it, it goes on
printing each new one until Ctrl-C. Plain text is one line an event; `--json` one object a
line (JSON lines, not one array: it streams).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import click

from orlop.cli.client import AdminClient
from orlop.cli.output import fail
from orlop.core.model import OrlopError


class _HasClient(Protocol):
    def client(self) -> AdminClient: ...


def format_event(event: dict[str, Any]) -> str:
    """`TIME KIND DRIVER/VOLUME message [op=ID]`: one grep for a volume or an ID finds it."""
    where = "/".join(part for part in (event.get("driver"), event.get("volume")) if part) or "-"
    line = f"{event.get('time', '')} {event.get('kind', '')} {where} {event.get('message', '')}"
    return f"{line} op={event['op']}" if event.get("op") else line


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.option(
    "--since",
    metavar="DURATION|TIME",
    help="Only events since then: a duration back from now (90s, 10m, 2h, 7d) or an RFC 3339 "
    "time (2026-12-07T12:00:00Z). Default: every event the journal keeps.",
)
@click.option("-f", "--follow", is_flag=True, help="Go on printing new events until Ctrl-C.")
@click.pass_obj
def events(ctx: _HasClient, as_json: bool, since: str | None, follow: bool) -> None:
    """What happened to volumes: created, mounted (on which host), lost, repaired, snapshots,
    backups, trash, recovery."""
    body: dict[str, Any] = {"follow": follow}
    if since:
        body["since"] = since
    client = ctx.client()
    if follow:
        client.timeout = 10.0  # to reach the daemon; the answer then has no timeout
    try:
        for event in client.stream("events", **body):
            click.echo(json.dumps(event, sort_keys=True) if as_json else format_event(event))
    except KeyboardInterrupt:
        return
    except OrlopError as error:
        fail(error, as_json)
