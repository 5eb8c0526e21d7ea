"""Cloud-disk lifecycle latency, per provider: Orlop vs the bare API on the same server.

    .venv/bin/python bench/bench_cloud.py [--rounds 5] [--providers ebs,gce,…]

Runs as root (loop devices, mounts). Each provider runs against its test server on
127.0.0.1 (EBS: moto behind the proxy that refuses a second attach as EC2 does; GCE,
DigitalOcean, PowerFlex: their faithful fakes; Cinder: the real Cinder; vSphere: vcsim), and
the disks are real loop devices shown by the device presenter. So the figures are Orlop's
own overhead — API round trips, polling, checks, format and mount — not a cloud's attach
latency, which is seconds and dominates on a real machine. Columns, per provider:

* `orlop`: the driver through the service (create, first mount = attach + format + mount,
  unmount, mount again, unmount again, remove).
* `bare`: the provider's own API calls with the same waits for state and device, then
  `mkfs.ext4` and `mount` by hand: what the same work costs with no layer around it.
And once, `loopfile`: the block layer over a local image — the floor for format + mount.

Target (issue 8): orlop's first mount ≤ bare first mount + 100 ms. No target is asserted.
A provider whose client or test server is missing here is skipped with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orlop.backends.base import BackendContext
from orlop.backends.cloud.api import LABEL_MANAGED, LABEL_NAMESPACE, DiskSpec
from orlop.backends.cloud.devices import find_device
from orlop.backends.loopfile.provider import LoopFileBackend
from orlop.host.run import run
from tests.contracts.cloud import backend_for
from tests.support.cloud.testbed import CloudHost, CloudTestbed
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.processes import unmount_all_under

STEPS = ("create", "first mount (format)", "unmount", "mount again", "unmount again", "remove")

# kind → "module:function"; the function takes (contextlib.ExitStack, work dir) and returns
# a CloudTestbed whose servers the stack stops. A provider's tests module owns its opener.
TESTBEDS = {
    "ebs": "tests.servers.ec2.server:open_ebs_testbed",
    "digitalocean": "tests.servers.digitalocean.testbed:open_do_testbed",
    "powerflex": "tests.servers.powerflex.testbed:open_powerflex_testbed",
    "gce": "tests.servers.gce.testbed:open_gce_testbed",
    "vsphere": "tests.servers.vsphere.vcsim:open_vsphere_testbed",
    "cinder": "tests.servers.cinder.testbed:open_cinder_testbed",
}


def timed(times: dict[str, list[float]], step: str, action: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = action()
    times.setdefault(step, []).append(time.perf_counter() - start)
    return result


def lifecycle(harness: Harness, name: str, options: dict[str, str], times: dict[str, Any]) -> None:
    timed(times, "create", lambda: harness.create(name, **options))
    timed(times, "first mount (format)", lambda: harness.mount(name, "m1"))
    timed(times, "unmount", lambda: harness.unmount(name, "m1"))
    timed(times, "mount again", lambda: harness.mount(name, "m2"))
    timed(times, "unmount again", lambda: harness.unmount(name, "m2"))
    timed(times, "remove", lambda: harness.remove(name))


def poll(check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline, pause = time.monotonic() + timeout, 0.01
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    raise TimeoutError("bare API step timed out")


def bare(host: CloudHost, options: dict[str, str], target: Path, times: dict[str, Any]) -> None:
    """The same lifecycle through the provider's own calls, with no layer around them."""
    disks = backend_for(host).provider
    cloud, me = disks.cloud, disks.cloud.identity()
    namespace = str(host.settings.get("namespace", "default"))
    name = unique("bare")
    labels = {LABEL_MANAGED: "orlop-bench", LABEL_NAMESPACE: namespace + "-bare"}
    canonical = disks.options.validate(options)

    def create() -> Any:
        made = cloud.create_disk(DiskSpec(name, namespace, labels, unique(), canonical), me)
        return poll(lambda: (d := cloud.get_disk(made.id)) and d.state == "ready" and d)

    def attach(disk: Any, format_it: bool) -> None:
        cloud.attach_disk(disk, me, cloud.device_name(disk, me))

        def attached() -> Any:
            now = cloud.get_disk(disk.id)
            mine = now.attached_to(me.instance) if now is not None else None
            return mine if mine is not None and mine.state == "attached" else None

        mine = poll(attached)
        device = poll(lambda: find_device(cloud.device_paths(disk, mine)))
        if format_it:
            run(["mkfs.ext4", "-q", "-F", device], timeout=120)
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", device, str(target)], timeout=60)

    def detach(disk: Any) -> None:
        run(["umount", str(target)], timeout=60)
        cloud.detach_disk(disk, me.instance)
        poll(lambda: (d := cloud.get_disk(disk.id)) is None or not d.attached_to(me.instance))

    disk = timed(times, "create", create)
    timed(times, "first mount (format)", lambda: attach(disk, True))
    timed(times, "unmount", lambda: detach(disk))
    timed(times, "mount again", lambda: attach(disk, False))
    timed(times, "unmount again", lambda: detach(disk))
    timed(times, "remove", lambda: cloud.delete_disk(disk))


def summary(samples: list[float]) -> str:
    if not samples:
        return "-"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:.0f} / {p95 * 1000:.0f}"


def open_testbed(kind: str, stack: contextlib.ExitStack, work: Path) -> CloudTestbed:
    module, function = TESTBEDS[kind].split(":")
    opener = getattr(importlib.import_module(module), function)
    testbed: CloudTestbed = opener(stack, work)
    return testbed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--providers", default=",".join(TESTBEDS))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_cloud needs root (loop devices and mounts)")
    work = Path(tempfile.mkdtemp(prefix="orlop-bench-cloud-"))
    results: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, str] = {}
    try:
        loopfile = Harness(LoopFileBackend(BackendContext("loop", str(work / "loop"))), "loop")
        results["loopfile"] = {}
        for kind in [k.strip() for k in args.providers.split(",") if k.strip()]:
            with contextlib.ExitStack() as stack:
                try:
                    testbed = open_testbed(kind, stack, work / kind)
                except Exception as error:  # a missing client or server: say so, go on
                    skipped[kind] = f"{type(error).__name__}: {error}"
                    continue
                host = testbed.host()
                orlop = Harness(backend_for(host), unique(kind))
                stack.callback(orlop.close)
                mine, theirs = results.setdefault(kind, {}), results.setdefault(f"{kind} bare", {})
                for round_ in range(args.rounds):  # interleaved: drift hits every column
                    options = dict(testbed.create_options)
                    lifecycle(orlop, f"bench-{kind}-{round_}", options, mine)
                    bare(host, options, work / kind / f"bare-{round_}", theirs)
                    floor = results["loopfile"]
                    lifecycle(loopfile, f"bench-loop-{kind}-{round_}", {"size": "1G"}, floor)
        loopfile.close()
    finally:
        unmount_all_under(str(work))
        shutil.rmtree(work, ignore_errors=True)
    print(f"Cloud-disk lifecycle, {args.rounds} rounds per provider, ext4")
    print("milliseconds, p50 / p95; `bare`: the provider's own calls + mkfs + mount by hand\n")
    columns = [name for name in results if name != "loopfile"] + ["loopfile"]
    width = max(16, *(len(name) + 2 for name in columns))
    header = f"{'step':<22}" + "".join(f"{name:>{width}}" for name in columns)
    print(header)
    print("-" * len(header))
    for step in STEPS:
        row = "".join(f"{summary(results[n].get(step, [])):>{width}}" for n in columns)
        print(f"{step:<22}" + row)
    for kind, why in skipped.items():
        print(f"\nskipped {kind}: {why}")


if __name__ == "__main__":
    main()
