"""Orlop's configuration inside a managed plugin, from the plugin's environment.

Docker starts the plugin with the variables its `config.json` declares, as `docker plugin
install … NAME=VALUE` or `docker plugin set` left them; `ORLOP_PLUGIN_KIND` (not settable)
says which kind this root filesystem was built for. An empty variable is an unset one: the
driver's own default applies. The result is a raw configuration for `orlop.config`:

* `state_dir` is the plugin's propagated mount, so the SQLite store, block images and
  mount points survive a plugin restart or upgrade, and Docker finds every volume's
  mountpoint on the host (it maps paths under the propagated mount itself);
* one driver, named after the kind, on the socket `config.json` names;
* the admin socket beside it, which the host sees as
  `/run/docker/plugins/<plugin id>/admin.sock` (every dockerd, whatever its --exec-root),
  for the `orlop` command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

from orlop.core.model import ConfigError
from orlop.managed.kinds import KIND_VARIABLE, PluginKind, plugin_kind
from orlop.managed.paths import ADMIN_SOCKET, PLUGIN_DIR, STATE_DIR


def plugin_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The raw configuration (as `orlop.yaml` would hold it) for the plugin's environment."""
    kind = plugin_kind(environ[KIND_VARIABLE])
    if kind.name != environ[KIND_VARIABLE]:
        # The entry point has bound the socket by this name already.
        raise ConfigError(f"{KIND_VARIABLE} must be {kind.name!r}, not {environ[KIND_VARIABLE]!r}")
    options, settings = driver_values(kind, environ)
    return {
        "state_dir": STATE_DIR,
        "plugin_dir": PLUGIN_DIR,
        "admin_socket": ADMIN_SOCKET,
        "drivers": {kind.name: {"backend": kind.backend, "options": options, "settings": settings}},
    }


def driver_values(
    kind: PluginKind, environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """The driver's default options and its settings (typed, as YAML would give them)."""
    variables = kind.variables()
    known = {variable.name for variable in variables}
    stray = sorted(
        name for name in environ if name.startswith(f"{kind.prefix}_") and name not in known
    )
    if stray:
        raise ConfigError(
            f"unknown variable{'s' if len(stray) > 1 else ''} {', '.join(stray)} for the "
            f"{kind.name} plugin: allowed are {', '.join(sorted(known)) or 'none'}"
        )
    options = dict(kind.defaults)
    raw: dict[str, Any] = {}
    given: dict[str, str] = {}
    for variable in variables:
        value = environ.get(variable.name, "")
        if value == "":
            continue
        if variable.target == "option":
            options[variable.key] = value
        else:
            raw[variable.key] = _decode(kind, variable.key, value)
            given[variable.key] = variable.name
    return options, _typed_settings(kind, raw, given)


def _decode(kind: PluginKind, key: str, value: str) -> Any:
    """Lists, mappings and nested models come as JSON; everything else as its text."""
    annotation = kind.settings_model().model_fields[key].annotation
    if _is_structured(annotation):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{kind.prefix}_{key.upper()} must be JSON: {error}") from None
    return value


def _is_structured(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, dict, tuple, set, frozenset):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_is_structured(arg) for arg in getattr(annotation, "__args__", ()))


def _typed_settings(kind: PluginKind, raw: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Validate through the backend's settings model; hand on typed values, secrets in clear
    (the backend's own parse wraps them again), so `"true"` arrives as True, as from YAML."""
    fields = kind.settings_model().model_fields
    missing = [
        f"{kind.prefix}_{name.upper()}"
        for name, info in sorted(fields.items())
        if info.is_required() and name not in raw
    ]
    if missing:
        raise ConfigError(
            f"the {kind.name} plugin needs {', '.join(missing)}: give "
            f"{'them' if len(missing) > 1 else 'it'} to `docker plugin install PLUGIN NAME=VALUE`"
            ", or `docker plugin disable -f PLUGIN`, `docker plugin set PLUGIN NAME=VALUE`, "
            "`docker plugin enable PLUGIN`"
        )
    try:
        model = kind.settings_model().parse(kind.backend, raw)
    except ConfigError as error:
        # Say which variable each setting in the message is.
        named = [name for name in sorted(fields) if re.search(rf"\b{name}\b", str(error))]
        variables = ", ".join(f"{kind.prefix}_{name.upper()} is {name}" for name in named)
        raise ConfigError(f"{error} ({variables or 'no variable set'})") from None
    typed: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, BaseModel):
            value = value.model_dump()
        typed[name] = value
    return typed
