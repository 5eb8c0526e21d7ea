"""A fault proxy: an HTTP(S) front for a cloud's test server that misbehaves on purpose.

The official clients talk to it as they would to the cloud; it forwards every request to the
test server, except those a fault is armed for. A fault is armed on command (`inject`: the
next `times` requests that `match`) or by a seeded schedule (`schedule`: each matching request
meets a fault with probability `rate`, drawn from a `random.Random(seed)`, so a run repeats).

The faults (`Fault`):

    throttle      429 with Retry-After and the cloud's own throttling body; not forwarded
    error_500     500 with the cloud's error body; not forwarded
    error_503     503 with the cloud's error body; not forwarded
    drop          the connection closes before any answer; not forwarded
    slow          forwarded after `delay` seconds
    lose_answer   forwarded, the server acts, and the connection closes before the answer:
                  the call happened, the caller never hears so

Error bodies are the cloud's shape (`SHAPES`): EC2's XML `<Response><Errors>`, Google's
`{"error": {…}}`, DigitalOcean's `{"id", "message"}`, OpenStack's `{"overLimit"|"computeFault"}`,
PowerFlex's `{"message", "httpStatusCode", "errorCode"}`, vSphere's SOAP fault.
`injected` lists every fault met (the call's label and the fault), for a run's step log.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Fault(StrEnum):
    THROTTLE = "throttle"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    DROP = "drop"
    SLOW = "slow"
    LOSE_ANSWER = "lose_answer"


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it: for `match` predicates and labels."""

    method: str
    path: str
    body: bytes

    @property
    def ec2_action(self) -> str:
        """EC2's Action parameter (in the form body), "" for other APIs."""
        return urllib.parse.parse_qs(self.body.decode(errors="replace")).get("Action", [""])[0]

    @property
    def label(self) -> str:
        return self.ec2_action or f"{self.method} {self.path.split('?')[0]}"


Match = Callable[[Request], bool]


def every(request: Request) -> bool:
    return True


def ec2_action(*actions: str) -> Match:
    """Requests of these EC2 actions (AttachVolume, CreateVolume, DescribeVolumes, …)."""
    return lambda request: request.ec2_action in actions


def http_call(method: str, path_contains: str = "") -> Match:
    """REST requests of `method` whose path contains `path_contains`."""
    return lambda request: request.method == method and path_contains in request.path


def writes(request: Request) -> bool:
    """Calls that change something (REST: not GET; EC2: not Describe*)."""
    action = request.ec2_action
    if action:
        return not action.startswith("Describe")
    return request.method not in ("GET", "HEAD")


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


ErrorShape = Callable[[int, str], Answer]  # (status, message) → the cloud's error answer


def _ec2(status: int, message: str) -> Answer:
    code = {429: "RequestLimitExceeded", 503: "Unavailable"}.get(status, "InternalError")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return Answer(status, "text/xml;charset=UTF-8", body.encode())


def _google(status: int, message: str) -> Answer:
    reason, state = {
        429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"),
        503: ("backendError", "UNAVAILABLE"),
    }.get(status, ("backendError", "INTERNAL"))
    body = (
        f'{{"error": {{"code": {status}, "message": "{message}", "errors": [{{"message": '
        f'"{message}", "domain": "global", "reason": "{reason}"}}], "status": "{state}"}}}}'
    )
    return Answer(status, "application/json; charset=UTF-8", body.encode())


def _digitalocean(status: int, message: str) -> Answer:
    code = {429: "too_many_requests", 503: "service_unavailable"}.get(status, "server_error")
    body = f'{{"id": "{code}", "message": "{message}", "request_id": "{uuid.uuid4()}"}}'
    return Answer(status, "application/json; charset=utf-8", body.encode())


def _openstack(status: int, message: str) -> Answer:
    key = "overLimit" if status == 429 else "computeFault"
    body = f'{{"{key}": {{"code": {status}, "message": "{message}", "retryAfter": "1"}}}}'
    return Answer(status, "application/json", body.encode())


def _powerflex(status: int, message: str) -> Answer:
    body = f'{{"message": "{message}", "httpStatusCode": {status}, "errorCode": 0}}'
    return Answer(status, "application/json;charset=UTF-8", body.encode())


def _vsphere(status: int, message: str) -> Answer:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        f"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{message}"
        "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Answer(500 if status != 429 else 429, "text/xml; charset=utf-8", body.encode())


SHAPES: dict[str, ErrorShape] = {
    "ebs": _ec2,
    "gce": _google,
    "digitalocean": _digitalocean,
    "cinder": _openstack,
    "powerflex": _powerflex,
    "vsphere": _vsphere,
}
_MESSAGES = {
    429: "Request limit exceeded (injected by the fault proxy).",
    500: "An internal error has occurred (injected by the fault proxy).",
    503: "The service is unavailable (injected by the fault proxy).",
}


@dataclass
class _Armed:
    fault: Fault
    match: Match
    times: int
    delay: float


@dataclass
class _Schedule:
    rng: random.Random
    rate: float
    faults: Sequence[Fault]
    match: Match
    delay: float


@dataclass(frozen=True)
class Injected:
    at: float  # time.monotonic()
    label: str
    fault: Fault


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a caller that hung up first (its own timeout): nothing to tell anyone


class FaultProxy:
    """Listens on 127.0.0.1 (TLS with `tls=(cert, key)`), forwards to `upstream` (http:// or
    https://, the test server's certificate not checked: it is ours)."""

    def __init__(
        self,
        upstream: str,
        shape: str | ErrorShape,
        tls: tuple[Path, Path] | None = None,
        retry_after: int = 1,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_https = parts.scheme == "https"
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or (443 if self.upstream_https else 80)
        self.upstream_prefix = parts.path.rstrip("/")
        self.shape: ErrorShape = SHAPES[shape] if isinstance(shape, str) else shape
        self.retry_after = retry_after
        self.armed: list[_Armed] = []
        self.plan: _Schedule | None = None
        self.injected: list[Injected] = []
        self.forwarded: Counter[str] = Counter()  # label → requests that reached the server
        self.lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}{self.upstream_prefix}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="fault-proxy"
        )
        self._thread.start()

    # commands ----------------------------------------------------------------------------
    def inject(
        self, fault: Fault, match: Match = every, times: int = 1, delay: float = 2.0
    ) -> None:
        """The next `times` requests that `match` meet `fault` (`delay`: for SLOW)."""
        with self.lock:
            self.armed.append(_Armed(fault, match, times, delay))

    def schedule(
        self,
        seed: int,
        rate: float,
        faults: Sequence[Fault] = tuple(Fault),
        match: Match = every,
        delay: float = 1.0,
    ) -> None:
        """From now on each matching request meets a fault drawn from `faults` with
        probability `rate`, drawn from a generator seeded with `seed`."""
        with self.lock:
            self.plan = _Schedule(random.Random(seed), rate, tuple(faults), match, delay)

    def calm(self) -> None:
        """No more faults: disarm everything, end the schedule."""
        with self.lock:
            self.armed.clear()
            self.plan = None

    def met(self, fault: Fault | None = None, label: str | None = None) -> int:
        """How many requests met `fault` (any, if None), of `label` (any, if None)."""
        with self.lock:
            return sum(
                1
                for i in self.injected
                if (fault is None or i.fault is fault) and (label is None or i.label == label)
            )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # deciding ----------------------------------------------------------------------------
    def _decide(self, request: Request) -> tuple[Fault, float] | None:
        with self.lock:
            for armed in self.armed:
                if armed.times > 0 and armed.match(request):
                    armed.times -= 1
                    self.armed = [a for a in self.armed if a.times > 0]
                    return self._met(request, armed.fault, armed.delay)
            plan = self.plan
            if plan is not None and plan.match(request) and plan.rng.random() < plan.rate:
                return self._met(request, plan.rng.choice(plan.faults), plan.delay)
            return None

    def _met(self, request: Request, fault: Fault, delay: float) -> tuple[Fault, float]:
        self.injected.append(Injected(time.monotonic(), request.label, fault))
        return fault, delay

    def _forward(
        self, request: Request, headers: list[tuple[str, str]]
    ) -> tuple[Answer, list[tuple[str, str]]]:
        connection: http.client.HTTPConnection
        if self.upstream_https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection = http.client.HTTPSConnection(
                self.upstream_host, self.upstream_port, timeout=60, context=context
            )
        else:
            connection = http.client.HTTPConnection(
                self.upstream_host, self.upstream_port, timeout=60
            )
        try:
            connection.putrequest(request.method, request.path, skip_host=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(request.body)))
            connection.endheaders(request.body)
            response = connection.getresponse()
            body = response.read()
            with self.lock:
                self.forwarded[request.label] += 1
            return Answer(
                response.status,
                response.getheader("Content-Type") or "application/octet-stream",
                body,
            ), [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                request = Request(self.command, self.path, self._read_body())
                decided = proxy._decide(request)
                fault, delay = decided if decided else (None, 0.0)
                if fault is Fault.DROP:
                    self._hang_up()
                    return
                if fault in (Fault.THROTTLE, Fault.ERROR_500, Fault.ERROR_503):
                    status = {Fault.THROTTLE: 429, Fault.ERROR_500: 500}.get(fault, 503)
                    answer = proxy.shape(status, _MESSAGES[status])
                    extra = [("Retry-After", str(proxy.retry_after))] if status != 500 else []
                    self._answer(answer, extra)
                    return
                if fault is Fault.SLOW:
                    time.sleep(delay)
                try:
                    answer, headers = proxy._forward(request, list(self.headers.items()))
                except OSError:
                    self._hang_up()  # the server itself is gone: so is the answer
                    return
                if fault is Fault.LOSE_ANSWER:
                    self._hang_up()
                    return
                self._answer(answer, headers, replace=True)

            def _answer(
                self, answer: Answer, headers: list[tuple[str, str]], replace: bool = False
            ) -> None:
                self.send_response(answer.status)
                if not replace:
                    self.send_header("Content-Type", answer.content_type)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        return Handler
