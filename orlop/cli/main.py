"""`orlop`: serve volumes to Docker, and manage them."""

from __future__ import annotations

import sys
from typing import Any

import click

import orlop
from orlop.cli.client import AdminClient
from orlop.cli.copies import backup, snapshot
from orlop.cli.events import events
from orlop.cli.output import echo_json, fail, print_table, remove_each
from orlop.cli.progress import call_with_progress
from orlop.cli.status import status
from orlop.cli.trash import trash
from orlop.config import Config, load_config
from orlop.core.model import OrlopError
from orlop.core.options import format_size


class Context:
    def __init__(self, config_path: str | None, admin_socket: str | None) -> None:
        self.config_path = config_path
        self._admin_socket = admin_socket

    def config(self) -> Config:
        return load_config(self.config_path)

    def client(self) -> AdminClient:
        return AdminClient(self._admin_socket or self.config().admin_socket)


pass_context = click.make_pass_decorator(Context)


def _use_config(ctx: click.Context, _: click.Parameter, path: str | None) -> None:
    if path is not None:
        ctx.ensure_object(Context).config_path = path


# `orlop serve --config FILE` as well as `orlop --config FILE serve`: users put it either side.
config_option = click.option(
    "--config",
    "config_path",
    help="Config file (YAML); same as `orlop --config FILE …`.",
    callback=_use_config,
    expose_value=False,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ORLOP_CONFIG", help="Config file (YAML).")
@click.option("--admin-socket", envvar="ORLOP_ADMIN_SOCKET", help="The daemon's admin socket.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, admin_socket: str | None) -> None:
    """Orlop: persistent volumes for containers, on any storage."""
    ctx.obj = Context(config_path, admin_socket)


@cli.command()
@config_option
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="ORLOP_LOG_FORMAT",
    help="text (journald's format under systemd), or one JSON object a line.",
)
@pass_context
def serve(ctx: Context, log_format: str) -> None:
    """Run the daemon: one Docker plugin socket per configured driver."""
    from orlop.daemon import serve as run_daemon

    try:
        config = ctx.config()
        run_daemon(config, log_format="json" if log_format == "json" else "text")
    except (OrlopError, OSError) as error:
        click.echo(f"orlop: {error}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def version(ctx: Context, as_json: bool) -> None:
    """Show the client's and the daemon's version."""
    data: dict[str, Any] = {"client": orlop.__version__}
    try:
        data["daemon"] = ctx.client().call("version")["version"]
    except OrlopError as error:
        data["daemon"] = None
        data["daemon_error"] = str(error)
    if as_json:
        echo_json(data)
        return
    click.echo(f"client: {data['client']}")
    click.echo(f"daemon: {data['daemon'] or data['daemon_error']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
@pass_context
def doctor(ctx: Context, as_json: bool) -> None:
    """Check this host: root, dockerd, plugin directory, what each backend needs."""
    from orlop.cli.doctor import run_checks

    try:
        checks = run_checks(ctx.config())
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json([{"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks])
    else:
        for check in checks:
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {check.name}: {check.detail}")
            if not check.ok and check.fix:
                click.echo(f"     fix: {check.fix}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


# volumes ----------------------------------------------------------------------------------
@cli.group()
def volume() -> None:
    """Manage volumes."""


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--opt")
        options[key] = value
    return options


def _usage_column(volume: dict[str, Any]) -> str:
    usage = volume.get("usage")
    if not usage:
        return "-"
    if usage.get("size"):
        return f"{format_size(usage['used'])}/{format_size(usage['size'])}"
    return format_size(usage["used"])


def _free_column(volume: dict[str, Any]) -> str:
    usage = volume.get("usage") or {}
    return format_size(usage["free"]) if usage.get("free") is not None else "-"


@volume.command("ls")
@click.option("-d", "--driver", help="Only this driver's volumes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--no-usage", is_flag=True, help="Do not measure usage (faster).")
@pass_context
def volume_ls(ctx: Context, driver: str | None, as_json: bool, no_usage: bool) -> None:
    """List volumes: name, driver, backend, used/size, free, mounts, created."""
    try:
        volumes = ctx.client().call("volumes/list", driver=driver, usage=not no_usage)
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(volumes)
        return
    rows = [("NAME", "DRIVER", "BACKEND", "USED/SIZE", "FREE", "MOUNTS", "CREATED")]
    rows += [
        (
            v["name"],
            v["driver"],
            v["backend"],
            _usage_column(v),
            _free_column(v),
            str(v["mounts"]),
            v["created_at"],
        )
        for v in volumes
    ]
    print_table(rows)


@volume.command("create")
@click.argument("name")
@click.option("-d", "--driver", help="Driver (needed when several are configured).")
@click.option("-o", "--opt", "opts", multiple=True, help="Option KEY=VALUE (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the volume as JSON.")
@pass_context
def volume_create(
    ctx: Context, name: str, driver: str | None, opts: tuple[str, ...], as_json: bool
) -> None:
    """Create a volume."""
    try:
        created = call_with_progress(
            ctx.client(), "volumes/create", name=name, driver=driver, options=_parse_options(opts)
        )
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(created)
    else:
        click.echo(created["name"])


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-d", "--driver", help="Driver, when the name exists in several.")
@pass_context
def volume_inspect(ctx: Context, names: tuple[str, ...], driver: str | None) -> None:
    """Show volumes in detail (JSON), with fresh usage."""
    client = ctx.client()
    try:
        found = [client.call("volumes/inspect", name=name, driver=driver) for name in names]
    except OrlopError as error:
        fail(error, as_json=True)
        return
    echo_json(found)


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-d", "--driver", help="Driver, when the name exists in several.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def volume_rm(ctx: Context, names: tuple[str, ...], driver: str | None, as_json: bool) -> None:
    """Remove volumes (refused while a container uses one)."""
    client = ctx.client()
    remove_each(
        names, lambda name: client.call("volumes/remove", name=name, driver=driver), "name", as_json
    )


@volume.command("resize")
@click.argument("name")
@click.argument("size")
@click.option("-d", "--driver", help="Driver, when the name exists in several.")
@click.option("--json", "as_json", is_flag=True, help="Print the volume as JSON.")
@pass_context
def volume_resize(ctx: Context, name: str, size: str, driver: str | None, as_json: bool) -> None:
    """Grow a volume to SIZE (e.g. 20G), online if it is in use."""
    try:
        resized = ctx.client().call("volumes/resize", name=name, size=size, driver=driver)
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(resized)
        return
    click.echo(f"{resized['name']}: {_usage_column(resized)}, {_free_column(resized)} free")


# drivers ----------------------------------------------------------------------------------
@cli.group()
def driver() -> None:
    """Configured drivers."""


@driver.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def driver_ls(ctx: Context, as_json: bool) -> None:
    """List drivers: name, backend, scope, capabilities, volumes, socket."""
    try:
        drivers = ctx.client().call("drivers")
    except OrlopError as error:
        fail(error, as_json)
        return
    if as_json:
        echo_json(drivers)
        return
    rows = [("DRIVER", "BACKEND", "SCOPE", "CAPABILITIES", "VOLUMES", "SOCKET")]
    rows += [
        (
            d["name"],
            d["backend"],
            d["capabilities"]["scope"],
            _abilities(d["capabilities"]),
            str(d["volumes"]),
            d["socket"],
        )
        for d in drivers
    ]
    print_table(rows)


def _abilities(capabilities: dict[str, Any]) -> str:
    """The optional capabilities a driver has, e.g. "snapshot,resize", or "-"."""
    names = [name for name, value in capabilities.items() if name != "scope" and value is True]
    return ",".join(names) or "-"


cli.add_command(snapshot)
cli.add_command(status)
cli.add_command(backup)
cli.add_command(trash)
cli.add_command(events)


def main() -> None:
    cli()
