"""PowerFlex provider pieces that need no gateway: names, options, settings, error kinds."""

from __future__ import annotations

import pytest
import requests

from orlop.backends.cloud.api import ErrorKind
from orlop.backends.cloud.powerflex import labels as names
from orlop.backends.cloud.powerflex.client import Gateway, PowerFlexSettings
from orlop.backends.cloud.powerflex.provider import PowerFlexProvider
from orlop.core.model import ConfigError, InvalidOption

GIB = 1024**3
SETTINGS = {"gateway": "https://pf.example:8443", "username": "admin", "password_file": "/p"}


@pytest.mark.parametrize(
    "volume", ["a", "Db.Main_1", "x" * 25, "x" * 26, "A-b_C.d" * 30, "UPPER", "0abc"]
)
def test_names_fit_powerflex_and_read_back_when_short(volume: str) -> None:
    name = names.encode("o", "team", volume)
    assert names.VALID.match(name)
    ours, readable = names.decode("o", "team", name)
    assert ours and readable == (volume if len(volume) <= 25 else None)
    assert names.decode("o", "other", name) == (False, None)  # another namespace's
    assert names.decode("s", "team", name) == (False, None)  # a volume is not a snapshot
    assert name != names.encode("o", "team", volume + "x")


def test_long_names_differ_by_their_hash() -> None:
    a, b = "v" * 40 + "1", "v" * 40 + "2"
    assert names.encode("o", "ns", a) != names.encode("o", "ns", b)
    assert names.encode("o", "ns", a) != names.encode("o", "ns2", a)
    assert names.decode("o", "ns", "unrelated-volume") == (False, None)


def test_sizes_round_up_to_8_gib_steps() -> None:
    options = PowerFlexProvider.options
    for asked, gib in (("1G", 8), ("8G", 8), ("9G", 16), ("100G", 104), ("1T", 1024)):
        assert options.validate({"size": asked})["size"] == str(gib * GIB)
    for bad in ("2000T", "9" * 400, "ten", "1"):
        with pytest.raises(InvalidOption, match="size"):
            options.validate({"size": bad})
    assert options.validate({"provisioning": "thick"}) == {"provisioning": "thick"}
    with pytest.raises(InvalidOption, match="thin, thick"):
        options.validate({"provisioning": "sparse"})


def test_settings() -> None:
    settings = PowerFlexSettings.parse("powerflex", SETTINGS)
    assert settings.address() == ("pf.example", 8443) and settings.verify
    bare = PowerFlexSettings.parse("powerflex", {**SETTINGS, "gateway": "pf.example"})
    assert bare.address() == ("pf.example", 443)
    with pytest.raises(ConfigError, match="https"):
        PowerFlexSettings.parse("powerflex", {**SETTINGS, "gateway": "http://pf.example"})
    with pytest.raises(ConfigError, match="password_file"):
        PowerFlexSettings.parse("powerflex", {"gateway": "pf", "username": "u"})
    with pytest.raises(ConfigError, match="unknown powerflex setting password:"):
        PowerFlexSettings.parse("powerflex", {**SETTINGS, "password": "x"})


def _wrapped(cause: Exception) -> Exception:
    try:
        raise Exception(f"Login failed with error: {cause}") from cause
    except Exception as error:
        return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_wrapped(requests.exceptions.ConnectionError("refused")), ErrorKind.UNREACHABLE),
        (_wrapped(requests.exceptions.ReadTimeout("slow")), ErrorKind.UNREACHABLE),
        (_wrapped(requests.exceptions.SSLError("bad cert")), ErrorKind.CREDENTIALS),
        (Exception("Failed to query PowerFlex token"), ErrorKind.CREDENTIALS),
        (
            Exception(
                "Failed to query PowerFlex Volume with id 1. Error: {'message': "
                "'Could not find the volume', 'httpStatusCode': 500, 'errorCode': 79}."
            ),
            ErrorKind.NOT_FOUND,
        ),
        (
            Exception(
                "Failed to map. Error: {'message': 'Volume already mapped to another "
                "SDC', 'httpStatusCode': 500, 'errorCode': 153}"
            ),
            ErrorKind.IN_USE,
        ),
        (Exception("Error: {'message': 'odd', 'httpStatusCode': 500}"), ErrorKind.RETRYABLE),
        (Exception("something else"), ErrorKind.FAILED),
    ],
)
def test_errors_map_to_kinds(error: Exception, kind: ErrorKind) -> None:
    gateway = Gateway(PowerFlexSettings.parse("powerflex", SETTINGS))
    mapped = gateway.error("get volume", error)
    assert mapped.kind is kind and str(mapped).startswith("get volume: ")


def test_snapshot_ids() -> None:
    provider = PowerFlexProvider.__new__(PowerFlexProvider)
    assert provider.is_snapshot_id("0123456789abcdef")
    assert not provider.is_snapshot_id("nightly")
