"""EBS option checks and driver settings: everything decided before an API call is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.backends.base import BackendContext
from orlop.backends.cloud.ebs.backend import EbsBackend
from orlop.backends.cloud.ebs.client import EbsSettings
from orlop.backends.cloud.ebs.devices import find_device, free_device_name, nvme_link
from orlop.backends.cloud.ebs.provider import EbsProvider
from orlop.core.model import ConfigError, InvalidOption

GIB = 1024**3


def check(**options: str) -> None:
    backend_options = EbsBackend.options.validate(options)
    EbsProvider.validate(None, backend_options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": "1G", "type": "st1"}, "size 1 GiB is outside what type st1 allows: 125 to"),
        ({"size": "17T", "type": "gp2"}, "size 17408 GiB is outside what type gp2 allows"),
        ({"size": "65G", "type": "io2", "iops": "100", "size_": ""}, "unknown option size_"),
        ({"size": "3G", "type": "io1", "iops": "100"}, "allows: 4 to 16384 GiB"),
        ({"type": "io1"}, "type io1 needs iops: 100 to 64000"),
        ({"type": "gp2", "iops": "3000"}, "type gp2 takes no iops option: only gp3, io1, io2"),
        ({"type": "sc1", "throughput": "200"}, "type sc1 takes no throughput option: only gp3"),
        ({"type": "gp3", "iops": "2000"}, "iops 2000 is outside what type gp3 allows: 3000"),
        ({"size": "8G", "iops": "5000"}, "too many for 8 GiB of gp3: at most 500 IOPS per GiB"),
        ({"throughput": "100"}, "throughput 100 MiB/s is outside .* 125 to 2000"),
        ({"throughput": "1000"}, "needs more iops: gp3 allows at most 0.25 MiB/s"),
        ({"type": "gp4"}, "'gp4' is not allowed: use one of gp3, gp2, io1, io2, st1, sc1"),
        ({"iops": "lots"}, "invalid value for option iops: 'lots' is not a whole number"),
        ({"availability_zone": "Mars"}, "not an availability zone name"),
        ({"from_snapshot": "snap-xyz"}, "is not a snapshot ID"),
        ({"kms_key_id": "alias/k"}, "kms_key_id needs encrypted=true"),
        ({"preempt": "maybe"}, "not a boolean"),
        ({"fs": "ntfs"}, "'ntfs' is not allowed"),
    ],
)
def test_bad_options_refused_with_what_is_allowed(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        check(**options)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"size": "1G"},
        {"size": "125G", "type": "st1"},
        {"size": "64T", "type": "gp3", "iops": "80000", "throughput": "2000"},
        {"size": "100G", "type": "io2", "iops": "100000"},
        {"size": "4G", "type": "io1", "iops": "200"},
        {"encrypted": "yes", "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/abc"},
        {"from_snapshot": "snap-0123456789abcdef0", "preempt": "true"},
        {"from_snapshot": "nightly", "keep_on_remove": "1"},
    ],
)
def test_good_options_pass(options: dict[str, str]) -> None:
    check(**options)


def test_sizes_round_up_to_whole_gib() -> None:
    assert EbsBackend.options.validate({"size": "1500M"})["size"] == str(2 * GIB)
    assert EbsBackend.options.validate({"size": "10G"}) == EbsBackend.options.validate(
        {"size": "10GiB"}
    )


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown ebs setting regoin: allowed settings are"):
        EbsSettings.parse("ebs", {"regoin": "us-east-1"})
    with pytest.raises(ConfigError, match="access_key_id and secret_access_key go together"):
        EbsSettings.parse("ebs", {"access_key_id": "AKIA"})
    with pytest.raises(ConfigError, match="attach_timeout: Input should be a valid number"):
        EbsSettings.parse("ebs", {"attach_timeout": "soon"})
    assert EbsSettings.parse("ebs", {"attach_timeout": "3"}).attach_timeout == 3.0
    # A misspelt setting stops the daemon: the backend refuses to be built with it.
    with pytest.raises(ConfigError, match="unknown ebs setting instance: allowed"):
        EbsBackend(BackendContext("ebs", "/nonexistent", settings={"instance": "i-1"}))


def test_secrets_stay_out_of_status(tmp_path: Path) -> None:
    settings = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-value"}
    backend = EbsBackend(BackendContext("ebs", str(tmp_path), settings=settings))
    from orlop.backends.base import VolumeRef

    facts = backend.describe(VolumeRef("v", {}, {"volume_id": "vol-1", "type": "gp3"}))
    assert "s3cr3t-value" not in repr(facts) and "AKIAEXAMPLE" not in repr(facts)
    assert backend.capabilities.snapshot and backend.capabilities.scope == "global"


def test_device_discovery_by_serial_and_by_name(tmp_path: Path) -> None:
    by_id, dev = tmp_path / "by-id", tmp_path / "dev"
    by_id.mkdir()
    dev.mkdir()
    # /dev/null stands in for a block device only where it is one: use a real block device.
    block = next(p for p in ("/dev/loop0", "/dev/vda", "/dev/sda") if Path(p).exists())
    assert find_device("vol-0abc", "/dev/xvdf", str(dev), str(by_id)) is None
    (dev / "sdf").symlink_to(block)  # an old Xen kernel names xvdf "sdf"
    assert find_device("vol-0abc", "/dev/xvdf", str(dev), str(by_id)) == block
    assert free_device_name({"/dev/sda1", "/dev/xvdg"}, str(dev)) == "/dev/xvdh"
    link = Path(nvme_link(str(by_id), "vol-0abc"))
    assert link.name == "nvme-Amazon_Elastic_Block_Store_vol0abc"
    link.symlink_to(block)
    assert find_device("vol-0abc", None, str(dev), str(by_id)) == block
    (dev / "xvdq").symlink_to(tmp_path / "not-a-device")
    assert find_device("vol-0abc", "/dev/xvdq", str(dev), str(tmp_path / "x")) is None


def test_block_layer_settings_pass_through(tmp_path: Path) -> None:
    backend = EbsBackend(BackendContext("ebs", str(tmp_path), settings={"allow_suid_dev": True}))
    assert backend.allow_suid_dev is True
