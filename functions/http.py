"""Shared HTTP adapter pieces: JSON in, JSON out, errors mapped in one place, never a 500 for bad input."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import uuid
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from relay.errors import (
    BadRequest,
    PayloadTooLarge,
    RelayError,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from relay.logs import correlation
from relay.sessions import Principal
from relay.store import StoreError
from relay.webhooks import WebhookRequest, forwarded

log = logging.getLogger("relay.http")

MAX_JSON_BYTES = 64 * 1024
MAX_FORM_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024 + 64 * 1024  # a 1 MiB CSV and the rest of its form
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_response(error: RelayError) -> func.HttpResponse:
    return json_response(error.to_json(), error.status, error.headers)


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def adapter(handler: Handler) -> Handler:
    """Turn our errors into their status and JSON; tag every log line of the request."""

    @functools.wraps(handler)
    def run(req: func.HttpRequest) -> func.HttpResponse:
        token = correlation.set(req.headers.get("x-request-id") or uuid.uuid4().hex[:12])
        try:
            return handler(req)
        except RelayError as exc:
            return error_response(exc)
        except StoreError as exc:
            log.error("store unavailable: %s", exc)
            return error_response(StoreUnavailable("The message store is unavailable."))
        finally:
            correlation.reset(token)

    return run


def read_json(req: func.HttpRequest, *, required: bool = True) -> dict[str, Any]:
    raw = req.get_body() or b""
    if not raw and not required:
        return {}
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.", code="unsupported_media_type")
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"The body is larger than {MAX_JSON_BYTES} bytes.", code="payload_too_large")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("The body is not valid UTF-8 JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise BadRequest("The body contains a lone UTF-16 surrogate (\\ud800-\\udfff).", code="invalid_json") from None
    return body


def read_form_data(req: func.HttpRequest) -> dict[str, bytes]:
    """A multipart/form-data body's fields by name (the first of a repeated one), each as its bytes."""
    content_type = req.headers.get("content-type") or ""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise UnsupportedMediaType("Send the form as multipart/form-data.", code="unsupported_media_type")
    raw = req.get_body() or b""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"The form is larger than {MAX_UPLOAD_BYTES} bytes.", code="payload_too_large")
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise BadRequest("The body is not a valid multipart/form-data form.", code="invalid_form")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_content_disposition() == "form-data" and isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields.setdefault(name, payload if isinstance(payload, bytes) else b"")
    return fields


def form_text(fields: dict[str, bytes], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"The form field '{name}' is not UTF-8 text.", code="invalid_form") from None


def bearer(req: func.HttpRequest) -> str:
    value = req.headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the session token as 'Authorization: Bearer <token>'.", code="missing_token")
    return token.strip()


def webhook_request(req: func.HttpRequest) -> WebhookRequest:
    """The form Twilio posted, decoded strictly: a webhook we cannot read is refused, not guessed at."""
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Twilio webhooks are form-encoded.", code="unsupported_media_type")
    raw = req.get_body() or b""
    if len(raw) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"The form is larger than {MAX_FORM_BYTES} bytes.", code="payload_too_large")
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The form is not valid URL-encoded UTF-8.", code="invalid_form") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    headers = {k.lower(): v for k, v in req.headers.items()}
    return WebhookRequest(url=req.url, headers=headers, params=params, pairs=tuple(pairs))


def client_address(req: func.HttpRequest, trusted_hops: int) -> str:
    """X-Forwarded-For as far as trusted proxies vouch for it, else the address the host saw."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    return forwarded(headers, "x-forwarded-for", trusted_hops) or headers.get("x-client-ip", "") or "unknown"


ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


def principal(req: func.HttpRequest) -> Principal | None:
    """App Service Authentication's user: its id and name headers, and the roles in X-MS-CLIENT-PRINCIPAL
    (base64 JSON whose `claims` are `{"typ", "val"}` pairs). Only meaningful when the platform sets them, which
    the settings check enforces on Azure."""
    user_id = (req.headers.get("x-ms-client-principal-id") or "").strip()
    if not user_id:
        return None
    name = (req.headers.get("x-ms-client-principal-name") or "").strip()
    roles: set[str] = set()
    raw = req.headers.get("x-ms-client-principal") or ""
    if raw:
        try:
            data = json.loads(base64.b64decode(raw, validate=False))
        except (ValueError, binascii.Error):
            raise BadRequest("X-MS-CLIENT-PRINCIPAL is not base64 JSON.", code="invalid_principal") from None
        claims = data.get("claims") if isinstance(data, dict) else None
        role_type = data.get("role_typ") if isinstance(data, dict) else None
        for claim in claims if isinstance(claims, list) else []:
            if isinstance(claim, dict) and claim.get("typ") in (*ROLE_CLAIMS, role_type):
                roles.add(str(claim.get("val", "")))
            if isinstance(claim, dict) and claim.get("typ") == "name" and not name:
                name = str(claim.get("val", ""))
    return Principal(user_id[:128], name[:40] or user_id[:40], frozenset(roles))
