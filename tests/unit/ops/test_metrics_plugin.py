"""Metrics in a managed plugin: ORLOP_METRICS is a plugin variable of every kind (empty:
off), and in plugin mode it becomes the `metrics` setting."""

from __future__ import annotations

import pytest

from orlop.config import load_config
from orlop.core.model import ConfigError
from orlop.managed.kinds import plugin_kinds
from orlop.managed.manifest import manifest
from orlop.managed.paths import PLUGIN_DIR

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(plugin_kinds()))
def test_every_kind_declares_the_metrics_variable(name: str) -> None:
    config = manifest(plugin_kinds()[name], "1")
    env = {entry["name"]: entry for entry in config["env"]}
    metrics = env["ORLOP_METRICS"]
    assert metrics["settable"] == ["value"] and metrics["value"] == ""
    assert "HOST:PORT" in metrics["description"] and PLUGIN_DIR in metrics["description"]
    assert config["network"] == {"type": "host"}  # so 127.0.0.1:PORT is the host's loopback


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        (f"{PLUGIN_DIR}/metrics.sock", f"{PLUGIN_DIR}/metrics.sock"),
        ("127.0.0.1:9450", "127.0.0.1:9450"),
    ],
)
def test_plugin_mode_reads_the_variable(value: str, expected: str | None) -> None:
    environ = {"ORLOP_PLUGIN_KIND": "block", "ORLOP_METRICS": value}
    assert load_config(environ=environ).metrics == expected


def test_a_bad_address_in_the_plugin_is_refused_with_the_rule() -> None:
    environ = {"ORLOP_PLUGIN_KIND": "block", "ORLOP_METRICS": "9450"}
    with pytest.raises(ConfigError, match=r"HOST:PORT.*unix socket"):
        load_config(environ=environ)
