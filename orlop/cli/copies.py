"""`orlop snapshot …` and `orlop backup …`: point-in-time copies of volumes, and copies of
them in a repository off this host. Long operations show a progress bar on a terminal."""

from __future__ import annotations

from typing import Any, Protocol

import click

from orlop.cli.client import AdminClient
from orlop.cli.output import echo_json, fail, print_table, remove_each
from orlop.cli.progress import call_with_progress
from orlop.core.model import OrlopError
from orlop.core.options import format_size


class _HasClient(Protocol):
    def client(self) -> AdminClient: ...


def _size(snapshot: dict[str, Any]) -> str:
    if snapshot.get("size_gib"):
        return f"{snapshot['size_gib']}G"
    return format_size(snapshot["size"]) if snapshot.get("size") else "-"


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
driver_option = click.option("-d", "--driver", help="Driver, when several could be meant.")


class _KindsGroup(click.Group):
    """A group whose help names the backend kinds with a capability, found when the help is
    shown (importing every backend costs a second: not on every command)."""

    def __init__(self, *args: Any, capability: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capability = capability

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from orlop.backends import kinds_with

        self.help = (
            f"{self.help} Backend kinds that have them: {', '.join(kinds_with(self.capability))}."
        )
        super().format_help_text(ctx, formatter)


# snapshots --------------------------------------------------------------------------------
@click.group(cls=_KindsGroup, capability="snapshot")
def snapshot() -> None:
    """Snapshots of volumes, on drivers that take them."""


@snapshot.command("create")
@click.argument("volume")
@click.argument("name", required=False)
@driver_option
@json_option
@click.pass_obj
def snapshot_create(
    ctx: _HasClient, volume: str, name: str | None, driver: str | None, as_json: bool
) -> None:
    """Snapshot VOLUME, as NAME (default: VOLUME-<UTC time>)."""
    try:
        made = call_with_progress(
            ctx.client(), "snapshots/create", volume=volume, snapshot=name, driver=driver
        )
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(made)
    else:
        click.echo(f"{made['name']} {made['id']}")


@snapshot.command("ls")
@click.argument("volume", required=False)
@click.option("-d", "--driver", help="Only this driver's snapshots.")
@json_option
@click.pass_obj
def snapshot_ls(ctx: _HasClient, volume: str | None, driver: str | None, as_json: bool) -> None:
    """List snapshots, all or of VOLUME; SCHEDULE says which schedule made each."""
    try:
        found = ctx.client().call("snapshots/list", volume=volume, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(found)
        return
    rows = [("NAME", "ID", "VOLUME", "DRIVER", "STATE", "SIZE", "SCHEDULE", "CREATED")]
    rows += [
        (
            s["name"],
            s["id"],
            s["volume"],
            s["driver"],
            str(s.get("state") or "-"),
            _size(s),
            s.get("schedule") or "-",
            s.get("created_at") or "-",
        )
        for s in found
    ]
    print_table(rows)


@snapshot.command("rm")
@click.argument("snapshots", nargs=-1, required=True)
@driver_option
@json_option
@click.pass_obj
def snapshot_rm(
    ctx: _HasClient, snapshots: tuple[str, ...], driver: str | None, as_json: bool
) -> None:
    """Delete snapshots, by name or ID."""
    client = ctx.client()
    remove_each(
        snapshots,
        lambda name: client.call("snapshots/remove", snapshot=name, driver=driver),
        "snapshot",
        as_json,
    )


@snapshot.command("restore")
@click.argument("name")
@driver_option
@json_option
@click.pass_obj
def snapshot_restore(ctx: _HasClient, name: str, driver: str | None, as_json: bool) -> None:
    """Put snapshot NAME back into its volume (no container may be using it)."""
    try:
        restored = call_with_progress(
            ctx.client(), "snapshots/restore", snapshot=name, driver=driver
        )
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(restored)
    else:
        click.echo(f"{restored['restored_into']} restored from {name}")


# backups ----------------------------------------------------------------------------------
@click.group(cls=_KindsGroup, capability="backup")
def backup() -> None:
    """Backups of volumes in the driver's restic repository (S3, SFTP, …)."""


@backup.command("create")
@click.argument("volume")
@driver_option
@json_option
@click.pass_obj
def backup_create(ctx: _HasClient, volume: str, driver: str | None, as_json: bool) -> None:
    """Back up VOLUME (from a snapshot: it stays in use meanwhile)."""
    try:
        made = call_with_progress(ctx.client(), "backups/create", volume=volume, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(made)
    else:
        click.echo(f"{made['short_id']} {made['volume']}")


@backup.command("ls")
@click.argument("volume", required=False)
@click.option("-d", "--driver", help="Only this driver's repository.")
@json_option
@click.pass_obj
def backup_ls(ctx: _HasClient, volume: str | None, driver: str | None, as_json: bool) -> None:
    """List backups, all or of VOLUME."""
    try:
        found = ctx.client().call("backups/list", volume=volume, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(found)
        return
    rows = [("ID", "VOLUME", "KIND", "SIZE", "CREATED")]
    rows += [(b["short_id"], b["volume"], b["kind"], _size(b), str(b["created_at"])) for b in found]
    print_table(rows)


@backup.command("restore")
@click.argument("backup_id", metavar="BACKUP")
@click.option("--to", "to", help="Name of the new volume (default: the backup's volume).")
@driver_option
@json_option
@click.pass_obj
def backup_restore(
    ctx: _HasClient, backup_id: str, to: str | None, driver: str | None, as_json: bool
) -> None:
    """Restore BACKUP into a new volume."""
    try:
        volume = call_with_progress(
            ctx.client(), "backups/restore", backup=backup_id, to=to, driver=driver
        )
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(volume)
    else:
        click.echo(volume["name"])
