"""Compute Engine's refusals as CloudErrors of the layer's few kinds.

GCE answers a refused request with an HTTP status and `error.errors[].reason` (notFound,
resourceInUseByAnotherResource, rateLimitExceeded, …); an operation that fails later carries
`error.errors[].code` (RESOURCE_NOT_FOUND, RESOURCE_IN_USE_BY_ANOTHER_RESOURCE, …) and
`httpErrorStatusCode`. Both are mapped here, the holder of a disk in use taken from the
message ("… is already being used by 'projects/p/zones/z/instances/NAME'").
"""

from __future__ import annotations

import re
from typing import Any

from orlop.backends.cloud.api import CloudError, ErrorKind

_HOLDER = re.compile(r"(?:being used by|in use by) '?(?:\S*/)?instances/([a-z0-9-]+)'?")

_BY_REASON = {
    "notFound": ErrorKind.NOT_FOUND,
    "resourceInUseByAnotherResource": ErrorKind.IN_USE,
    "rateLimitExceeded": ErrorKind.THROTTLED,
    "userRateLimitExceeded": ErrorKind.THROTTLED,
    "invalid": ErrorKind.INVALID,
    "badRequest": ErrorKind.INVALID,
    "invalidParameter": ErrorKind.INVALID,
    "required": ErrorKind.INVALID,
    "conditionNotMet": ErrorKind.RETRYABLE,
    "backendError": ErrorKind.RETRYABLE,
    "internalError": ErrorKind.RETRYABLE,
    "resourceNotReady": ErrorKind.RETRYABLE,
    "authError": ErrorKind.CREDENTIALS,
    "forbidden": ErrorKind.CREDENTIALS,
    "insufficientPermissions": ErrorKind.CREDENTIALS,
    "accessNotConfigured": ErrorKind.CREDENTIALS,
    "quotaExceeded": ErrorKind.FAILED,  # a resource quota (disks, GB): waiting will not help
}
_BY_OPERATION_CODE = {
    "RESOURCE_NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE": ErrorKind.IN_USE,
    "RATE_LIMIT_EXCEEDED": ErrorKind.THROTTLED,
    "INTERNAL_ERROR": ErrorKind.RETRYABLE,
    "RESOURCE_NOT_READY": ErrorKind.RETRYABLE,
    "INVALID_USAGE": ErrorKind.INVALID,
    "INVALID_FIELD_VALUE": ErrorKind.INVALID,
    "BAD_REQUEST": ErrorKind.INVALID,
    "PERMISSIONS_ERROR": ErrorKind.CREDENTIALS,
}


def kind_for_status(status: int) -> ErrorKind:
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 429:
        return ErrorKind.THROTTLED
    if status in (401, 403):
        return ErrorKind.CREDENTIALS
    if status in (400, 422):
        return ErrorKind.INVALID
    if status in (412, 500, 502, 503, 504):
        return ErrorKind.RETRYABLE
    return ErrorKind.FAILED


def holder_in(message: str) -> str | None:
    match = _HOLDER.search(message)
    return match.group(1) if match else None


def from_response(what: str, status: int, errors: list[dict[str, Any]], message: str) -> CloudError:
    """A refused request: `errors` as GCE's `error.errors` list."""
    reasons = [str(e.get("reason", "")) for e in errors]
    kind = next((_BY_REASON[r] for r in reasons if r in _BY_REASON), kind_for_status(status))
    if status == 401:  # its reason is "required" (a credential), not a missing field
        kind = ErrorKind.CREDENTIALS
    detail = next((str(e["message"]) for e in errors if e.get("message")), message)
    reason = next((r for r in reasons if r), str(status))
    holder = holder_in(detail) if kind is ErrorKind.IN_USE else None
    return CloudError(f"Compute Engine refused to {what}: {detail}", kind, reason, holder)


def from_operation(what: str, status: int, errors: list[tuple[str, str]]) -> CloudError:
    """An operation that ended in error: `errors` as (code, message) pairs."""
    codes = [code for code, _ in errors]
    kind = next((_BY_OPERATION_CODE[c] for c in codes if c in _BY_OPERATION_CODE), None)
    if kind is None:
        kind = kind_for_status(status) if status else ErrorKind.FAILED
    detail = "; ".join(message for _, message in errors if message) or "operation failed"
    holder = holder_in(detail) if kind is ErrorKind.IN_USE else None
    return CloudError(
        f"Compute Engine could not {what}: {detail}", kind, codes[0] if codes else "", holder
    )
