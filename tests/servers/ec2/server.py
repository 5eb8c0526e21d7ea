"""A real EC2-API server on 127.0.0.1 (moto in server mode) and the node side of EC2 instances.

There is no AWS here. moto answers the EC2 API; everything on the host stays real: when
moto reports a volume attached to a simulated instance, `SimulatedNode` presents a real loop
device where a real instance would show it — a Xen name (/dev/xvdf) or a Nitro NVMe by-id
link carrying the volume ID — and removes it on detach, through the device presenter every
cloud's tests share (tests/support/cloud/presenter.py).

`Ec2Proxy` is a faithful HTTP front for moto. It does what EC2 does and moto does not: an
AttachVolume of a volume that is attached to an instance is refused with `VolumeInUse`
(HTTP 400, EC2's XML error body), atomically. And it answers chosen EC2 actions with
`RequestLimitExceeded` (HTTP 503) or `InternalError` (HTTP 500) a given number of times.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orlop.backends.base import BackendContext
from orlop.backends.cloud.ebs.backend import EbsBackend
from orlop.backends.cloud.ebs.devices import nvme_link
from orlop.backends.cloud.layer import CloudDisks
from tests.support.cloud.presenter import DevicePresenter, PollingPresenter, Presented
from tests.support.cloud.testbed import CloudHost

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


class SimulatedNode:
    """The node side of one instance: devices appear for attached volumes, go on detach.

    `style` is "xen" (a /dev/xvdX link under `device_root`) or "nvme" (a by-id link whose
    name carries the volume ID). With `present=False` nothing ever appears: a broken host.
    The devices are the shared `DevicePresenter`'s, kept in step with moto by polling.
    """

    def __init__(
        self,
        client: Any,
        instance_id: str,
        presenter: DevicePresenter,
        root: Path,
        style: str = "nvme",
        present: bool = True,
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.device_root = root / "dev"
        self.by_id_dir = root / "by-id"
        self.device_root.mkdir(parents=True, exist_ok=True)
        self.by_id_dir.mkdir(parents=True, exist_ok=True)
        self.style = style
        self.appeared: Counter[str] = Counter()  # volume ID → times it appeared here
        self.poller = PollingPresenter(presenter, self.attached, present=present)

    def settings(self) -> dict[str, str]:
        return {"device_root": str(self.device_root), "by_id_dir": str(self.by_id_dir)}

    def attached(self) -> list[Presented]:
        shown = []
        for volume in self.client.describe_volumes()["Volumes"]:
            for attachment in volume.get("Attachments", []):
                if (
                    attachment["InstanceId"] == self.instance_id
                    and attachment["State"] == "attached"
                    and attachment["Device"].startswith("/dev/xvd")
                ):
                    if self.style == "xen":
                        link = str(self.device_root / os.path.basename(attachment["Device"]))
                    else:
                        link = nvme_link(str(self.by_id_dir), volume["VolumeId"])
                    size = int(volume["Size"]) * 1024**3
                    shown.append(Presented(volume["VolumeId"], size, (link,)))
        for disk in shown:
            if disk.key not in self.poller.mine:
                self.appeared[disk.key] += 1
        return shown

    def start(self) -> None:
        self.poller.start()

    def stop(self) -> None:
        self.poller.stop()


def run_instance(client: Any, zone: str = ZONE) -> str:
    found = client.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone}
    )
    return str(found["Instances"][0]["InstanceId"])


def namespace_volumes(client: Any, namespace: str) -> list[dict[str, Any]]:
    """The EBS volumes carrying Orlop's tag for `namespace`."""
    filters = [{"Name": "tag:orlop:namespace", "Values": [namespace]}]
    return list(client.describe_volumes(Filters=filters)["Volumes"])


class Ec2Proxy(http.server.ThreadingHTTPServer):
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
        self.attach_lock = threading.Lock()  # EC2 decides one AttachVolume at a time
        self._client: Any = None
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def upstream_client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "ec2",
                region_name=REGION,
                endpoint_url=self.upstream,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._client

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


def in_use_body(volume_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>VolumeInUse</Code><Message>{volume_id} is already attached to an instance"
        "</Message></Error></Errors><RequestID>orlop-test-in-use</RequestID></Response>"
    ).encode()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: Ec2Proxy

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
        if action == "AttachVolume":
            with self.server.attach_lock:
                volume_id = urllib.parse.parse_qs(body.decode()).get("VolumeId", [""])[0]
                if self._attached(volume_id):
                    self.server.refused[action] += 1
                    self._answer(400, in_use_body(volume_id), "text/xml")
                    return
                self._forward(action, body)
            return
        self._forward(action, body)

    def _attached(self, volume_id: str) -> bool:
        client = self.server.upstream_client()
        try:
            volumes = client.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        except Exception:
            return False  # let moto answer for an unknown volume
        return any(
            a.get("State") in ("attaching", "attached", "busy")
            for v in volumes
            for a in v.get("Attachments", [])
        )

    def _forward(self, action: str, body: bytes) -> None:
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
    providers: list[CloudDisks] = field(default_factory=list)

    def provider(self, **overrides: Any) -> CloudDisks:
        """The cloud-disk layer over EBS: the block layer's device provider."""
        provider = self.backend(**overrides).provider
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


class EbsTestbed:
    """EC2 (moto behind the refusing proxy) as a CloudTestbed for the conformance suite."""

    kind = "ebs"
    create_options = {"size": "1G"}
    grow_to = 2 * 1024**3

    def __init__(self, make_host: Callable[..., SimulatedHost], moto: MotoServer) -> None:
        self.make_host = make_host
        self.moto = moto

    def host(self) -> CloudHost:
        made = self.make_host()
        return CloudHost(made.instance_id, "ebs", made.settings, made.state_dir)

    def cloud_disks(self, namespace: str) -> list[dict[str, Any]]:
        found = []
        for volume in namespace_volumes(self.moto.client(), namespace):
            tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
            attached = [
                a["InstanceId"] for a in volume.get("Attachments", []) if a["State"] != "detached"
            ]
            found.append(
                {
                    "id": volume["VolumeId"],
                    "volume": tags.get("orlop:volume"),
                    "attached_to": attached,
                }
            )
        return found

    def delete_behind_orlop(self, disk_id: str) -> None:
        self.moto.client().delete_volume(VolumeId=disk_id)


def open_ebs_testbed(stack: contextlib.ExitStack, work: Path) -> EbsTestbed:
    """An EbsTestbed outside pytest (for bench/bench_cloud.py); `stack` stops it all."""
    unset_ca_bundles()
    moto = MotoServer().start()
    stack.callback(moto.stop)
    proxy = Ec2Proxy(moto.url)
    stack.callback(proxy.stop)
    presenter = DevicePresenter()
    stack.callback(presenter.destroy)
    namespace = f"bench-{os.getpid()}-{time.monotonic_ns()}"

    def make_host() -> SimulatedHost:
        client = moto.client()
        instance_id = run_instance(client)
        node = SimulatedNode(client, instance_id, presenter, work / instance_id)
        node.start()
        stack.callback(node.stop)
        settings: dict[str, Any] = {
            **CREDENTIALS,
            "region": REGION,
            "endpoint_url": proxy.url,
            "instance_id": instance_id,
            "availability_zone": ZONE,
            "namespace": namespace,
            **node.settings(),
        }
        return SimulatedHost(instance_id, node, settings, work / instance_id / "state")

    return EbsTestbed(make_host, moto)
