"""Help texts name what the code can do today, derived from the backends' capabilities."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from orlop.cli.main import cli

pytestmark = pytest.mark.unit


def help_of(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def kinds_named(text: str) -> set[str]:
    found = re.search(r"Backend kinds that have them: ([a-z, ]+)\.", text)
    assert found, text
    return set(found.group(1).split(", "))


def test_snapshot_help_names_every_kind_that_takes_snapshots() -> None:
    # Three kinds only, once: the cloud providers and PowerScale came later.
    assert kinds_named(help_of("snapshot")) == {
        "directory",
        "loopfile",
        "ebs",
        "gce",
        "digitalocean",
        "cinder",
        "powerflex",
        "vsphere",
        "powerscale",
    }


def test_backup_help_names_the_kinds_with_restic_backups() -> None:
    assert kinds_named(help_of("backup")) == {"directory", "loopfile"}
