"""`orlop trash ls | restore NAME | purge [NAME]`: volumes a driver with `trash:` kept at Remove."""

from __future__ import annotations

from typing import Protocol

import click

from orlop.cli.client import AdminClient
from orlop.cli.output import echo_json, fail, print_table
from orlop.core.model import OrlopError


class _HasClient(Protocol):
    def client(self) -> AdminClient: ...


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
driver_option = click.option("-d", "--driver", help="Driver, when several could be meant.")


@click.group()
def trash() -> None:
    """Removed volumes kept for a while (the driver setting trash, e.g. 24h)."""


@trash.command("ls")
@json_option
@click.pass_obj
def trash_ls(ctx: _HasClient, as_json: bool) -> None:
    """Volumes in the trash, with when their storage is freed."""
    try:
        entries = ctx.client().call("trash/list")
    except OrlopError as error:
        fail(error, as_json)
    if as_json:
        echo_json(entries)
        return
    rows = [["NAME", "DRIVER", "REMOVED", "FREED AT"]]
    rows += [[e["name"], e["driver"], e["removed_at"], e["expires_at"]] for e in entries]
    print_table(rows)


@trash.command("restore")
@click.argument("name")
@driver_option
@json_option
@click.pass_obj
def trash_restore(ctx: _HasClient, name: str, driver: str | None, as_json: bool) -> None:
    """Bring NAME back: same name, data and options."""
    try:
        restored = ctx.client().call("trash/restore", name=name, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
    if as_json:
        echo_json(restored)
    else:
        click.echo(restored["name"])


@trash.command("purge")
@click.argument("name", required=False)
@driver_option
@json_option
@click.pass_obj
def trash_purge(ctx: _HasClient, name: str | None, driver: str | None, as_json: bool) -> None:
    """Free the storage of NAME now (without NAME: of every volume in the trash)."""
    try:
        purged = ctx.client().call("trash/purge", name=name, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
    if as_json:
        echo_json(purged)
    else:
        for gone in purged:
            click.echo(gone)
