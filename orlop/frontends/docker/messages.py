"""Request bodies of Docker's volume plugin protocol, checked strictly."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class NameRequest(_Request):
    Name: str


class CreateRequest(NameRequest):
    Opts: dict[str, str] | None = None


class MountRequest(NameRequest):
    ID: str = ""


def describe(error: ValidationError, endpoint: str) -> str:
    """One line saying what was wrong with a request body."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "json_invalid":
            problems.append("the body is not valid JSON")
        elif where:
            problems.append(f"field {where}: {item['msg']}")
        else:
            problems.append(item["msg"])
    return f"malformed request to {endpoint}: {'; '.join(problems)}"
