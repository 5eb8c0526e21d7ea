"""DigitalOcean provider pieces that need no server: tags, options, names, settings, errors."""

from __future__ import annotations

import re

import pytest

from orlop.backends.cloud import naming
from orlop.backends.cloud.api import ErrorKind
from orlop.backends.cloud.digitalocean import labels as tags
from orlop.backends.cloud.digitalocean.client import DigitalOceanSettings, api_error
from orlop.backends.cloud.digitalocean.provider import (
    NAME_MAX,
    DigitalOceanProvider,
)
from orlop.core.model import ConfigError, InvalidOption

GIB = 1024**3
DOCKER_NAMES = ["a", "Db.Main_1", "x" * 255, "A-b_C.d", "0abc", "UPPER", "a__b..c--d"]


@pytest.mark.parametrize("value", [*DOCKER_NAMES, "host-1 4f2a9c", "ünï", "a:b", ""])
def test_label_tags_round_trip_and_obey_the_tag_rules(value: str) -> None:
    made = tags.label_tags({"volume": value, "namespace": "team.A"})
    assert all(re.fullmatch(r"[A-Za-z0-9_:-]{1,255}", tag) for tag in made)
    assert all(tag == tag.lower() for tag in made)  # capitals never carry meaning
    assert tags.labels_of([*made, "user-tag", "orlop:bogus:_!"]) == {
        "volume": value,
        "namespace": "team.A",
    }


def test_a_long_name_is_spread_over_several_tags_and_found_again() -> None:
    name = "A" * 255
    made = tags.label_tags({"volume": name})
    assert len(made) > 1
    assert tags.tags_of_key(made, "volume") == made
    assert tags.tags_of_key(made, "namespace") == []


@pytest.mark.parametrize("volume", DOCKER_NAMES)
def test_volume_names_follow_digitalocean_rules_and_differ_by_namespace(volume: str) -> None:
    name = naming.disk_name("ns", volume, NAME_MAX)
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,63}", name)
    assert name != naming.disk_name("other", volume, NAME_MAX)


def test_size_rounds_up_to_gib_within_limits() -> None:
    options = DigitalOceanProvider.options
    assert options.validate({"size": "1500M"})["size"] == str(2 * GIB)
    assert options.validate({"size": "16T"})["size"] == str(16384 * GIB)
    for bad in ("16385G", "17T", "0", "-1G", "9" * 400, "big"):
        with pytest.raises(InvalidOption, match="size"):
            options.validate({"size": bad})


def test_tags_option_is_canonical_and_checked() -> None:
    options = DigitalOceanProvider.options
    assert options.validate({"tags": " b, a,b ,env:prod"})["tags"] == "a,b,env:prod"
    for bad, why in (("a b", "not a DigitalOcean tag"), ("orlop:x", "Orlop's own")):
        with pytest.raises(InvalidOption, match=why):
            options.validate({"tags": bad})
    with pytest.raises(InvalidOption, match="unknown option"):
        options.validate({"type": "ssd"})


def test_settings_need_a_token_and_https_except_to_loopback() -> None:
    ok = DigitalOceanSettings.parse("digitalocean", {"token_file": "/etc/orlop/do-token"})
    assert ok.api_url == "https://api.digitalocean.com"
    assert ok.metadata_url == "http://169.254.169.254" and ok.by_id_dir == "/dev/disk/by-id"
    assert "token" in DigitalOceanSettings.secret_names()
    with pytest.raises(ConfigError, match="token_file"):
        DigitalOceanSettings.parse("digitalocean", {})
    with pytest.raises(ConfigError, match="not both"):
        DigitalOceanSettings.parse("digitalocean", {"token": "t", "token_file": "/x"})
    with pytest.raises(ConfigError, match="https"):
        DigitalOceanSettings.parse("digitalocean", {"token": "t", "api_url": "http://do.lan"})
    for loopback in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"):
        DigitalOceanSettings.parse("digitalocean", {"token": "t", "api_url": loopback})
    with pytest.raises(ConfigError, match="unknown digitalocean setting droplet"):
        DigitalOceanSettings.parse("digitalocean", {"token": "t", "droplet": 1})
    with pytest.raises(ConfigError, match="droplet_id"):
        DigitalOceanSettings.parse("digitalocean", {"token": "t", "droplet_id": "abc"})
    secret = DigitalOceanSettings.parse("digitalocean", {"token": "dop_v1_secret"})
    assert "dop_v1_secret" not in repr(secret) and "dop_v1_secret" not in str(secret)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "bad_request", ErrorKind.INVALID),
        (401, "unauthorized", ErrorKind.CREDENTIALS),
        (403, "forbidden", ErrorKind.CREDENTIALS),
        (404, "not_found", ErrorKind.NOT_FOUND),
        (409, "conflict", ErrorKind.INVALID),
        (422, "unprocessable_entity", ErrorKind.INVALID),
        (429, "too_many_requests", ErrorKind.THROTTLED),
        (500, "server_error", ErrorKind.RETRYABLE),
        (503, "service_unavailable", ErrorKind.RETRYABLE),
        (418, "teapot", ErrorKind.FAILED),
    ],
)
def test_error_bodies_map_to_kinds(status: int, code: str, kind: ErrorKind) -> None:
    error = api_error("attach", status, {"id": code, "message": "the message"})
    assert error.kind is kind and error.code == code
    assert str(error).startswith(f"attach: DigitalOcean answered {status} {code}: the message")
    assert api_error("get", status, None).kind is kind  # no body (a proxy's answer)


def test_snapshot_ids_are_uuids() -> None:
    provider = DigitalOceanProvider.__new__(DigitalOceanProvider)
    assert provider.is_snapshot_id("fbe805e8-866b-11e6-96bf-000f53315a41")
    assert not provider.is_snapshot_id("nightly")
    assert not provider.is_snapshot_id("snap-0123456789abcdef0")
