"""Strings no option parser expects: huge, tiny, non-ASCII digits, control characters."""

from __future__ import annotations

ODD_VALUES: list[str] = [
    "",
    " ",
    "0",
    "-1",
    "-0",
    "1" * 309,  # float("1" * 309) is infinity
    "9" * 5000,  # beyond Python's int/str conversion limit
    "1e309",
    "inf",
    "nan",
    "1.5",
    "0.0000001",
    "0x10",
    "10G",
    "10 G",
    "99999999999T",
    "\uff11\uff12",  # fullwidth digits
    "١٢٣",  # Arabic-Indic digits
    "²",  # str.isdigit() says yes, int() says no
    "\x00",
    "a\nb",
    "../../etc",
    "/",
    "//",
    "-oProxyCommand=x",
    "%s%n",
    "\U0001f4be",
    "\udcff",  # a lone surrogate: valid in JSON, not encodable as UTF-8
    "x" * 4096,
    "true",
    "TRUE",
    "none",
]
