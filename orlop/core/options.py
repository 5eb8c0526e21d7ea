"""Typed option parsing: each backend declares its options once, values are checked here.

Options arrive from Docker as strings (`--opt size=10G`). A backend describes them with
`Option`s; `OptionSet.validate` rejects unknown names (listing the allowed ones), checks
every value, and returns the options in canonical string form so that "10G" and
"10GiB" compare equal when Docker repeats a Create.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from orlop.core.model import InvalidOption

_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*\Z", re.ASCII)
MAX_VALUE_LENGTH = 1024  # no option needs more; a longer one is a mistake or an attack
GIB = 1024**3  # the unit clouds size disks in
MAX_SIZE = 2**63 - 1  # what a 64-bit file offset (and every block device API) can address
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_size(value: str) -> int:
    """Bytes in a size such as "10G", "512MiB", "1.5GB" or "4096"; K/M/G/T alone are binary."""
    size = _size_bytes(value)
    if size <= 0:
        raise ValueError(f"{shown(value)} is not a size: it must be greater than zero")
    return size


def bounded_size(value: str, minimum: int, maximum: int, what: str) -> int:
    """Bytes in `value`, refused unless `minimum` <= size <= `maximum`, the range said. Never
    rounded up into the range: size=5 is five bytes, most likely a forgotten unit, not a
    request for the smallest volume there is."""
    size = _size_bytes(value)
    if minimum <= size <= maximum:
        return size
    hint = " (a number without a unit counts bytes: write e.g. 5G)" if value.isdigit() else ""
    allowed = (
        f"{exact_size(minimum)} or more"
        if maximum >= MAX_SIZE
        else f"{exact_size(minimum)} to {exact_size(maximum)}"
    )
    raise ValueError(f"{shown(value)} is outside the sizes {what} can have: {allowed}{hint}")


def exact_size(size: int) -> str:
    """A size in the largest binary unit that holds it exactly: 1G, 16384G, 300M, 4097."""
    for unit, factor in (("P", 1024**5), ("T", 1024**4), ("G", 1024**3), ("M", 1024**2)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _size_bytes(value: str) -> int:
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{shown(value)} is not a size: use a number with an optional unit "
            "(K, M, G, T binary; KB, MB, GB, TB decimal; KiB, MiB, GiB, TiB), e.g. 10G or 512MiB"
        )
    number = match.group(1)
    if len(number) > 40:  # far beyond MAX_SIZE in any unit; spares converting it
        raise ValueError(f"{shown(value)} is not a size: too large, sizes go up to 8 EiB")
    size = int(Decimal(number) * _SIZE_UNITS[unit])  # exact: no float rounding or overflow
    if size > MAX_SIZE:
        raise ValueError(f"{shown(value)} is not a size: too large, sizes go up to 8 EiB")
    return size


def shown(value: str, limit: int = 40) -> str:
    """A value for an error message: quoted, and cut short when it is long."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def format_size(size: int | None) -> str:
    """A human size with binary units: 1536 → "1.5K"."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean: use true or false")


def parse_id(value: str) -> int:
    """A uid or gid: a decimal number from 0 to 4294967294."""
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > 0xFFFFFFFE:
        raise ValueError(f"{shown(value)} is not a user or group ID: use a number 0 to 4294967294")
    return int(value)


def parse_mode(value: str) -> int:
    """A permission mode in octal, e.g. 755 or 0750."""
    if not re.fullmatch(r"0?[0-7]{1,4}", value):
        raise ValueError(f"{shown(value)} is not an octal permission mode: use e.g. 0755 or 1777")
    return int(value, 8)


def parse_port(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 1 <= int(value) <= 65535:
        raise ValueError(f"{shown(value)} is not a port: use a number 1 to 65535")
    return int(value)


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{shown(value)} is not allowed: use one of {', '.join(choices)}")
        return value

    return parse


def canonical_size(value: str) -> str:
    return str(parse_size(value))


def canonical_gib_size(value: str) -> str:
    """A size of at least 1 GiB rounded up to whole GiB, as bytes: what clouds that size
    disks in GiB allocate."""
    return str(whole_gib(bounded_size(value, GIB, MAX_SIZE, "a disk")) * GIB)


def whole_gib(size: int) -> int:
    """`size` bytes in GiB, rounded up: the GiB a cloud that sizes disks in GiB allocates."""
    return -(-size // GIB)


def canonical_bool(value: str) -> str:
    return "true" if parse_bool(value) else "false"


def canonical_mode(value: str) -> str:
    return f"{parse_mode(value):04o}"


def canonical_int(parse: Callable[[str], int]) -> Callable[[str], str]:
    return lambda value: str(parse(value))


def plain(value: str) -> str:
    return value


@dataclass(frozen=True, slots=True)
class Option:
    """One option a backend accepts: how to check and canonicalise it, and what it means."""

    name: str
    canonical: Callable[[str], str] = plain
    help: str = ""
    secret: bool = False
    # False for options that say how this host uses a volume (preempt), not what it is:
    # asking for a different value on an existing volume is not a conflict.
    identity: bool = True


class OptionSet:
    """The options of one backend."""

    def __init__(self, options: Iterable[Option]) -> None:
        self.options = {option.name: option for option in options}

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(name for name, option in self.options.items() if option.secret)

    def validate(
        self, values: Mapping[str, str], defaults: Mapping[str, str] = {}
    ) -> dict[str, str]:
        """Check `values` (a request) over `defaults` (the driver's); return canonical options."""
        unknown = sorted(set(values) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise InvalidOption(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                f"allowed options are {allowed}"
            )
        result: dict[str, str] = {}
        for name, value in {**defaults, **values}.items():
            if not isinstance(value, str):
                raise InvalidOption(f"option {name} must be a string, not {type(value).__name__}")
            if len(value) > MAX_VALUE_LENGTH:
                raise InvalidOption(
                    f"option {name} is too long ({len(value)} characters): "
                    f"at most {MAX_VALUE_LENGTH}"
                )
            try:
                result[name] = self.options[name].canonical(value)
            except KeyError:
                raise InvalidOption(f"driver default names unknown option {name}") from None
            except (ValueError, ArithmeticError) as error:  # ArithmeticError: overflow
                raise InvalidOption(f"invalid value for option {name}: {error}") from None
        return result

    def redact(self, values: Mapping[str, str]) -> dict[str, str]:
        """The options with every secret value replaced, for Status, inspect and logs."""
        secret = self.secret_names
        return {name: ("<redacted>" if name in secret else value) for name, value in values.items()}
