"""Signed delivery to our app, as Twilio does it: form posts with X-Twilio-Signature, and TwiML answers."""

from __future__ import annotations

import functools
import ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import httpx
from twilio.request_validator import HMAC_SHA256, RequestValidator

from .config import SandboxConfig
from .numbers import place_of
from .shapes import API_VERSION
from .state import Message

WEBHOOK_TIMEOUT = httpx.Timeout(10.0)
CALLBACK_TIMEOUT = httpx.Timeout(5.0)
_MAX_TWIML_CHARS = 64_000


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One context for every callback: httpx builds a new one per client, loading the CA bundle each time, which
    held the event loop ~30 ms per status callback and stalled every request the sandbox was serving."""
    return ssl.create_default_context()


def signature_headers(config: SandboxConfig, signed_url: str, params: dict[str, str]) -> dict[str, str]:
    """X-Twilio-Signature with the Auth Token (HMAC-SHA1), or with the shared key (HMAC-SHA256) once one is
    configured, which Twilio announces in X-Twilio-Webhooks-Signature-Settings."""
    if not config.webhook_shared_key:
        return {"X-Twilio-Signature": RequestValidator(config.auth_token).compute_signature(signed_url, params)}
    signature = RequestValidator(config.webhook_shared_key).compute_signature(signed_url, params, HMAC_SHA256)
    return {
        "X-Twilio-Signature": signature,
        "X-Twilio-Webhooks-Signature-Settings": f"key={config.webhook_shared_key_id},algorithm={HMAC_SHA256}",
    }


async def post_signed(
    config: SandboxConfig, url: str, signed_url: str, params: dict[str, str], timeout: httpx.Timeout
) -> httpx.Response:
    """POST form params to url, signed for signed_url (the address Twilio believes it is calling)."""
    headers = {**signature_headers(config, signed_url, params), "User-Agent": "TwilioProxy/1.1", "Accept": "*/*"}
    async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
        return await client.post(url, data=params, headers=headers)


def inbound_params(
    message: Message, account_sid: str, messaging_service_sid: str | None, opt_out_type: str | None = None
) -> dict[str, str]:
    """Every field of Twilio's incoming-message webhook for a message a phone sent us; OptOutType only where
    Advanced Opt-Out handled a keyword."""
    sender, receiver = place_of(message.from_ or ""), place_of(message.to)
    params = {
        "ToCountry": receiver.country,
        "ToState": receiver.state,
        "SmsMessageSid": message.sid,
        "NumMedia": str(len(message.media)),
        "ReferralNumMedia": "0",
        "ToCity": receiver.city,
        "FromZip": sender.zip,
        "SmsSid": message.sid,
        "FromState": sender.state,
        "SmsStatus": "received",
        "FromCity": sender.city,
        "Body": message.body,
        "FromCountry": sender.country,
        "To": message.to,
        "ToZip": receiver.zip,
        "NumSegments": str(message.num_segments),
        "MessageSid": message.sid,
        "AccountSid": account_sid,
        "From": message.from_ or "",
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    if opt_out_type:
        params["OptOutType"] = opt_out_type
    for index, media in enumerate(message.media):
        params[f"MediaUrl{index}"] = media.url
        params[f"MediaContentType{index}"] = media.content_type
    return params


def status_params(message: Message, account_sid: str) -> dict[str, str]:
    """The status-callback form for the message's current status: the documented fields only (ErrorCode, no
    ErrorMessage), with the carrier's RawDlrDoneDate (YYMMDDhhmm) on an SMS's delivered or undelivered."""
    params = {
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "AccountSid": account_sid,
        "From": message.from_ or "",
        "To": message.to,
        "MessageStatus": message.status,
        "SmsStatus": message.status,
        "ApiVersion": API_VERSION,
    }
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if message.error_code is not None:
        params["ErrorCode"] = str(message.error_code)
    if message.sid.startswith("SM") and message.status in ("delivered", "undelivered"):
        params["RawDlrDoneDate"] = message.date_updated.strftime("%y%m%d%H%M")
    return params


@dataclass(frozen=True)
class TwimlMessage:
    body: str
    media_urls: tuple[str, ...]


def twiml_messages(text: str) -> list[TwimlMessage]:
    """The <Message> verbs of a TwiML answer; anything that is not plain TwiML (DTDs, entities) is ignored."""
    upper = text.upper()
    if not text.strip() or len(text) > _MAX_TWIML_CHARS or "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        return []
    try:
        # Safe here: DTDs/entities are refused above and the size is capped; defusedxml is not a dependency.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError:
        return []
    if root.tag != "Response":
        return []
    found = []
    for verb in root.iter("Message"):
        body_nouns, media_nouns = verb.findall("Body"), verb.findall("Media")
        if body_nouns or media_nouns:
            body = "".join("".join(noun.itertext()) for noun in body_nouns)
        else:
            body = "".join(verb.itertext())
        media = tuple((noun.text or "").strip() for noun in media_nouns if (noun.text or "").strip())
        found.append(TwimlMessage(body.strip(), media))
    return found
