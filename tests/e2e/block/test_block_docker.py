"""Block volumes through a real dockerd: data kept, size enforced, grown while in use."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import PLUGIN_DIR
from tests.support.block import cleanup, has_cap_sys_resource, leftovers
from tests.support.daemon import OrlopDaemon
from tests.support.dockerd import IMAGE, Dockerd
from tests.support.names import unique

MiB = 1024 * 1024


# One orlop daemon (one driver) for the module: dockerd keeps asking every driver it has ever
# seen when it looks up an unknown volume, and a dead driver costs it ~30s of retries.
@pytest.fixture(scope="module")
def driver_name() -> str:
    return unique("blk")


@pytest.fixture(scope="module")
def orlop_block(driver_name: str) -> Iterator[OrlopDaemon]:
    daemon = OrlopDaemon(
        {driver_name: {"backend": "loopfile", "options": {"size": "256M"}}},
        plugin_dir=PLUGIN_DIR,
    )
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        cleanup(str(daemon.root))
        daemon.destroy()


def _orlop_volumes(daemon: OrlopDaemon, driver: str) -> list[str]:
    listed = json.loads(daemon.cli("volume", "ls", "--driver", driver, "--json").stdout)
    return [volume["name"] for volume in listed]


@pytest.fixture
def volume(dockerd: Dockerd, orlop_block: OrlopDaemon, driver_name: str) -> Iterator[str]:
    name = unique("vol")
    try:
        yield name
    finally:
        ids = dockerd.run("ps", "-aq", "--filter", f"volume={name}", check=False).stdout.split()
        if ids:
            dockerd.run("rm", "-f", *ids, check=False)
        if name in _orlop_volumes(orlop_block, driver_name):  # docker is slow on unknown names
            dockerd.run("volume", "rm", name, check=False)
        assert leftovers(str(orlop_block.root)) == {"mounts": [], "loop_devices": []}


def _df_kib(dockerd: Dockerd, *run: str) -> int:
    """Total KiB of the filesystem at /data, from `df -k` run by `run`."""
    lines = dockerd.run(*run, "df", "-k", "/data").stdout.strip().splitlines()
    return int(lines[-1].split()[1])


def test_data_is_kept_for_a_new_container(
    dockerd: Dockerd, orlop_block: OrlopDaemon, driver_name: str, volume: str
) -> None:
    dockerd.run("volume", "create", "-d", driver_name, "--opt", "size=256M", volume)
    dockerd.run(
        "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
        "dd if=/dev/urandom of=/data/blob bs=1M count=100 2>/dev/null && "
        "sha256sum /data/blob > /data/blob.sha256 && sync",
    )  # fmt: skip
    check = dockerd.run(
        "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
        "sha256sum -c /data/blob.sha256 && stat -c %s /data/blob && cat /proc/mounts",
    )  # fmt: skip
    assert "/data/blob: OK" in check.stdout
    assert f"{100 * MiB}\n" in check.stdout
    data_mount = next(line for line in check.stdout.splitlines() if " /data " in line)
    assert " ext4 " in data_mount and "nosuid" in data_mount and "nodev" in data_mount
    # Status shows size, used and free; the backend's facts; and the container is gone.
    inspected = json.loads(dockerd.run("volume", "inspect", volume).stdout)[0]
    assert inspected["Driver"] == driver_name
    status = inspected["Status"]
    assert status["backend_status"]["fs"] == "ext4"
    assert status["backend_status"]["size"] == 256 * MiB
    assert status["mounts"] == 0
    listed = orlop_block.cli("volume", "ls", "--driver", driver_name).stdout
    row = next(line for line in listed.splitlines() if line.startswith(volume))
    used, size = row.split()[3].split("/")  # e.g. 101M/243M: the 100 MiB blob in 256M
    assert used.endswith("M") and 100 <= float(used[:-1]) < float(size[:-1]) <= 256, row
    assert row.split()[4].endswith("M"), row  # free
    assert leftovers(str(orlop_block.root)) == {"mounts": [], "loop_devices": []}


def test_writing_past_the_size_fails_and_the_volume_stays_usable(
    dockerd: Dockerd, driver_name: str, volume: str
) -> None:
    dockerd.run("volume", "create", "-d", driver_name, "--opt", "size=256M", volume)
    full = dockerd.run(
        "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
        "dd if=/dev/zero of=/data/fill bs=1M count=400 && sync",
        check=False,
    )  # fmt: skip
    assert full.returncode != 0
    assert "No space left on device" in full.stderr + full.stdout
    after = dockerd.run(
        "run", "--rm", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
        "rm /data/fill && echo still-usable > /data/after && sync && cat /data/after",
    )  # fmt: skip
    assert after.stdout.strip() == "still-usable"


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_resize_while_a_container_runs(
    dockerd: Dockerd, orlop_block: OrlopDaemon, driver_name: str, volume: str, fs: str
) -> None:
    if fs == "ext4" and not has_cap_sys_resource():
        pytest.skip("growing ext4 online needs CAP_SYS_RESOURCE, which this environment lacks")
    dockerd.run("volume", "create", "-d", driver_name, "--opt", f"fs={fs}", "--opt", "size=320M",
                volume)  # fmt: skip
    container = dockerd.run(
        "run", "-d", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
        "echo before > /data/mark && sleep 600",
    ).stdout.strip()  # fmt: skip
    before = _df_kib(dockerd, "exec", container)
    resized = orlop_block.cli("volume", "resize", volume, "1G")
    assert resized.stdout.startswith(f"{volume}: ")
    after = _df_kib(dockerd, "exec", container)
    assert after > before + 500 * 1024, (before, after)
    # The running container uses the new space, and its data is intact.
    dockerd.run("exec", container, "sh", "-c",
                "dd if=/dev/zero of=/data/big bs=1M count=500 2>/dev/null && sync")  # fmt: skip
    assert dockerd.run("exec", container, "cat", "/data/mark").stdout == "before\n"
    inspected = json.loads(orlop_block.cli("volume", "inspect", volume).stdout)[0]
    assert inspected["options"]["size"] == str(1024 * MiB)
    assert inspected["usage"]["size"] > 900 * MiB
    assert inspected["usage"]["used"] >= 500 * MiB
    shrink = orlop_block.cli("volume", "resize", volume, "512M", check=False)
    assert shrink.returncode == 1 and "shrinking" in shrink.stderr
    dockerd.run("rm", "-f", container)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["size=10X"], "is not a size"),
        (["size=0"], "outside the sizes a loop-file volume can have: 16M or more"),
        (["size=-5G"], "is not a size"),
        (["size=100T", "preallocate=true"], "has only"),
        (["fs=zfs"], "use one of ext4, xfs, btrfs"),
        (["mount_options=suid"], "nodev,nosuid"),
        (["mount_options=nodev,dev"], "nodev,nosuid"),
    ],
)
def test_bad_options_through_docker(
    dockerd: Dockerd,
    orlop_block: OrlopDaemon,
    driver_name: str,
    volume: str,
    options: list[str],
    message: str,
) -> None:
    flags = [word for option in options for word in ("--opt", option)]
    result = dockerd.run("volume", "create", "-d", driver_name, *flags, volume, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert volume not in _orlop_volumes(orlop_block, driver_name)
    images = os.path.join(str(orlop_block.state_dir), "drivers", driver_name, "images")
    assert os.listdir(images) == []


def test_ext4_resize_without_cap_sys_resource_grows_at_next_start(
    dockerd: Dockerd, orlop_block: OrlopDaemon, driver_name: str, volume: str
) -> None:
    """Here the daemon may not grow ext4 online: it says so, and the next start grows it."""
    if has_cap_sys_resource():
        pytest.skip("this environment grows ext4 online: test_resize_while_a_container_runs")
    dockerd.run("volume", "create", "-d", driver_name, "--opt", "size=256M", volume)
    container = dockerd.run(
        "run", "-d", "-v", f"{volume}:/data", IMAGE, "sh", "-c", "echo kept > /data/mark; sleep 600"
    ).stdout.strip()  # fmt: skip
    before = _df_kib(dockerd, "exec", container)
    refused = orlop_block.cli("volume", "resize", volume, "1G", check=False)
    assert refused.returncode == 1 and "CAP_SYS_RESOURCE" in refused.stderr
    dockerd.run("rm", "-f", container)
    after = _df_kib(dockerd, "run", "--rm", "-v", f"{volume}:/data", IMAGE)
    assert after > before + 600 * 1024, (before, after)
    again = dockerd.run("run", "--rm", "-v", f"{volume}:/data", IMAGE, "cat", "/data/mark")
    assert again.stdout == "kept\n"
