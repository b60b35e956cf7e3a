"""The fake Twilio REST API: Messages create/fetch/list and Media, with Twilio's auth, errors and paging."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from .config import SandboxConfig
from .delivery import send_outbound
from .numbers import to_e164, valid_url
from .shapes import API_VERSION, media_json, message_json, message_uri, twilio_error
from .state import DateFilter, Message, SandboxState

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BODY_CHARS = 1600
MAX_MEDIA = 10


def _route_path(scope: Scope) -> str:
    """The path below the mount point, i.e. as Twilio's docs write it (/2010-04-01/...)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root + "/") else path


class CallRecorder:
    """Logs every REST request and its final status so tests can prove whether Twilio was called; fails the
    requests a test asked to fail (`POST /sandbox/faults`)."""

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
            if (fault := self.state.take_fault(_route_path(scope))) is not None:
                # Twilio's own answer when it has a bad moment (20500 Internal Server Error, 20503 Unavailable).
                refusal = twilio_error(20000 + fault, "An internal server error has occurred", fault)
                await refusal(scope, receive, capture)
                return
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


def _paging(request: Request) -> tuple[int, int] | Response:
    """PageSize 1 to 1000 (Twilio's documented bounds, refused outside them rather than clamped) and Page."""
    try:
        page_size = int(request.query_params.get("PageSize", DEFAULT_PAGE_SIZE))
        page = int(request.query_params.get("Page", 0))
    except ValueError:
        return twilio_error(20001, "Invalid Page or PageSize", 400)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        return twilio_error(20001, f"PageSize must be between 1 and {MAX_PAGE_SIZE}", 400)
    if page < 0:
        return twilio_error(20001, "Page must not be negative", 400)
    return page_size, page


def cdn_origin(request: Request) -> str:
    """A second origin on the same server, as Twilio's media CDN is one: `localhost` for `127.0.0.1` and the
    other way round, so a client that carried the API's credentials across would be caught."""
    host = request.url.hostname or "127.0.0.1"
    other = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(host, host)
    root = str(request.scope.get("root_path", "")).removesuffix("/twilio")
    return f"{request.url.scheme}://{other}:{request.url.port or 80}{root}"


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
            Route(f"{base}/Messages/{{sid}}/Media.json", self.list_media, methods=["GET"]),
            Route(f"{base}/Messages/{{sid}}/Media/{{media_sid}}.json", self.fetch_media, methods=["GET"]),
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
        body, media_urls = form.get("Body", [""])[0], tuple(u.strip() for u in form.get("MediaUrl", []) if u.strip())
        status_callback = first("StatusCallback")
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
        if from_ is not None and from_ == to:
            return twilio_error(21266, "'To' and 'From' number cannot be the same", 400)
        if not body and not media_urls:
            return twilio_error(21602, "Message body is required.", 400)
        if len(body) > MAX_BODY_CHARS:
            return twilio_error(21617, "The concatenated message body exceeds the 1600 character limit.", 400)
        if len(media_urls) > MAX_MEDIA:
            return twilio_error(21623, f"The number of media files exceeds the limit of {MAX_MEDIA}.", 400)
        if not all(valid_url(url) for url in media_urls):
            return twilio_error(21620, "Invalid media URL(s)", 400)
        if status_callback and not valid_url(status_callback):
            return twilio_error(21609, f"Invalid StatusCallback URL: {status_callback}", 400)
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
            status_callback=status_callback or None,
        )
        return JSONResponse(message_json(message, self.config.account_sid), status_code=201)

    async def fetch_message(self, request: Request) -> Response:
        if refusal := self._refuse(request):
            return refusal
        message = self.state.get_message(request.path_params["sid"])
        if message is None:
            return self._missing(request)
        return JSONResponse(message_json(message, self.config.account_sid))

    def _media_page(self, request: Request, message: Message, page_size: int, page: int) -> dict[str, Any]:
        base = f"{message_uri(self.config.account_sid, message.sid)}/Media.json"
        items = message.media[page * page_size : (page + 1) * page_size]

        def uri(number: int) -> str:
            return f"{base}?{urlencode({'PageSize': page_size, 'Page': number})}"

        more = len(message.media) > (page + 1) * page_size
        return {
            "first_page_uri": uri(0),
            "end": page * page_size + max(len(items) - 1, 0),
            "media_list": [media_json(m, message, self.config.account_sid) for m in items],
            "next_page_uri": uri(page + 1) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": page * page_size,
            "uri": uri(page),
        }

    async def list_media(self, request: Request) -> Response:
        """The Media list of a message, in Twilio's JSON (`media_list`), paged like every Twilio list."""
        if refusal := self._refuse(request):
            return refusal
        message = self.state.get_message(request.path_params["sid"])
        if message is None:
            return self._missing(request)
        paging = _paging(request)
        if isinstance(paging, Response):
            return paging
        return JSONResponse(self._media_page(request, message, *paging))

    async def fetch_media(self, request: Request) -> Response:
        if refusal := self._refuse(request):
            return refusal
        message = self.state.get_message(request.path_params["sid"])
        found = self.state.media(request.path_params["sid"], request.path_params["media_sid"])
        if message is None or found is None:
            return self._missing(request)
        return JSONResponse(media_json(found, message, self.config.account_sid))

    async def media(self, request: Request) -> Response:
        """The media itself: Twilio answers with a 307 to its CDN, a signed URL on another origin that wants no
        credentials; media we sent redirects to the URL we gave."""
        if refusal := self._refuse(request):
            return refusal
        found = self.state.media(request.path_params["sid"], request.path_params["media_sid"])
        if found is None:
            return self._missing(request)
        if found.data is None:
            return RedirectResponse(found.url, status_code=307)
        return RedirectResponse(f"{cdn_origin(request)}/cdn/{found.cdn_token}", status_code=307)

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
        paging = _paging(request)
        if isinstance(paging, Response):
            return paging
        page_size, page = paging
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
