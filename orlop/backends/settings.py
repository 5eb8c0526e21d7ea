"""Driver `settings:` blocks, declared and validated per backend.

Every backend declares its settings as a `BackendSettings` subclass (a pydantic model that
forbids unknown keys) and names it in `settings_model`. `orlop serve` validates each
driver's block at start: a misspelt key stops the daemon with a message listing the allowed
ones. Secrets (passwords, keys, tokens) are `SecretStr` fields: pydantic never shows them in
a repr, and `secret_names()` lets logs, Status and doctor leave them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from orlop.core.model import ConfigError

S = TypeVar("S", bound="BackendSettings")


class BackendSettings(BaseModel):
    """Base of every backend's settings; a backend without settings uses it as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def secret_names(cls) -> frozenset[str]:
        """The settings whose values are secrets."""
        return frozenset(
            name for name, field in cls.model_fields.items() if _is_secret(field.annotation)
        )

    @classmethod
    def parse(cls: type[S], kind: str, values: Mapping[str, Any]) -> S:
        """Validate a driver's `settings:` block; ConfigError names each problem."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            allowed = ", ".join(sorted(cls.model_fields)) or "none"
            raise ConfigError(
                f"unknown {kind} setting{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}: allowed settings are {allowed}"
            )
        try:
            return cls.model_validate(dict(values))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in error.errors(include_input=False)
            )
            raise ConfigError(f"invalid {kind} settings: {problems}") from None


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return SecretStr in getattr(annotation, "__args__", ())


def secret_value(value: SecretStr | None) -> str | None:
    """The plain text of an optional secret setting."""
    return None if value is None else value.get_secret_value()
