"""GCE provider pieces without a server: option limits, label encoding, error mapping,
settings."""

from __future__ import annotations

from typing import Any

import pytest

from orlop.backends.cloud.api import ErrorKind
from orlop.backends.cloud.gce import errors, labels
from orlop.backends.cloud.gce.limits import GIB, check_disk_options
from orlop.backends.cloud.gce.provider import GceProvider
from orlop.backends.cloud.gce.settings import GceSettings
from orlop.core.model import ConfigError, InvalidOption


def canonical(**options: str) -> dict[str, str]:
    return GceProvider.options.validate(options)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"size": "10G", "type": "pd-standard"},
        {"size": "64T", "type": "pd-ssd"},
        {"type": "pd-extreme", "size": "500G", "provisioned_iops": "120000"},
        {"type": "hyperdisk-balanced", "size": "4G", "provisioned_iops": "3000"},
        {
            "type": "hyperdisk-balanced",
            "size": "100G",
            "provisioned_iops": "50000",
            "provisioned_throughput": "1000",
        },
        {"type": "hyperdisk-throughput", "size": "2T", "provisioned_throughput": "180"},
        {"type": "hyperdisk-extreme", "size": "64G", "provisioned_iops": "64000"},
        {"zone": "europe-west1-b", "kms_key": "projects/p/locations/l/keyRings/r/cryptoKeys/k"},
        {"from_snapshot": "global/snapshots/snap-1"},
        {"from_snapshot": "Nightly.1"},
    ],
)
def test_options_within_the_documented_limits_pass(options: dict[str, str]) -> None:
    check_disk_options(canonical(**options))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "pd-fast"}, "use one of pd-balanced, pd-standard, pd-ssd, pd-extreme"),
        ({"size": "9G"}, "size 9 GiB is outside what type pd-balanced allows: 10 to 65536 GiB"),
        ({"size": "65T"}, "10 to 65536 GiB"),
        ({"type": "hyperdisk-throughput", "size": "1T"}, "2048 to 32768 GiB"),
        ({"type": "pd-extreme", "size": "1T", "provisioned_iops": "2000"}, "2500 to 120000"),
        ({"type": "pd-ssd", "provisioned_iops": "3000"}, "pd-ssd takes no provisioned_iops"),
        ({"type": "pd-extreme", "size": "1T", "provisioned_throughput": "100"}, "takes no"),
        (
            {"type": "hyperdisk-extreme", "size": "64G", "provisioned_iops": "65000"},
            "at most 1000 per GiB (64000)",
        ),
        (
            {
                "type": "hyperdisk-balanced",
                "provisioned_iops": "4000",
                "provisioned_throughput": "1200",
            },
            "between IOPS/256 and IOPS/4",
        ),
        (
            {"type": "hyperdisk-throughput", "size": "2T", "provisioned_throughput": "600"},
            "10 to 90 MiB/s per TiB (20 to 180 MiB/s)",
        ),
        ({"size": "1" * 400}, "not a size"),
        ({"provisioned_iops": "12e3"}, "not a whole number"),
        ({"zone": "mars-1"}, "not a Compute Engine zone"),
        ({"kms_key": "my-key"}, "not a Cloud KMS key"),
        ({"from_snapshot": "projects/x/zones/y"}, "global/snapshots/NAME or an Orlop"),
    ],
)
def test_options_outside_the_limits_are_refused_naming_what_is_allowed(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidOption) as refused:
        check_disk_options(canonical(**options))
    assert message in str(refused.value)


def test_sizes_round_up_to_whole_gib() -> None:
    assert canonical(size="10.5G")["size"] == str(11 * GIB)


@pytest.mark.parametrize("volume", ["db", "Db.Main_1", "x" * 255, "A.b_" * 63 + "Z"])
def test_labels_round_trip_within_gce_rules(volume: str) -> None:
    import re

    logical = {"managed-by": "orlop", "namespace": "Team.A", "volume": volume}
    encoded = labels.encode(logical)
    assert len(encoded) <= 64
    for key, value in encoded.items():
        assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) and key.startswith("orlop-")
        assert re.fullmatch(r"[a-z0-9_-]{0,63}", value)
    assert labels.decode({**encoded, "team": "x", "orlop-junk": "_"}) == logical
    changed = labels.merged(encoded, {"volume": "short", "namespace": None})
    assert labels.decode(changed) == {"managed-by": "orlop", "volume": "short"}


def test_values_beyond_docker_names_round_trip() -> None:
    logical = {"claim": "host-1 nonce/Ä", "volume": "a_0041"}
    encoded = labels.encode(logical)
    assert encoded["orlop-claim"] == "host-1_00020nonce_0002f_000c4"
    assert labels.decode(encoded) == logical
    with pytest.raises(InvalidOption, match="cannot be stored in a Compute Engine label"):
        labels.encode({"claim": "\U0001f600"})


@pytest.mark.parametrize(
    ("status", "reasons", "kind"),
    [
        (404, ["notFound"], ErrorKind.NOT_FOUND),
        (400, ["resourceInUseByAnotherResource"], ErrorKind.IN_USE),
        (403, ["rateLimitExceeded"], ErrorKind.THROTTLED),
        (403, ["userRateLimitExceeded"], ErrorKind.THROTTLED),
        (429, [], ErrorKind.THROTTLED),
        (400, ["invalid"], ErrorKind.INVALID),
        (412, ["conditionNotMet"], ErrorKind.RETRYABLE),
        (503, ["backendError"], ErrorKind.RETRYABLE),
        (500, [], ErrorKind.RETRYABLE),
        (401, ["required"], ErrorKind.CREDENTIALS),
        (401, [], ErrorKind.CREDENTIALS),
        (403, ["insufficientPermissions"], ErrorKind.CREDENTIALS),
        (403, ["quotaExceeded"], ErrorKind.FAILED),
        (409, ["alreadyExists"], ErrorKind.FAILED),
    ],
)
def test_refusals_map_to_kinds(status: int, reasons: list[str], kind: ErrorKind) -> None:
    errors_list: list[dict[str, Any]] = [{"reason": r, "message": "m"} for r in reasons]
    assert errors.from_response("do it", status, errors_list, "m").kind is kind


def test_the_holder_is_named_from_the_message() -> None:
    message = (
        "The disk resource 'projects/p/zones/us-central1-a/disks/d' is already being used by "
        "'projects/p/zones/us-central1-a/instances/web-2'"
    )
    refused = errors.from_response(
        "attach", 400, [{"reason": "resourceInUseByAnotherResource", "message": message}], ""
    )
    assert refused.kind is ErrorKind.IN_USE and refused.holder == "web-2"
    failed = errors.from_operation(
        "attach", 400, [("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", message)]
    )
    assert failed.kind is ErrorKind.IN_USE and failed.holder == "web-2"
    assert errors.from_operation("x", 0, [("QUOTA_EXCEEDED", "q")]).kind is ErrorKind.FAILED
    assert errors.from_operation("x", 503, [("SOMETHING", "q")]).kind is ErrorKind.RETRYABLE


def test_settings_names_and_refusals() -> None:
    settings = GceSettings.parse(
        "gce",
        {
            "project": "p",
            "zone": "us-central1-a",
            "instance": "vm-1",
            "endpoint_url": "http://127.0.0.1:8089",
            "credentials_file": "/etc/orlop/gce.json",
            "namespace": "Team.A",
            "by_id_dir": "/dev/disk/by-id",
        },
    )
    assert settings.metadata_url == "http://metadata.google.internal"
    with pytest.raises(ConfigError, match="unknown gce setting projekt: allowed settings are"):
        GceSettings.parse("gce", {"projekt": "p"})
    with pytest.raises(ConfigError, match="not a Compute Engine zone"):
        GceSettings.parse("gce", {"zone": "central"})
    with pytest.raises(ConfigError, match="not a namespace"):
        GceSettings.parse("gce", {"namespace": "a b"})
