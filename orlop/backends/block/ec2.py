"""The EC2 API as the EBS provider uses it: settings, credentials, retries, IMDSv2, waiting.

Every call goes through `Ec2.call`, which retries throttling (RequestLimitExceeded and its
relatives) with capped exponential backoff and jitter, and turns botocore's exceptions into
`Ec2Error`s whose message a user can act on. botocore's own retries are off: an unexpected
server error on a mutating call (AttachVolume answering 500) is a failure to examine, never
something to repeat blindly. Credentials come from the driver settings or the standard AWS
chain; they are never logged and never part of an error message.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from orlop.core.model import BackendError, ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "EC2ThrottledException",
        "SlowDown",
        "BandwidthLimitExceeded",
    }
)
CREDENTIAL_CODES = frozenset(
    {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch"}
)
_SAFE_TO_REPEAT = ("Describe", "Get", "List")


@dataclass(frozen=True, slots=True)
class Ec2Settings:
    """The EBS driver's `settings:` block, validated."""

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never shown
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    instance_id: str | None = None
    availability_zone: str | None = None
    imds_endpoint: str = "http://169.254.169.254"
    imds_timeout: float = 2.0
    namespace: str = "default"
    device_root: str = "/dev"
    by_id_dir: str = "/dev/disk/by-id"
    attach_timeout: float = 120.0
    detach_timeout: float = 120.0
    create_timeout: float = 300.0
    claim_settle: float = 1.0
    api_max_attempts: int = 10
    api_retry_base: float = 0.25
    api_retry_cap: float = 20.0
    poll_max: float = 2.0
    discover_interval: float = 30.0  # how often the daemon adopts volumes other hosts made

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> Ec2Settings:
        defaults = {f.name: f.default for f in fields(cls)}
        allowed = set(defaults)
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown EBS setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                f"allowed settings are {', '.join(sorted(allowed))}"
            )
        values: dict[str, Any] = {}
        for name, value in settings.items():
            default = defaults[name]
            try:
                if default is None or isinstance(default, str):
                    values[name] = None if value is None else str(value)
                else:
                    values[name] = type(default)(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"EBS setting {name} must be a {type(default).__name__}, not {value!r}"
                ) from None
        if bool(values.get("access_key_id")) != bool(values.get("secret_access_key")):
            raise ConfigError("EBS settings access_key_id and secret_access_key go together")
        return cls(**values)


class Ec2Error(BackendError):
    """An EC2 API call failed; `code` is AWS's error code ("" when there was no answer)."""

    def __init__(self, message: str, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Ec2:
    """A thread-safe EC2 client with Orlop's retry and error rules."""

    def __init__(self, settings: Ec2Settings, region: str | None) -> None:
        self.settings = settings
        self.region = region
        self._client: Any = None
        self._lock = threading.Lock()
        for noisy in ("botocore", "boto3", "urllib3"):
            logger = logging.getLogger(noisy)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)  # their debug output carries signed headers

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        s = self.settings
        session = boto3.session.Session(
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=s.secret_access_key,
            aws_session_token=s.session_token,
            profile_name=s.profile,
            region_name=self.region,
        )
        if session.region_name is None:
            raise ConfigError(
                "no AWS region: set `region` in the EBS driver settings "
                "(or AWS_DEFAULT_REGION, or run on EC2 so the zone gives it)"
            )
        config = Config(
            retries={"total_max_attempts": 1},  # Orlop retries, knowing which calls may repeat
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="orlop",
        )
        return session.client("ec2", endpoint_url=s.endpoint_url, config=config)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call an EC2 operation (CamelCase name), retrying throttling with backoff."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        method = getattr(self.client(), _snake(operation))
        repeatable = operation.startswith(_SAFE_TO_REPEAT)
        s = self.settings
        for attempt in range(1, s.api_max_attempts + 1):
            last = attempt == s.api_max_attempts
            try:
                result: dict[str, Any] = method(**params)
                return result
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                message = error.response.get("Error", {}).get("Message") or ""
                retry = code in THROTTLING_CODES or (repeatable and (status or 0) >= 500)
                if not retry or last:
                    raise _client_error(operation, code, status, message, attempt) from None
                log.info("EC2 %s: %s (attempt %d), retrying", operation, code, attempt)
            except (NoCredentialsError, PartialCredentialsError):
                raise ConfigError(
                    "no AWS credentials: set access_key_id and secret_access_key in the EBS "
                    "driver settings, or provide them through the standard AWS chain "
                    "(environment, ~/.aws/credentials, an instance profile)"
                ) from None
            except ConnectionError as error:
                if not repeatable or last:
                    where = s.endpoint_url or f"EC2 in {self.region}"
                    raise Ec2Error(f"EC2 {operation}: cannot reach {where}: {error}") from None
            except BotoCoreError as error:
                raise Ec2Error(f"EC2 {operation}: {error}") from None
            time.sleep(self.backoff(attempt))
        raise AssertionError("unreachable")

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff, as AWS recommends."""
        s = self.settings
        return random.uniform(0, min(s.api_retry_cap, s.api_retry_base * 2 ** (attempt - 1)))

    def paginate(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.call(operation, **params, **({"NextToken": token} if token else {}))
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items


def _client_error(
    operation: str, code: str, status: int | None, message: str, attempts: int
) -> Ec2Error:
    if code in CREDENTIAL_CODES:
        text = f"EC2 refused the credentials for {operation} ({code}): {message}"
    elif code in THROTTLING_CODES:
        text = (
            f"EC2 {operation} still throttled ({code}) after {attempts} attempts; try again later"
        )
    else:
        text = f"EC2 {operation} failed ({code or f'HTTP {status}'}): {message}"
    return Ec2Error(text, code, status)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, poll_max: float = 2.0
) -> T:
    """Poll `check` with growing pauses until it returns a value; BackendError after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, poll_max)


# IMDSv2 -------------------------------------------------------------------------------------
def instance_identity(endpoint: str, timeout: float) -> tuple[str, str]:
    """This instance's ID and availability zone from IMDSv2: PUT a token, then GET."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = endpoint.rstrip("/")
    try:
        token_request = urllib.request.Request(
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        with opener.open(token_request, timeout=timeout) as response:
            token = response.read().decode()

        def get(path: str) -> str:
            request = urllib.request.Request(
                f"{base}/latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
            )
            with opener.open(request, timeout=timeout) as answer:
                return str(answer.read().decode().strip())

        return get("instance-id"), get("placement/availability-zone")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise BackendError(
            f"cannot read this instance's identity from IMDSv2 at {base}: {error}; when not "
            "on EC2 (or with IMDS disabled) set instance_id and availability_zone in the "
            "EBS driver settings"
        ) from None
