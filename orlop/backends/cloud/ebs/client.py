"""The EC2 API as the EBS provider uses it: credentials, error kinds, IMDSv2 (the settings
are `settings.py`).

Every call goes through `Ec2.call`, which turns botocore's exceptions into `CloudError`s of
the layer's kinds with a message a user can act on; the layer decides what to retry.
botocore's own retries are off: an unexpected server error on a mutating call (AttachVolume
answering 500) is a failure to examine, never something to repeat blindly. Credentials come
from the driver settings or the standard AWS chain; never logged, never in a message.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.ebs.settings import EbsSettings as EbsSettings
from orlop.backends.settings import secret_value
from orlop.core.model import BackendError, ConfigError

log = logging.getLogger(__name__)

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
NOT_FOUND_CODES = frozenset(
    {
        "InvalidVolume.NotFound",
        "InvalidSnapshot.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidZone.NotFound",
    }
)
IN_USE_CODES = frozenset({"VolumeInUse"})


class Ec2:
    """A thread-safe EC2 client that answers in the layer's error kinds."""

    def __init__(self, settings: EbsSettings, region: str | None) -> None:
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
            aws_secret_access_key=secret_value(s.secret_access_key),
            aws_session_token=secret_value(s.session_token),
            profile_name=s.profile,
            region_name=self.region,
        )
        if session.region_name is None:
            raise ConfigError(
                "no AWS region: set `region` in the EBS driver settings "
                "(or AWS_DEFAULT_REGION, or run on EC2 so the zone gives it)"
            )
        config = Config(
            retries={"total_max_attempts": 1},  # the layer retries, knowing which calls may
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="orlop",
        )
        return session.client("ec2", endpoint_url=s.endpoint_url, config=config)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call an EC2 operation (CamelCase name); CloudError on any failure."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        method = getattr(self.client(), _snake(operation))
        try:
            result: dict[str, Any] = method(**params)
            return result
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = error.response.get("Error", {}).get("Message") or ""
            raise _client_error(operation, code, status, message) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise CloudError(
                "no AWS credentials: set access_key_id and secret_access_key in the EBS "
                "driver settings, or provide them through the standard AWS chain "
                "(environment, ~/.aws/credentials, an instance profile)",
                ErrorKind.CREDENTIALS,
            ) from None
        except ConnectionError as error:
            where = self.settings.endpoint_url or f"EC2 in {self.region}"
            raise CloudError(
                f"EC2 {operation}: cannot reach {where}: {error}", ErrorKind.UNREACHABLE
            ) from None
        except HTTPClientError as error:
            # The request may have reached EC2 and its answer was lost (the connection
            # closed, the read timed out): a read is safe to repeat, a write is examined.
            raise CloudError(f"EC2 {operation}: {error}", ErrorKind.RETRYABLE) from None
        except BotoCoreError as error:
            raise CloudError(f"EC2 {operation}: {error}", ErrorKind.FAILED) from None

    def paginate(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.call(operation, **params, **({"NextToken": token} if token else {}))
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items


def _client_error(operation: str, code: str, status: int | None, message: str) -> CloudError:
    if code in CREDENTIAL_CODES:
        return CloudError(
            f"EC2 refused the credentials for {operation} ({code}): {message}",
            ErrorKind.CREDENTIALS,
            code,
        )
    if code in THROTTLING_CODES:
        kind = ErrorKind.THROTTLED
    elif code in NOT_FOUND_CODES:
        kind = ErrorKind.NOT_FOUND
    elif code in IN_USE_CODES:
        kind = ErrorKind.IN_USE
    elif code.startswith(("InvalidParameter", "MissingParameter")) or code.endswith("Malformed"):
        kind = ErrorKind.INVALID
    elif (status or 0) >= 500:
        kind = ErrorKind.RETRYABLE
    else:
        kind = ErrorKind.FAILED
    return CloudError(f"EC2 {operation} failed ({code or f'HTTP {status}'}): {message}", kind, code)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


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
