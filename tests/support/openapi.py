"""`docs/openapi.yaml` as a checker: is a response one the contract allows for that operation?

Schemas are validated with jsonschema_rs (JSON Schema 2020-12, as OpenAPI 3.1 uses), resolving `$ref`s against
the whole document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch")


def _escape(token: str) -> str:
    """A JSON pointer token, percent-encoded for use in a URI fragment (`{phone}` has braces)."""
    return quote(token.replace("~", "~0").replace("/", "~1"), safe="~")


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


class Contract:
    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self._root = {**self.spec, "$schema": "https://json-schema.org/draft/2020-12/schema"}
        self._validators: dict[str, jsonschema_rs.Validator] = {}

    def operations(self) -> list[tuple[str, str]]:
        """(METHOD, path template) for every operation the document declares."""
        return [
            (method.upper(), template)
            for template, item in self.spec["paths"].items()
            for method in METHODS
            if method in item
        ]

    def methods(self, template: str) -> set[str]:
        return {m.upper() for m in METHODS if m in self.spec["paths"][template]}

    def resolve(self, node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow a local `$ref` (components only), returning the target and its JSON pointer."""
        while "$ref" in node:
            ref = str(node["$ref"])
            assert ref.startswith("#/"), ref
            target: Any = self.spec
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node, pointer = target, ref
        return node, pointer

    def validator(self, pointer: str) -> jsonschema_rs.Validator:
        if pointer not in self._validators:
            self._validators[pointer] = jsonschema_rs.validator_for({**self._root, "$ref": pointer})
        return self._validators[pointer]

    def schema_errors(self, pointer: str, instance: object) -> list[str]:
        return [f"{e.message} at {list(e.instance_path)}" for e in self.validator(pointer).iter_errors(instance)][:3]

    def check(self, method: str, template: str, status: int, headers: Mapping[str, str], content: bytes) -> list[str]:
        """What is wrong with this response for `METHOD template`, by the document; empty when nothing."""
        operation = self.spec["paths"][template][method.lower()]
        documented = operation["responses"]
        if str(status) not in documented:
            return [f"status {status} is not documented (documented: {', '.join(sorted(documented))})"]
        base = f"#/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        return self.check_response(documented[str(status)], base, headers, content)

    def check_named(self, name: str, headers: Mapping[str, str], content: bytes) -> list[str]:
        """Check against `components/responses/<name>` (host-level answers such as 405)."""
        return self.check_response(
            self.spec["components"]["responses"][name], f"#/components/responses/{name}", headers, content
        )

    def check_response(
        self, response: dict[str, Any], pointer: str, headers: Mapping[str, str], content: bytes
    ) -> list[str]:
        response, pointer = self.resolve(response, pointer)
        lowered = {k.lower(): v for k, v in headers.items()}
        problems = self._check_headers(response, pointer, lowered)
        media_types: dict[str, Any] = response.get("content") or {}
        if not media_types:
            if content:
                problems.append(f"documented without a body, got {len(content)} bytes")
            return problems
        actual = _media(lowered.get("content-type"))
        key = next(
            (m for m in media_types if m == actual or m == "*/*" or (m.endswith("/*") and actual.startswith(m[:-1]))),
            None,
        )
        if key is None:
            return [*problems, f"content type {actual or '(none)'!r} is not one of {sorted(media_types)}"]
        if key != "application/json":
            if key.startswith("text/"):
                try:
                    content.decode("utf-8")
                except UnicodeDecodeError:
                    problems.append("text body is not UTF-8")
            return problems
        try:
            body = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return [*problems, f"body is not JSON: {content[:120]!r}"]
        schema_pointer = f"{pointer}/content/{_escape(key)}/schema"
        problems += [f"body: {e}" for e in self.schema_errors(schema_pointer, body)]
        return problems

    def _check_headers(self, response: dict[str, Any], pointer: str, headers: Mapping[str, str]) -> list[str]:
        problems = []
        for name, declared in (response.get("headers") or {}).items():
            header, header_pointer = self.resolve(declared, f"{pointer}/headers/{_escape(name)}")
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"required header {name} is missing")
                continue
            if "schema" in header:
                errors = self.schema_errors(f"{header_pointer}/schema", value)
                problems += [f"header {name}: {e}" for e in errors]
        return problems
