"""One error path for every command: with `--json`, stdout is JSON even when the command fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orlop.cli.main import cli

JSON_COMMANDS = [
    ("volume", "ls", "--json"),
    ("volume", "create", "v1", "--json"),
    ("volume", "resize", "v1", "2G", "--json"),
    ("volume", "inspect", "v1"),  # inspect always prints JSON
    ("driver", "ls", "--json"),
    ("snapshot", "ls", "--json"),
    ("snapshot", "create", "v1", "--json"),
    ("backup", "ls", "--json"),
    ("status", "--json"),
]


def run(tmp_path: Path, *command: str) -> tuple[int, str, str]:
    socket = tmp_path / "no-daemon.sock"
    result = CliRunner().invoke(cli, ["--admin-socket", str(socket), *command])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=" ".join)
def test_a_failing_json_command_prints_the_error_as_json(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    code, out, err = run(tmp_path, *command)
    assert code == 1
    error = json.loads(out)["error"]
    assert "the orlop daemon is not running" in error and str(tmp_path) in error
    assert err == f"orlop: {error}\n"


def test_without_json_the_error_goes_to_stderr_only(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "volume", "ls")
    assert code == 1 and out == ""
    assert err.startswith("orlop: the orlop daemon is not running")


@pytest.mark.parametrize(
    ("command", "key"), [(("volume", "rm"), "name"), (("snapshot", "rm"), "snapshot")]
)
def test_rm_goes_on_past_each_failure_and_reports_them_all(
    tmp_path: Path, command: tuple[str, ...], key: str
) -> None:
    code, out, err = run(tmp_path, *command, "one", "two", "--json")
    assert code == 1
    answer = json.loads(out)
    assert answer["removed"] == [] and [e[key] for e in answer["errors"]] == ["one", "two"]
    assert err.count("orlop: the orlop daemon is not running") == 2


def test_status_without_json_says_it_on_stderr_only(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "status")
    assert code == 1 and out == ""
    assert err.startswith("orlop: the orlop daemon is not running")
