"""The fake Twilio REST API: Messages create/fetch/list and Media, with Twilio's auth, errors and paging."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from .config import SandboxConfig
from .delivery import send_outbound
from .numbers import to_e164
from .shapes import API_VERSION, message_json, twilio_error
from .state import DateFilter, Message, SandboxState

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BODY_CHARS = 1600


def _route_path(scope: Scope) -> str:
    """The path below the mount point, i.e. as Twilio's docs write it (/2010-04-01/...)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root + "/") else path


class CallRecorder:
    """Logs every REST request and its final status so tests can prove whether Twilio was called."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.state.record_call(str(scope["method"]), _route_path(scope), status)


def _parse_date(raw: str) -> date | datetime | None:
    """The two forms Twilio accepts: YYYY-MM-DD, or the SDK's YYYY-MM-DDTHH:MM:SSZ."""
    for pattern, is_day in (("%Y-%m-%d", True), ("%Y-%m-%dT%H:%M:%SZ", False)):
        try:
            parsed = datetime.strptime(raw, pattern)
        except ValueError:
            continue
        return parsed.date() if is_day else parsed.replace(tzinfo=UTC)
    return None


class TwilioApi:
    """Handlers for /2010-04-01/Accounts/{AccountSid}/..., bound to one sandbox account."""

    def __init__(self, config: SandboxConfig, state: SandboxState) -> None:
        self.config, self.state = config, state

    def router(self) -> ASGIApp:
        base = f"/{API_VERSION}/Accounts/{{account}}"
        routes = [
            Route(f"{base}/Messages.json", self.create_message, methods=["POST"]),
            Route(f"{base}/Messages.json", self.list_messages, methods=["GET"]),
            Route(f"{base}/Messages/{{sid}}.json", self.fetch_message, methods=["GET"]),
            Route(f"{base}/Messages/{{sid}}/Media/{{media_sid}}", self.media, methods=["GET"]),
            Route("/{rest:path}", self.not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
        return CallRecorder(Router(routes), self.state)

    def _refuse(self, request: Request) -> Response | None:
        """Twilio checks credentials first (20003), then that the path names that account (20404)."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        expected = (self.config.account_sid.encode(), self.config.auth_token.encode())
        if scheme.lower() != "basic" or not (
            hmac.compare_digest(user.encode(), expected[0]) & hmac.compare_digest(password.encode(), expected[1])
        ):
            return twilio_error(20003, "Authenticate", 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.path_params.get("account") != self.config.account_sid:
            return self._missing(request)
        return None

    @staticmethod
    def _missing(request: Request) -> Response:
        return twilio_error(20404, f"The requested resource {_route_path(request.scope)} was not found", 404)

    async def not_found(self, request: Request) -> Response:
        return self._missing(request)

    async def create_message(self, request: Request) -> Response:
        if refusal := self._refuse(request):
            return refusal
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)

        def first(name: str) -> str:
            return form.get(name, [""])[0].strip()

        to_raw, from_raw, service = first("To"), first("From"), first("MessagingServiceSid")
        body, media_urls = form.get("Body", [""])[0], tuple(u for u in form.get("MediaUrl", []) if u.strip())
        if not to_raw:
            return twilio_error(21604, "A 'To' phone number is required.", 400)
        to = to_e164(to_raw)
        if to is None:
            return twilio_error(21211, f"The 'To' number {to_raw} is not a valid phone number.", 400)
        if not from_raw and not service:
            return twilio_error(21603, "A 'From' phone number is required.", 400)
        if service and service != self.config.messaging_service_sid:
            return twilio_error(21701, f"The Messaging Service Sid {service} is invalid.", 400)
        if service and not from_raw and not self.config.pool:
            return twilio_error(21704, "The Messaging Service contains no phone numbers", 400)
        from_ = to_e164(from_raw) if from_raw else None
        if from_raw and from_ not in self.config.our_numbers:
            return twilio_error(
                21606,
                f"The From phone number {from_raw} is not a valid, SMS-capable inbound phone number "
                "or short code for your account.",
                400,
            )
        if not body and not media_urls:
            return twilio_error(21602, "Message body is required.", 400)
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
        if self.state.is_opted_out(to):
            return twilio_error(21610, "Attempt to send to unsubscribed recipient", 400)
        message = send_outbound(
            self.state,
            self.config,
            to=to,
            from_=from_,
            body=body,
            direction="outbound-api",
            media_urls=media_urls,
            messaging_service_sid=service or None,
            status_callback=first("StatusCallback") or None,
        )
        return JSONResponse(message_json(message, self.config.account_sid), status_code=201)

    async def fetch_message(self, request: Request) -> Response:
        if refusal := self._refuse(request):
            return refusal
        message = self.state.get_message(request.path_params["sid"])
        if message is None:
            return self._missing(request)
        return JSONResponse(message_json(message, self.config.account_sid))

    async def media(self, request: Request) -> Response:
        """Media a phone sent is served here; for media we sent Twilio redirects to its stored copy."""
        if refusal := self._refuse(request):
            return refusal
        found = self.state.media(request.path_params["sid"], request.path_params["media_sid"])
        if found is None:
            return self._missing(request)
        if found.data is None:
            return RedirectResponse(found.url, status_code=307)
        return Response(found.data, media_type=found.content_type)

    def _token_window(self, found: list[Message], token: str, page_size: int) -> tuple[list[Message], bool] | None:
        """The page a token points at, and whether older messages follow it: PA = after (older than) the anchor."""
        anchor = self.state.get_message(token[2:])
        if token[:2] not in ("PA", "PB") or anchor is None:
            return None
        if token.startswith("PA"):
            older = [m for m in found if m.seq < anchor.seq]
            return older[:page_size], len(older) > page_size
        return [m for m in found if m.seq > anchor.seq][-page_size:], True

    async def list_messages(self, request: Request) -> Response:
        """Newest first; PageToken PA<sid>/PB<sid> anchor on a message so pages stay stable while messages arrive."""
        if refusal := self._refuse(request):
            return refusal
        query = request.query_params
        filters = [(key, query[key]) for key in ("To", "From", "DateSent", "DateSent<", "DateSent>") if query.get(key)]
        dates: dict[str, date | datetime | None] = {}
        for key, name in (("DateSent", "on"), ("DateSent>", "after"), ("DateSent<", "before")):
            raw = query.get(key)
            dates[name] = _parse_date(raw) if raw else None
            if raw and dates[name] is None:
                return twilio_error(20001, f"Invalid {key}: {raw}", 400)
        try:
            page_size = min(max(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), 1), MAX_PAGE_SIZE)
            page = max(int(query.get("Page", 0)), 0)
        except ValueError:
            return twilio_error(20001, "Invalid Page or PageSize", 400)
        found = self.state.find_messages(query.get("To") or None, query.get("From") or None, DateFilter(**dates))

        token, start = query.get("PageToken", ""), page * page_size
        if token:
            window = self._token_window(found, token, page_size)
            if window is None:
                return twilio_error(20001, f"Invalid PageToken: {token}", 400)
            items, more_after = window
        else:
            items, more_after = found[start : start + page_size], len(found) > start + page_size

        base = f"/{API_VERSION}/Accounts/{self.config.account_sid}/Messages.json"

        def page_uri(number: int, page_token: str | None) -> str:
            params = [*filters, ("PageSize", str(page_size)), ("Page", str(number))]
            if page_token:
                params.append(("PageToken", page_token))
            return f"{base}?{urlencode(params)}"

        payload = {
            "first_page_uri": page_uri(0, None),
            "end": start + max(len(items) - 1, 0),
            "previous_page_uri": page_uri(page - 1, f"PB{items[0].sid}") if page > 0 and items else None,
            "messages": [message_json(m, self.config.account_sid) for m in items],
            "uri": page_uri(page, token or None),
            "page_size": page_size,
            "start": start,
            "next_page_uri": page_uri(page + 1, f"PA{items[-1].sid}") if more_after and items else None,
            "page": page,
        }
        return JSONResponse(payload)
