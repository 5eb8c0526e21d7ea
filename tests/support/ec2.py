"""A real EC2-API server on 127.0.0.1 (moto in server mode) and the node side of EC2 instances.

There is no AWS here. moto answers the EC2 API; everything on the host stays real: when
moto reports a volume attached to a simulated instance, `SimulatedNode` presents a real loop
device where a real instance would show it — a Xen name (/dev/xvdf) or a Nitro NVMe by-id
link carrying the volume ID — and removes it on detach. The loop devices belong to a
`LoopPool`, one sparse image per EBS volume ID, kept across attachments (and hosts), so the
data written on one attachment is there on the next, as on EBS.

`ThrottlingProxy` is a faithful HTTP front for moto that answers chosen EC2 actions with
`RequestLimitExceeded` (HTTP 503, EC2's XML error body) a given number of times.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orlop.backends.base import BackendContext
from orlop.backends.block.ebs import EbsBackend, EbsProvider
from orlop.backends.block.ebs_devices import nvme_link
from orlop.host.run import run

REGION = "us-east-1"
ZONE = "us-east-1a"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
_CA_VARIABLES = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def plain_http_env() -> dict[str, str]:
    """The environment without this machine's CA-bundle variables (the server is plain HTTP)."""
    env = {k: v for k, v in os.environ.items() if k not in _CA_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def unset_ca_bundles() -> None:
    for variable in _CA_VARIABLES:
        os.environ.pop(variable, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MotoServer:
    """`moto_server` as a subprocess on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix="orlop-moto-", suffix=".log")
        os.close(fd)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        server = Path(sys.executable).with_name("moto_server")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=plain_http_env(),
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {Path(self.log_path).read_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1),
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError("moto_server did not answer within 30s")

    def client(self, url: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=url or self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)


class LoopPool:
    """One sparse image and loop device per EBS volume ID, for the whole test."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orlop-ebs-images-"))
        self.devices: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self.lock = threading.Lock()

    def device_for(self, volume_id: str, size_gib: int) -> str:
        with self.lock:
            if volume_id not in self.devices:
                image = self.root / f"{volume_id}.img"
                with open(image, "wb") as file:
                    file.truncate(size_gib * 1024**3)
                device = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
                self.devices[volume_id] = device
                self.sizes[volume_id] = size_gib
            elif size_gib > self.sizes[volume_id]:  # ModifyVolume grew it: so does the disk
                with open(self.root / f"{volume_id}.img", "r+b") as file:
                    file.truncate(size_gib * 1024**3)
                run(["losetup", "--set-capacity", self.devices[volume_id]])
                self.sizes[volume_id] = size_gib
            return self.devices[volume_id]

    def destroy(self) -> None:
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                run(["losetup", "-d", device])
        shutil.rmtree(self.root, ignore_errors=True)


class SimulatedNode(threading.Thread):
    """The node side of one instance: devices appear for attached volumes, go on detach.

    `style` is "xen" (a /dev/xvdX link under `device_root`) or "nvme" (a by-id link whose
    name carries the volume ID). With `present=False` nothing ever appears: a broken host.
    """

    def __init__(
        self,
        client: Any,
        instance_id: str,
        pool: LoopPool,
        root: Path,
        style: str = "nvme",
        present: bool = True,
    ) -> None:
        super().__init__(daemon=True, name=f"node-{instance_id}")
        self.client = client
        self.instance_id = instance_id
        self.pool = pool
        self.device_root = root / "dev"
        self.by_id_dir = root / "by-id"
        self.device_root.mkdir(parents=True, exist_ok=True)
        self.by_id_dir.mkdir(parents=True, exist_ok=True)
        self.style = style
        self.present = present
        self.shown: dict[str, Path] = {}  # volume ID → link
        self.appeared: Counter[str] = Counter()
        self.stopping = threading.Event()

    def settings(self) -> dict[str, str]:
        return {"device_root": str(self.device_root), "by_id_dir": str(self.by_id_dir)}

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            with contextlib.suppress(Exception):
                self.sync()

    def sync(self) -> None:
        volumes = self.client.describe_volumes()["Volumes"]
        attached: dict[str, tuple[str, int]] = {}
        for volume in volumes:
            for attachment in volume.get("Attachments", []):
                if (
                    attachment["InstanceId"] == self.instance_id
                    and attachment["State"] == "attached"
                    and attachment["Device"].startswith("/dev/xvd")
                ):
                    attached[volume["VolumeId"]] = (attachment["Device"], volume["Size"])
        for volume_id in list(self.shown):
            if volume_id not in attached:
                self.shown.pop(volume_id).unlink(missing_ok=True)
        if not self.present:
            return
        for volume_id, (device_name, size) in attached.items():
            device = self.pool.device_for(volume_id, size)
            if volume_id in self.shown:
                continue
            if self.style == "xen":
                link = self.device_root / os.path.basename(device_name)
            else:
                link = Path(nvme_link(str(self.by_id_dir), volume_id))
            link.unlink(missing_ok=True)
            link.symlink_to(device)
            self.shown[volume_id] = link
            self.appeared[volume_id] += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        for link in self.shown.values():
            link.unlink(missing_ok=True)


def run_instance(client: Any, zone: str = ZONE) -> str:
    found = client.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone}
    )
    return str(found["Instances"][0]["InstanceId"])


def namespace_volumes(client: Any, namespace: str) -> list[dict[str, Any]]:
    """The EBS volumes carrying Orlop's tag for `namespace`."""
    filters = [{"Name": "tag:orlop:namespace", "Values": [namespace]}]
    return list(client.describe_volumes(Filters=filters)["Volumes"])


class ThrottlingProxy(http.server.ThreadingHTTPServer):
    """Forwards to moto, but answers `throttle[action]` requests with RequestLimitExceeded
    (HTTP 503) and `fail[action]` ones with InternalError (HTTP 500) without forwarding them;
    `fail_after[action]` ones are forwarded and still answered 500."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.throttle: Counter[str] = Counter()  # action → how many more to refuse
        self.fail: Counter[str] = Counter()  # action → how many more to answer HTTP 500
        # action → how many more to forward, and then answer HTTP 500 anyway: the call took
        # effect but the caller hears it failed (as moto does for some attach/detach calls).
        self.fail_after: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


THROTTLED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>orlop-test-throttle</RequestID></Response>"
)


INTERNAL_ERROR_BODY = THROTTLED_BODY.replace(b"RequestLimitExceeded", b"InternalError").replace(
    b"Request limit exceeded.", b"An internal error has occurred."
)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: ThrottlingProxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
        for refusals, status, answer in (
            (self.server.throttle, 503, THROTTLED_BODY),
            (self.server.fail, 500, INTERNAL_ERROR_BODY),
        ):
            if refusals[action] > 0:
                refusals[action] -= 1
                self.server.refused[action] += 1
                self._answer(status, answer, "text/xml")
                return
        self.server.forwarded[action] += 1
        lie = self.server.fail_after[action] > 0
        if lie:
            self.server.fail_after[action] -= 1
        request = urllib.request.Request(
            self.server.upstream + self.path, data=body, method="POST", headers=dict(self.headers)
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                body = response.read()
                if lie:
                    self._answer(500, INTERNAL_ERROR_BODY, "text/xml")
                    return
                self._answer(response.status, body, response.headers["Content-Type"])
        except urllib.error.HTTPError as error:
            self._answer(error.code, error.read(), error.headers["Content-Type"])

    def _answer(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class SimulatedHost:
    """One EC2 instance as Orlop sees it: its node side, and the settings for its driver."""

    instance_id: str
    node: SimulatedNode
    settings: dict[str, Any]
    state_dir: Path
    providers: list[EbsProvider] = field(default_factory=list)

    def provider(self, **overrides: Any) -> EbsProvider:
        context = BackendContext(
            "ebs-" + self.instance_id, str(self.state_dir), settings={**self.settings, **overrides}
        )
        provider = EbsProvider(context)
        self.providers.append(provider)
        return provider

    def backend(self, **overrides: Any) -> EbsBackend:
        """The EBS driver as the daemon builds it: the block layer over the provider."""
        context = BackendContext(
            "ebs-" + self.instance_id, str(self.state_dir), settings={**self.settings, **overrides}
        )
        return EbsBackend(context)

    def driver_config(self, **options: str) -> dict[str, Any]:
        """This host's driver entry for an orlop.yaml."""
        return {"backend": "ebs", "options": options, "settings": self.settings}
