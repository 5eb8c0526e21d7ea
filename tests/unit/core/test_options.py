"""Option parsing and name validation."""

from __future__ import annotations

import pytest

from orlop.backends.directory.backend import DirectoryBackend
from orlop.core.model import InvalidName, InvalidOption, validate_name
from orlop.core.options import format_size, parse_bool, parse_mode, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10G", 10 * 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1.5K", 1536),
        ("4096", 4096),
        ("1GB", 10**9),
        ("2 t", 2 * 1024**4),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "10X", "", "G", "1..5G", "1e9"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(1536) == "1.5K"
    assert format_size(10 * 1024**3) == "10.0G"
    assert format_size(None) == "-"


def test_bools_and_modes() -> None:
    assert parse_bool("Yes") is True and parse_bool("off") is False
    with pytest.raises(ValueError, match="true or false"):
        parse_bool("maybe")
    assert parse_mode("0755") == 0o755 and parse_mode("1777") == 0o1777
    for bad in ("999", "8", "07777x", "-1", "12345"):
        with pytest.raises(ValueError, match="octal"):
            parse_mode(bad)


@pytest.mark.parametrize(
    "name", ["", "..", ".", "a/b", ".hidden", "-x", "_x", "x" * 256, "caf\u00e9", "a b", "a\0b"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidName) as raised:
        validate_name(name)
    assert "[a-zA-Z0-9][a-zA-Z0-9_.-]*" in str(raised.value) or "255" in str(raised.value)


def test_good_names() -> None:
    for name in ("a", "db-data", "A.b_c-9", "x" * 255):
        assert validate_name(name) == name


def test_directory_options() -> None:
    options = DirectoryBackend.options
    assert options.validate({"mode": "755", "uid": "1000"}) == {"mode": "0755", "uid": "1000"}
    with pytest.raises(
        InvalidOption,
        match="allowed options are device, from_backup, from_snapshot, from_volume, gid, mode, o, ",
    ):
        options.validate({"size": "1G"})
    with pytest.raises(InvalidOption, match="octal"):
        options.validate({"mode": "999"})
    with pytest.raises(InvalidOption, match="user or group ID"):
        options.validate({"uid": "-1"})
    with pytest.raises(InvalidOption, match="use one of tmpfs"):
        options.validate({"type": "nfs"})


def test_directory_option_combinations(tmp_path: object) -> None:
    backend = DirectoryBackend.__new__(DirectoryBackend)
    for options, message in (
        ({"device": "tmpfs"}, "option device requires option type"),
        ({"type": "tmpfs"}, "option type requires option device"),
        ({"o": "size=1m"}, "option o requires option device"),
        ({"type": "none", "device": "/nonexistent/dir", "o": "bind"}, "existing host directory"),
        ({"type": "ext4", "device": "/nonexistent.img"}, "existing block device or image"),
        ({"type": "none", "device": "/tmp"}, "only for bind mounts"),
    ):
        with pytest.raises(InvalidOption, match=message):
            backend.validate("v", options)
    backend.validate("v", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
