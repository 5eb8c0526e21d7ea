"""What a volume may ask of mkfs and mount: allow-lists per filesystem, and the checks.

Anything not listed is refused with a message naming what is allowed. Nothing here lets a
volume name a host path (`device=`, `subvol=/…`), turn off `nodev`/`nosuid`, force a format
over existing data, or panic the host (`errors=panic`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from orlop.core.model import InvalidOption

Check = Callable[[str], bool]


def _int(low: int, high: int) -> Check:
    return lambda value: value.isdigit() and low <= int(value) <= high


def _choice(*choices: str) -> Check:
    return lambda value: value in choices


def _matches(pattern: str) -> Check:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


_SIZE = _matches(r"[0-9]{1,12}[kKmMgGtT]?")
_BIT = _choice("0", "1")
_POW2 = _choice(*(str(2**n) for n in range(9, 17)))  # 512 … 65536


def _label(length: int) -> Check:
    return _matches(rf"[A-Za-z0-9_.-]{{1,{length}}}")


def _sub(**allowed: Check | None) -> Check:
    """Comma-separated suboptions (`key=value` or a bare `key` where the check is None)."""

    def check(value: str) -> bool:
        for part in value.split(","):
            key, has_value, sub_value = part.partition("=")
            if key not in allowed:
                return False
            sub_check = allowed[key]
            if (sub_check is None) == bool(has_value):
                return False
            if sub_check is not None and not sub_check(sub_value):
                return False
        return bool(value)

    return check


# mkfs: flag → check of its argument (None: a flag without argument) ------------------------
MKFS: dict[str, dict[str, Check | None]] = {
    "ext4": {
        "-b": _choice("1024", "2048", "4096"),
        "-m": _int(0, 50),
        "-L": _label(16),
        "-i": _int(1024, 67108864),
        "-I": _choice("128", "256", "512", "1024"),
        "-N": _int(1, 2**32 - 1),
        "-T": _choice(
            "default", "small", "floppy", "big", "huge", "news", "largefile", "largefile4"
        ),
        "-E": _sub(
            lazy_itable_init=_BIT,
            lazy_journal_init=_BIT,
            stride=_int(1, 2**31),
            stripe_width=_int(1, 2**31),
            discard=None,
            nodiscard=None,
        ),
        "-O": _matches(
            r"(\^?(metadata_csum|quota|project|casefold|encrypt|64bit|large_dir|"
            r"dir_index|huge_file|flex_bg|sparse_super2|inline_data)(,|$))+"
        ),
        "-J": _sub(size=_int(1, 10240)),
        "-j": None,
    },
    "xfs": {
        "-b": _sub(size=_POW2),
        "-i": _sub(size=_choice("256", "512", "1024", "2048"), maxpct=_int(0, 100), sparse=_BIT),
        "-m": _sub(crc=_BIT, finobt=_BIT, reflink=_BIT, rmapbt=_BIT, bigtime=_BIT),
        "-d": _sub(agcount=_int(1, 2**31), su=_SIZE, sw=_int(1, 2**31)),
        "-l": _sub(size=_SIZE, **{"lazy-count": _BIT}),
        "-n": _sub(size=_POW2),
        "-L": _label(12),
        "-K": None,
    },
    "btrfs": {
        "-L": _label(255),
        "-m": _choice("single", "dup"),
        "-d": _choice("single", "dup"),
        "-M": None,
        "-n": _POW2,
        "-K": None,
        "-O": _matches(
            r"(\^?(no-holes|free-space-tree|block-group-tree|extref|skinny-metadata|raid1c34|"
            r"zoned|quota)(,|$))+"
        ),
        "-R": _matches(r"(\^?(quota|free-space-tree)(,|$))+"),
        "--csum": _choice("crc32c", "xxhash", "sha256", "blake2"),
    },
}


def check_mkfs(fs: str, arguments: list[str]) -> None:
    allowed = MKFS[fs]
    shown = ", ".join(sorted(allowed))
    words = iter(arguments)
    for word in words:
        flag, _, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if flag in ("-f", "-F", "--force"):
            raise InvalidOption(
                f"mkfs option {flag} is not allowed: Orlop formats only blank devices and never "
                "forces a format over existing data"
            )
        if flag not in allowed:
            raise InvalidOption(
                f"mkfs option {word!r} is not allowed for {fs}: allowed are {shown} "
                "(each with its value, e.g. '-L data')"
            )
        value_check = allowed[flag]
        if value_check is None:
            continue
        value = inline or next(words, None)
        if value is None or not value_check(value):
            raise InvalidOption(
                f"mkfs option {flag} for {fs} needs an allowed value, got "
                f"{'nothing' if value is None else repr(value)}"
            )


# mount ------------------------------------------------------------------------------------
_COMMON_MOUNT: dict[str, Check | None] = {
    name: None
    for name in (
        "ro",
        "rw",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "nodiratime",
        "diratime",
        "lazytime",
        "nolazytime",
        "noexec",
        "exec",
        "sync",
        "async",
        "dirsync",
        "nosuid",
        "nodev",
        "discard",
        "nodiscard",
        "iversion",
        "noiversion",
    )
}
MOUNT: dict[str, dict[str, Check | None]] = {
    "ext4": {
        **_COMMON_MOUNT,
        **dict.fromkeys(
            (
                "barrier",
                "journal_checksum",
                "nojournal_checksum",
                "delalloc",
                "nodelalloc",
                "dioread_nolock",
                "dioread_lock",
                "user_xattr",
                "acl",
                "noacl",
                "noinit_itable",
                "auto_da_alloc",
                "noauto_da_alloc",
                "quota",
                "usrquota",
                "grpquota",
                "prjquota",
                "nombcache",
            )
        ),
        "data": _choice("ordered", "journal", "writeback"),
        "commit": _int(0, 3600),
        "errors": _choice("remount-ro", "continue"),
        "max_batch_time": _int(0, 10**7),
        "min_batch_time": _int(0, 10**7),
        "init_itable": _int(0, 1000),
        "stripe": _int(1, 2**31),
    },
    "xfs": {
        **_COMMON_MOUNT,
        **dict.fromkeys(
            (
                "inode64",
                "inode32",
                "largeio",
                "nolargeio",
                "noalign",
                "swalloc",
                "wsync",
                "attr2",
                "noattr2",
                "usrquota",
                "grpquota",
                "prjquota",
                "uquota",
                "gquota",
                "pquota",
                "uqnoenforce",
                "gqnoenforce",
                "pqnoenforce",
                "filestreams",
                "ikeep",
                "noikeep",
            )
        ),
        "allocsize": _SIZE,
        "logbufs": _int(2, 8),
        "logbsize": _SIZE,
    },
    "btrfs": {
        **_COMMON_MOUNT,
        **dict.fromkeys(
            (
                "compress",
                "autodefrag",
                "noautodefrag",
                "ssd",
                "nossd",
                "ssd_spread",
                "nossd_spread",
                "flushoncommit",
                "noflushoncommit",
                "datacow",
                "nodatacow",
                "datasum",
                "nodatasum",
                "barrier",
                "acl",
                "noacl",
            )
        ),
        "compress": _matches(r"(zlib|lzo|zstd|no)(:[0-9]{1,2})?"),
        "compress-force": _matches(r"(zlib|lzo|zstd)(:[0-9]{1,2})?"),
        "commit": _int(0, 3600),
        "space_cache": _choice("v2"),
        "discard": _choice("sync", "async"),
        "max_inline": _SIZE,
        "thread_pool": _int(1, 1024),
    },
}


def check_mount(fs: str, options: list[str], allow_suid_dev: bool = False) -> None:
    """Refuse options outside the allow-list. `suid` and `dev` only where the host's admin
    allowed them for the whole driver (setting `allow_suid_dev: true`)."""
    allowed = MOUNT[fs]
    for option in options:
        key, has_value, value = option.partition("=")
        if key in ("suid", "dev"):
            if allow_suid_dev:
                continue
            raise InvalidOption(
                f"mount option {key} is not allowed: block volumes are always mounted "
                "nodev,nosuid so a volume cannot bring device files or set-user-ID programs "
                "onto the host (an admin may allow it per driver: settings allow_suid_dev)"
            )
        if "/" in option:
            raise InvalidOption(
                f"mount option {option!r} names a host path: not allowed (a volume's options "
                "can never reach outside the volume)"
            )
        if key not in allowed:
            raise InvalidOption(
                f"mount option {option!r} is not allowed for {fs}: allowed are "
                f"{', '.join(sorted(allowed))}"
            )
        value_check = allowed[key]
        # Some options (btrfs compress, discard) exist both bare and with a value.
        bare_ok = key in _COMMON_MOUNT or key in ("compress",) or value_check is None
        if has_value:
            if value_check is None or not value_check(value):
                raise InvalidOption(f"mount option {option!r} has a value {fs} does not allow")
        elif not bare_ok:
            raise InvalidOption(f"mount option {key} for {fs} needs a value ({key}=…)")
