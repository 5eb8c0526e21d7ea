"""Configuration: a YAML file plus environment overrides, validated; an embedded default.

    state_dir: /var/lib/orlop          # SQLite store and per-driver data
    plugin_dir: /run/docker/plugins    # where Docker looks for <driver>.sock
    admin_socket: /run/orlop/admin.sock
    log_level: info
    usage_interval: 300                # seconds between refreshes of usage for Status
    metrics: 127.0.0.1:9450            # Prometheus /metrics and /healthz (default: off);
                                       # HOST:PORT or a unix socket path
    csi:                               # optional: also serve each driver over CSI
      socket_dir: /run/orlop/csi       # unix://<socket_dir>/<driver>.sock
      node_id: node-1                  # default: the hostname
      stage_wait: 10                   # seconds NodeStage waits for a disk moving here
    drivers:
      orlop:                           # the driver name Docker sees
        backend: directory
        options: {mode: "0755"}        # defaults for every volume of this driver
        settings: {}                   # backend-level settings (not per volume)
        trash: off                     # e.g. 24h: Remove keeps the storage that long

Environment: ORLOP_CONFIG (the file), ORLOP_STATE_DIR, ORLOP_PLUGIN_DIR,
ORLOP_ADMIN_SOCKET, ORLOP_LOG_LEVEL, ORLOP_METRICS override the file's values. CSI_ENDPOINT
(unix://PATH, as orchestrators set it) turns CSI on with that one socket, for a configuration
of one driver; ORLOP_CSI_NODE_ID sets csi.node_id, ORLOP_CSI_STAGE_WAIT csi.stage_wait.
Inside a Docker managed plugin, ORLOP_PLUGIN_KIND selects that kind's configuration from the
plugin's environment (`orlop.managed.env`) in place of a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orlop.core.model import ConfigError, InvalidName, validate_name
from orlop.core.trash import parse_duration
from orlop.ops.listener import parse_address

DEFAULT_CONFIG_PATH = "/etc/orlop/orlop.yaml"
PLUGIN_KIND_VARIABLE = "ORLOP_PLUGIN_KIND"  # set in a managed plugin's config.json

EMBEDDED_DEFAULT: dict[str, Any] = {
    "state_dir": "/var/lib/orlop",
    "plugin_dir": "/run/docker/plugins",
    "admin_socket": "/run/orlop/admin.sock",
    "log_level": "info",
    "drivers": {
        "orlop": {"backend": "directory"},
        # Size-limited volumes with their own filesystem, on sparse image files.
        "orlop-block": {"backend": "loopfile", "options": {"size": "10G", "fs": "ext4"}},
    },
}

_ENV = {
    "ORLOP_STATE_DIR": "state_dir",
    "ORLOP_PLUGIN_DIR": "plugin_dir",
    "ORLOP_ADMIN_SOCKET": "admin_socket",
    "ORLOP_LOG_LEVEL": "log_level",
    "ORLOP_METRICS": "metrics",
}


class DriverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    options: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    trash: str = "off"  # how long Remove keeps a volume's storage (core.trash); off: deletes

    @field_validator("trash", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        text = "off" if value is False else str(value)
        parse_duration(text)  # a ValueError says what is allowed
        return text

    @property
    def trash_seconds(self) -> float:
        return parse_duration(self.trash)

    @field_validator("options", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML reads `mode: 0755` as an int and `readonly: true` as a bool; Docker sends
        # strings, so options are strings everywhere.
        if isinstance(value, Mapping):
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
            }
        return value


class CsiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    socket_dir: str = "/run/orlop/csi"
    node_id: str = ""  # empty: the hostname
    endpoint: str = ""  # one socket (CSI_ENDPOINT), for a configuration of one driver
    # Seconds NodeStage waits for another node to let go of a disk the controller already
    # published here (a move in flight), before answering ABORTED (the orchestrator retries).
    stage_wait: float = Field(default=10.0, ge=0.0, le=600.0)

    @field_validator("socket_dir")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not os.path.isabs(path):
            raise ValueError(f"{path!r} must be an absolute path")
        return path

    @field_validator("endpoint")
    @classmethod
    def _unix(cls, endpoint: str) -> str:
        path = endpoint.removeprefix("unix://")
        if endpoint and not os.path.isabs(path):
            raise ValueError(f"{endpoint!r} must be unix:///absolute/path (or an absolute path)")
        return path


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: str = "/var/lib/orlop"
    plugin_dir: str = "/run/docker/plugins"
    admin_socket: str = "/run/orlop/admin.sock"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    usage_interval: float = Field(default=300.0, ge=1.0)  # seconds between usage refreshes
    metrics: str | None = None  # HOST:PORT or a unix socket path; None: no metrics listener
    drivers: dict[str, DriverConfig] = Field(min_length=1)
    csi: CsiConfig | None = None
    source: str = "embedded default"

    @model_validator(mode="after")
    def _one_driver_per_endpoint(self) -> Config:
        if self.csi is not None and self.csi.endpoint and len(self.drivers) != 1:
            raise ValueError(
                f"csi.endpoint (CSI_ENDPOINT) names one socket, but {len(self.drivers)} drivers "
                "are configured: use csi.socket_dir for several"
            )
        return self

    @field_validator("drivers")
    @classmethod
    def _driver_names(cls, drivers: dict[str, DriverConfig]) -> dict[str, DriverConfig]:
        for name in drivers:
            try:
                validate_name(name, "driver name")
            except InvalidName as error:
                raise ValueError(str(error)) from None
        return drivers

    @field_validator("metrics")
    @classmethod
    def _metrics_address(cls, address: str | None) -> str | None:
        if address is not None:
            parse_address(address)  # its ValueError says what is allowed
        return address

    @field_validator("state_dir", "plugin_dir", "admin_socket")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not os.path.isabs(path):
            raise ValueError(f"{path!r} must be an absolute path")
        return path

    def socket_path(self, driver: str) -> str:
        return os.path.join(self.plugin_dir, f"{driver}.sock")

    def csi_socket_path(self, driver: str) -> str:
        assert self.csi is not None
        return self.csi.endpoint or os.path.join(self.csi.socket_dir, f"{driver}.sock")

    def driver_state_dir(self, driver: str) -> str:
        return os.path.join(self.state_dir, "drivers", driver)

    @property
    def database(self) -> str:
        return os.path.join(self.state_dir, "orlop.db")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `mode: 0755` as the integer 493; keep integers as written instead."""


def _int_as_written(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)  # the int tag only ever marks scalars
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _int_as_written)


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the config file (or the embedded default when there is none), apply the environment."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get("ORLOP_CONFIG")
    path = explicit or DEFAULT_CONFIG_PATH
    if not explicit and environ.get(PLUGIN_KIND_VARIABLE):
        from orlop.managed.env import plugin_config

        raw = plugin_config(environ)
        source = f"managed plugin {environ[PLUGIN_KIND_VARIABLE]} (environment)"
    elif os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as file:
                raw = yaml.load(file, Loader=_Loader) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping (state_dir, drivers, …)")
        source = path
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    else:
        raw, source = dict(EMBEDDED_DEFAULT), "embedded default"
    for variable, key in _ENV.items():
        if environ.get(variable):
            raw[key] = environ[variable]
    _csi_environment(raw, environ)
    raw["source"] = source
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid configuration ({source}): {problems}") from None


def _csi_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """CSI_ENDPOINT, ORLOP_CSI_NODE_ID and ORLOP_CSI_STAGE_WAIT: set them in (or add) the
    csi section; a stage wait alone does not turn CSI on."""
    endpoint, node_id = environ.get("CSI_ENDPOINT"), environ.get("ORLOP_CSI_NODE_ID")
    stage_wait = environ.get("ORLOP_CSI_STAGE_WAIT")
    section = raw.get("csi")
    if not endpoint and not node_id and not (stage_wait and isinstance(section, Mapping)):
        return
    section = dict(section) if isinstance(section, Mapping) else {}
    if endpoint:
        section["endpoint"] = endpoint
    if node_id:
        section["node_id"] = node_id
    if stage_wait:
        section["stage_wait"] = stage_wait
    raw["csi"] = section
