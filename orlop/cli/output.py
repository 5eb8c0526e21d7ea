"""How every `orlop` command prints: JSON, tables, and errors (one path for all of them).

An error goes to stderr as `orlop: <message>`; with `--json` it is also printed on stdout as
`{"error": "<message>"}`, so a script reading stdout always gets JSON. The exit code is 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from orlop.core.model import OrlopError


def fail(error: OrlopError, as_json: bool = False) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": str(error)}))
    click.echo(f"orlop: {error}", err=True)
    sys.exit(1)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell, two spaces apart; the first row is the heading."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def remove_each(
    names: Sequence[str], remove: Callable[[str], Any], key: str, as_json: bool
) -> NoReturn:
    """Remove each of `names`, going on past failures: each removed name on stdout (or, with
    --json, `{"removed": [...], "errors": [{key: name, "error": ...}]}`), each error on
    stderr; exit 1 if any failed."""
    removed, errors = [], []
    for name in names:
        try:
            removed.append(remove(name))
            if not as_json:
                click.echo(name)
        except OrlopError as error:
            click.echo(f"orlop: {error}", err=True)
            errors.append({key: name, "error": str(error)})
    if as_json:
        echo_json({"removed": removed, "errors": errors})
    sys.exit(1 if errors else 0)
