"""Virtual phones: what each phone received, and a phone texting us (a signed inbound webhook, TwiML honoured)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import SandboxConfig
from .delivery import send_outbound
from .media import SAMPLE_PNG
from .numbers import segment_count, to_e164
from .shapes import API_VERSION
from .state import Media, Message, SandboxState, new_sid, utcnow
from .webhooks import WEBHOOK_TIMEOUT, inbound_params, post_signed, twiml_messages

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 1600

# Twilio's opt-out confirmations, sent to the phone whatever our app answers (HELP only with Advanced Opt-Out).
CONFIRMATIONS = {
    "stop": "You have successfully been unsubscribed. You will not receive any more messages from this number. "
    "Reply START to resubscribe.",
    "start": "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
    "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "help": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


def _bad(reason: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _phone_json(message: Message, root: str) -> dict[str, Any]:
    """`root` is where the sandbox is mounted: a picture the phone holds is served from the sandbox's CDN."""
    moment = message.date_sent or message.date_created
    return {
        "sid": message.sid,
        "from": message.from_,
        "to": message.to,
        "body": message.body,
        "dateSent": moment.isoformat(),
        "media": [
            {"url": f"{root}/cdn/{m.cdn_token}" if m.data is not None else m.url, "contentType": m.content_type}
            for m in message.media
        ],
    }


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


class Phones:
    """Handlers for /phones: the sandbox plays the patients' handsets."""

    def __init__(self, config: SandboxConfig, state: SandboxState) -> None:
        self.config, self.state = config, state

    def routes(self) -> list[Route]:
        return [
            Route("/phones", self.known, methods=["GET"]),
            Route("/phones/{number}/messages", self.received, methods=["GET"]),
            Route("/phones/{number}/thread", self.thread, methods=["GET"]),
            Route("/phones/{number}/reply", self.reply, methods=["POST"]),
        ]

    async def known(self, request: Request) -> Response:
        return JSONResponse(self.state.phones())

    async def received(self, request: Request) -> Response:
        """Texts delivered to the phone, oldest first."""
        phone = to_e164(request.path_params["number"])
        if phone is None:
            return _bad("not a valid E.164 phone number")
        root = _root(request)
        return JSONResponse([_phone_json(m, root) for m in self.state.thread(phone) if m.direction != "inbound"])

    async def thread(self, request: Request) -> Response:
        """Both sides of the phone's conversation, for the simulator page."""
        phone = to_e164(request.path_params["number"])
        if phone is None:
            return _bad("not a valid E.164 phone number")
        root = _root(request)
        return JSONResponse(
            [
                {**_phone_json(m, root), "direction": "sent" if m.direction == "inbound" else "received"}
                for m in self.state.thread(phone)
            ]
        )

    def _our_number(self, phone: str, requested: object) -> str | None:
        """The number being texted: as asked, else the one this phone last talked to, else our first number."""
        ours = self.config.our_numbers
        if requested:
            chosen = to_e164(str(requested))
            return chosen if chosen in ours else None
        partner = self.state.partner(phone)
        if partner in ours:
            return partner
        return ours[0] if ours else None

    async def reply(self, request: Request) -> Response:
        """The phone texts us: record it, apply opt-out keywords, post the signed webhook, deliver TwiML replies."""
        phone = to_e164(request.path_params["number"])
        if phone is None:
            return _bad("not a valid E.164 phone number")
        try:
            payload = await request.json()
        except ValueError:
            return _bad("expected a JSON object")
        if not isinstance(payload, dict) or not isinstance(payload.get("body", ""), str):
            return _bad('expected {"body": "...", "image": true?, "to": "+1..."?}')
        body, image = payload.get("body", ""), payload.get("image") is True
        if not body and not image:
            return _bad("a reply needs a body or an image")
        if len(body) > MAX_BODY_CHARS:
            return _bad(f"body longer than {MAX_BODY_CHARS} characters")
        ours = self._our_number(phone, payload.get("to"))
        if ours is None:
            return _bad(f"'to' must be one of our numbers: {', '.join(self.config.our_numbers) or 'none configured'}")

        sid = new_sid("MM" if image else "SM")
        media: tuple[Media, ...] = ()
        if image:
            media_sid = new_sid("ME")
            # root_path is where the sandbox is mounted (/sandbox); base_url would drop it.
            base = str(request.url.replace(path=request.scope.get("root_path", ""), query="")).rstrip("/")
            url = f"{base}/twilio/{API_VERSION}/Accounts/{self.config.account_sid}/Messages/{sid}/Media/{media_sid}"
            media = (Media(media_sid, "image/png", url, SAMPLE_PNG),)
        message = self.state.add_message(
            sid=sid,
            from_=phone,
            to=ours,
            body=body,
            direction="inbound",
            status="received",
            num_segments=segment_count(body),
            messaging_service_sid=self.config.messaging_service_sid,
            date_sent=utcnow(),
            media=media,
        )
        word = self.state.apply_keyword(phone, body)
        answered = word if self.config.advanced_opt_out or word != "help" else None
        if answered:
            send_outbound(
                self.state, self.config, to=phone, from_=ours, body=CONFIRMATIONS[answered], direction="outbound-reply"
            )

        if not self.config.webhook_url:
            return JSONResponse({"sid": sid, "error": "no webhook_url configured"}, status_code=502)
        opt_out_type = answered.upper() if answered and self.config.advanced_opt_out else None
        params = inbound_params(message, self.config.account_sid, self.config.messaging_service_sid, opt_out_type)
        url = self.config.webhook_url
        try:
            answer = await post_signed(self.config, url, self.config.signed_url(url), params, WEBHOOK_TIMEOUT)
        except httpx.HTTPError as exc:
            return JSONResponse({"sid": sid, "error": f"webhook {url} unreachable: {exc!r}"}, status_code=502)
        if answer.is_success:
            self._deliver_twiml(phone, ours, answer.text)
        return JSONResponse({"sid": sid, "status": answer.status_code, "twiml": answer.text})

    def _deliver_twiml(self, phone: str, ours: str, twiml: str) -> None:
        for verb in twiml_messages(twiml):
            if self.state.is_opted_out(phone):
                log.warning("TwiML <Message> to opted-out %s not delivered (Twilio error 21610)", phone)
                continue
            send_outbound(
                self.state,
                self.config,
                to=phone,
                from_=ours,
                body=verb.body,
                direction="outbound-reply",
                media_urls=verb.media_urls,
            )
