"""Plugin kinds, and the environment variables that configure each one.

A plugin kind is one backend kind under the name its plugin carries: `orlop/local` serves
the `directory` backend, `orlop/block` the `loopfile` backend, and every other backend
kind registered in `orlop.backends.BACKENDS` is a plugin kind of the same name
(`orlop/ebs`, `orlop/s3`, …). Nothing here lists backends by hand: a kind added to the
registry is a plugin kind, its variables come from its `settings_model` and its options,
and the Debian packages its root filesystem needs come from its `host_checks()`.

Each driver setting `name` is the variable `<KIND>_<NAME>` (upper case, KIND the backend
kind): `EBS_REGION`, `S3_ACCESS_KEY_ID`. Each volume option is a driver default the same
way (`LOOPFILE_SIZE`, `SSHFS_HOST`); an option whose name a setting already has is
`<KIND>_DEFAULT_<NAME>` (`EBS_DEFAULT_AVAILABILITY_ZONE`, where the volume goes, beside
`EBS_AVAILABILITY_ZONE`, where this instance is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from orlop.backends import BACKENDS, backend_class
from orlop.backends.base import Backend
from orlop.backends.settings import BackendSettings
from orlop.core.model import ConfigError
from orlop.managed.paths import socket_name

# Plugin names that differ from their backend kind: what Docker users know them as.
ALIASES: dict[str, str] = {"local": "directory", "block": "loopfile"}
# The embedded default options of a kind (what `orlop-block` has in the host default).
DEFAULT_OPTIONS: dict[str, dict[str, str]] = {"loopfile": {"size": "10G", "fs": "ext4"}}

LOG_LEVEL_VARIABLE = "ORLOP_LOG_LEVEL"
KIND_VARIABLE = "ORLOP_PLUGIN_KIND"


@dataclass(frozen=True, slots=True)
class Variable:
    """One settable environment variable of a plugin."""

    name: str  # LOOPFILE_SIZE
    target: Literal["setting", "option"]
    key: str  # the setting's or option's name: size
    description: str
    secret: bool = False
    value: str = ""  # the value config.json ships; "" means unset (Orlop's own default)


@dataclass(frozen=True, slots=True)
class PluginKind:
    name: str  # block
    backend: str  # loopfile
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.backend.upper().replace("-", "_").replace(".", "_")

    @property
    def socket(self) -> str:
        """The socket's file name under /run/docker/plugins, inside the plugin."""
        return socket_name(self.name) or f"{self.name}.sock"

    def backend_class(self) -> type[Backend]:
        return backend_class(self.backend)

    def settings_model(self) -> type[BackendSettings]:
        model = getattr(self.backend_class(), "settings_model", None)
        if isinstance(model, type) and issubclass(model, BackendSettings):
            return model
        return BackendSettings  # a backend without settings

    def variables(self) -> list[Variable]:
        """Every setting, then every option, as a variable; sorted within each group."""
        model = self.settings_model()
        secrets = model.secret_names()
        result = [
            Variable(
                f"{self.prefix}_{name.upper()}",
                "setting",
                name,
                _setting_description(self.backend, name, info, name in secrets),
                secret=name in secrets,
            )
            for name, info in sorted(model.model_fields.items())
        ]
        options = self.backend_class().options
        for name, option in sorted(options.options.items()):
            infix = "DEFAULT_" if name in model.model_fields else ""
            result.append(
                Variable(
                    f"{self.prefix}_{infix}{name.upper()}",
                    "option",
                    name,
                    f"default of volume option {name}"
                    + (f": {option.help}" if option.help else ""),
                    secret=option.secret,
                    value=self.defaults.get(name, ""),
                )
            )
        return result

    def tools(self) -> list[str]:
        """The commands the backend runs, from its doctor checks."""
        names = (check.name for check in _checks(self))
        return sorted({n.removeprefix("command ") for n in names if n.startswith("command ")})

    def check_names(self) -> list[str]:
        """What its doctor checks look at: `command losetup`, `device /dev/fuse`, …"""
        return sorted({check.name for check in _checks(self)})

    def debian_packages(self) -> list[str]:
        """The Debian packages its doctor checks name as fixes (`apt-get install PKG …`)."""
        found: set[str] = set()
        for check in _checks(self):
            found.update(_apt_packages(check.fix))
        return sorted(found)


def plugin_kinds() -> dict[str, PluginKind]:
    """Every plugin kind, by plugin name."""
    by_backend = {backend: alias for alias, backend in ALIASES.items()}
    kinds = {}
    for backend in BACKENDS:
        name = by_backend.get(backend, backend)
        kinds[name] = PluginKind(name, backend, dict(DEFAULT_OPTIONS.get(backend, {})))
    return kinds


def plugin_kind(name: str) -> PluginKind:
    """The plugin kind called `name` (or the backend kind `name`, e.g. `loopfile`)."""
    kinds = plugin_kinds()
    if name in kinds:
        return kinds[name]
    for kind in kinds.values():
        if kind.backend == name:
            return kind
    raise ConfigError(f"unknown plugin kind {name!r}: known kinds are {', '.join(sorted(kinds))}")


def _checks(kind: PluginKind) -> list[Any]:
    checks = getattr(kind.backend_class(), "host_checks", None)
    return list(checks()) if callable(checks) else []


_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def _apt_packages(fix: str) -> list[str]:
    """The packages of an `apt-get install A B, or …` fix: names up to the first other word."""
    if not fix.startswith("apt-get install "):
        return []
    packages = []
    for word in fix.removeprefix("apt-get install ").split():
        name = word.rstrip(",;.")
        if not _PACKAGE.fullmatch(name):
            break
        packages.append(name)
        if name != word:  # punctuation ends the list
            break
    return packages


def _setting_description(backend: str, name: str, info: FieldInfo, secret: bool) -> str:
    text = info.description or f"{backend} driver setting {name}"
    if secret:
        return text + " (a secret: shown by docker plugin inspect; prefer files or roles)"
    if info.default not in (PydanticUndefined, None, ""):
        text += f" (default {info.default})"
    return text
