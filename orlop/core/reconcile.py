"""A Create of a volume that exists: which of the options asked must match, which are taken.

Options that say what the volume is (`Option.identity`: size, type, …) must match the
volume's when they are asked; those not asked do not matter (another host, or an older
configuration, may have made it). Options that say how this host uses it (preempt,
keep_on_remove) are taken as asked.
"""

from __future__ import annotations

from orlop.core.model import Conflict, Volume
from orlop.core.options import OptionSet


def reconcile_options(
    existing: Volume, asked: dict[str, str], canonical: dict[str, str], options: OptionSet
) -> bool:
    """Raise Conflict, naming each difference, if an identity option asked differs; else take
    the behaviour options asked into `existing.options`. True if those changed (save it)."""
    spec = options.options
    identity = [key for key in asked if spec[key].identity]
    if any(existing.options.get(key) != canonical[key] for key in identity):
        old = {key: existing.options[key] for key in identity if key in existing.options}
        new = {key: canonical[key] for key in identity}
        raise Conflict(difference(existing.name, old, new, options))
    behaviour = {
        key: canonical[key]
        for key in asked
        if not spec[key].identity and existing.options.get(key) != canonical[key]
    }
    existing.options.update(behaviour)
    return bool(behaviour)


def difference(
    name: str, existing: dict[str, str], requested: dict[str, str], options: OptionSet
) -> str:
    """The message of a Create whose options differ from the volume's (secrets redacted)."""
    shown_old = options.redact(existing)
    shown_new = options.redact(requested)
    changed = sorted(
        key for key in set(existing) | set(requested) if existing.get(key) != requested.get(key)
    )
    details = ", ".join(
        f"{key}: {shown_old.get(key, '(unset)')} → {shown_new.get(key, '(unset)')}"
        for key in changed
    )
    return (
        f"volume {name} already exists with different options ({details}); "
        "remove it first or create it with the same options"
    )
