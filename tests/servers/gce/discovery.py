"""The Compute v1 discovery document as a judge of the GCE test server's traffic.

`googleapiclient/discovery_cache/documents/compute.v1.json` (shipped in
google-api-python-client) describes every method: HTTP verb, path, parameters with types and
patterns, request and response schemas. `Discovery.match` finds the method a request calls;
`check_request` and `check_response` list what does not fit (an unknown field, a wrong type,
a value outside an enum, a parameter the method lacks): the server records them and the
tests fail on any.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Any

SERVICE_PATH = "/compute/v1/"


@dataclass(frozen=True)
class Method:
    id: str  # compute.disks.insert
    http_method: str
    path: str
    regex: re.Pattern[str]
    literals: int  # literal path segments: a more specific template wins
    spec: dict[str, Any]


@functools.cache
def document() -> dict[str, Any]:
    import googleapiclient

    path = os.path.join(
        os.path.dirname(googleapiclient.__file__), "discovery_cache/documents/compute.v1.json"
    )
    with open(path, encoding="utf-8") as file:
        doc: dict[str, Any] = json.load(file)
    return doc


class Discovery:
    def __init__(self) -> None:
        self.doc = document()
        self.schemas: dict[str, Any] = self.doc["schemas"]
        self.methods: list[Method] = []
        self._collect(self.doc["resources"])
        self.methods.sort(key=lambda m: -m.literals)

    def _collect(self, resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for spec in resource.get("methods", {}).values():
                path = spec.get("flatPath") or spec["path"]
                pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(path))
                literals = sum(1 for part in path.split("/") if not part.startswith("{"))
                self.methods.append(
                    Method(
                        spec["id"],
                        spec["httpMethod"],
                        path,
                        re.compile(pattern + r"\Z"),
                        literals,
                        spec,
                    )
                )
            self._collect(resource.get("resources", {}))

    def match(self, verb: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The method a request calls and its path parameters, or None."""
        if not path.startswith(SERVICE_PATH):
            return None
        rest = path[len(SERVICE_PATH) :]
        for method in self.methods:
            if method.http_method != verb:
                continue
            found = method.regex.match(rest)
            if found:
                names = re.findall(r"\{([^}]+)\}", method.path)
                return method, dict(zip(names, found.groups(), strict=True))
        return None

    # parameters --------------------------------------------------------------------------
    def check_parameters(
        self, method: Method, path_params: dict[str, str], query: dict[str, list[str]]
    ) -> list[str]:
        problems = []
        declared: dict[str, Any] = method.spec.get("parameters", {})
        standard: dict[str, Any] = self.doc["parameters"]
        for name, spec in declared.items():
            if spec.get("required") and name not in path_params and name not in query:
                problems.append(f"{method.id}: required parameter {name} missing")
        for name, value in path_params.items():
            problems += self._check_parameter(method.id, name, declared.get(name), [value])
        for name, values in query.items():
            # "$alt" is the system-parameter spelling of "alt" that Google's clients send.
            spec = declared.get(name) or standard.get(name.removeprefix("$"))
            if spec is None:
                problems.append(f"{method.id}: unknown query parameter {name}")
                continue
            problems += self._check_parameter(method.id, name, spec, values)
        return problems

    def _check_parameter(
        self, where: str, name: str, spec: dict[str, Any] | None, values: list[str]
    ) -> list[str]:
        if spec is None:
            return [f"{where}: unknown parameter {name}"]
        if len(values) > 1 and not spec.get("repeated"):
            return [f"{where}: parameter {name} given {len(values)} times"]
        problems = []
        for value in values:
            kind = spec.get("type")
            if kind == "integer" and not re.fullmatch(r"-?[0-9]+", value):
                problems.append(f"{where}: parameter {name}={value!r} is not an integer")
            if kind == "boolean" and value not in ("true", "false"):
                problems.append(f"{where}: parameter {name}={value!r} is not a boolean")
            if "enum" in spec and name != "alt" and value not in spec["enum"]:
                problems.append(f"{where}: parameter {name}={value!r} not in {spec['enum']}")
            pattern = spec.get("pattern")
            if pattern and not re.fullmatch(pattern, value):
                problems.append(f"{where}: parameter {name}={value!r} does not match {pattern}")
        return problems

    # bodies ------------------------------------------------------------------------------
    def check_request(self, method: Method, body: Any) -> list[str]:
        ref = method.spec.get("request", {}).get("$ref")
        if ref is None:
            return [] if body is None else [f"{method.id}: takes no request body"]
        if body is None:
            return [f"{method.id}: request body {ref} missing"]
        return self.check_value(body, {"$ref": ref}, f"{method.id} request", output=False)

    def check_response(self, method: Method, body: Any) -> list[str]:
        ref = method.spec.get("response", {}).get("$ref")
        if ref is None:
            return [] if not body else [f"{method.id}: answers no body"]
        return self.check_value(body, {"$ref": ref}, f"{method.id} response", output=True)

    def check_value(
        self, value: Any, schema: dict[str, Any], where: str, output: bool
    ) -> list[str]:
        if "$ref" in schema:
            return self.check_value(value, self.schemas[schema["$ref"]], where, output)
        kind = schema.get("type")
        if kind == "object":
            return self._check_object(value, schema, where, output)
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where}: {value!r} is not an array"]
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self.check_value(item, schema["items"], f"{where}[{index}]", output)
            return problems
        return self._check_scalar(value, schema, where, output)

    def _check_object(
        self, value: Any, schema: dict[str, Any], where: str, output: bool
    ) -> list[str]:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        properties: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        problems: list[str] = []
        for key, item in value.items():
            if key in properties:
                problems += self.check_value(item, properties[key], f"{where}.{key}", output)
            elif extra is not None:
                problems += self.check_value(item, extra, f"{where}[{key!r}]", output)
            else:
                problems.append(f"{where}: unknown field {key}")
        return problems

    def _check_scalar(
        self, value: Any, schema: dict[str, Any], where: str, output: bool
    ) -> list[str]:
        kind, form = schema.get("type"), schema.get("format")
        if kind == "string":
            if form in ("int64", "uint64"):
                # JSON carries 64-bit integers as strings; the API also takes numbers in.
                if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
                    return []
                if not output and isinstance(value, int) and not isinstance(value, bool):
                    return []
                return [f"{where}: {value!r} is not a {form} string"]
            if not isinstance(value, str):
                return [f"{where}: {value!r} is not a string"]
            if "enum" in schema and value not in schema["enum"]:
                return [f"{where}: {value!r} is not one of {schema['enum']}"]
            return []
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return [f"{where}: {value!r} is not an integer"]
            if form == "uint32" and value < 0:
                return [f"{where}: {value!r} is negative"]
            return []
        if kind == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return [] if ok else [f"{where}: {value!r} is not a number"]
        if kind == "boolean":
            return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
        if kind == "any":
            return []
        return [f"{where}: schema type {kind!r} unknown to the checker"]
