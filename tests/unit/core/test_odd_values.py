"""No option value may produce an internal error: a clear InvalidOption, or acceptance."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from orlop.backends import BACKENDS, backend_class
from orlop.backends.base import BackendContext
from orlop.core.model import InvalidOption, OrlopError
from orlop.core.options import MAX_SIZE, parse_size
from tests.support.odd_values import ODD_VALUES


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_option_of_every_backend_takes_odd_values(kind: str) -> None:
    options = backend_class(kind).options
    for name in options.options:
        for value in ODD_VALUES:
            try:
                canonical = options.validate({name: value})
            except InvalidOption as error:
                assert f"option {name}" in str(error)
                assert len(str(error)) < 1500, "a long value is cut short in the message"
                continue
            assert isinstance(canonical[name], str)


@pytest.mark.parametrize("kind", ["directory", "loopfile", "sshfs", "s3"])
def test_backend_validation_takes_odd_values(kind: str, tmp_path: Path) -> None:
    cls = backend_class(kind)
    backend = cls(BackendContext(kind, str(tmp_path)))  # type: ignore[call-arg]
    for name in cls.options.options:
        for value in ODD_VALUES:
            with contextlib.suppress(OrlopError):  # anything else fails the test
                backend.validate("v", cls.options.validate({name: value}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1" * 309, "is not a size: too large, sizes go up to 8 EiB"),
        ("9" * 500, r"… \(500 characters\) is not a size: too large"),
        ("16777216T", "too large"),
        ("1e309", "is not a size"),
        ("inf", "is not a size"),
        ("١٢", "is not a size"),
        ("0.1", "greater than zero"),
    ],
)
def test_parse_size_refuses_clearly(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(value)


def test_parse_size_is_exact_up_to_the_limit() -> None:
    assert parse_size("8388607T") == 8388607 * 1024**4
    assert parse_size(str(MAX_SIZE)) == MAX_SIZE
    assert parse_size("1.1G") == 1181116006  # decimal arithmetic: no float rounding
