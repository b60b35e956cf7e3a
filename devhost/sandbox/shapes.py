"""Twilio's wire formats: the Message resource JSON, error JSON and RFC 2822 dates."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any

from starlette.responses import JSONResponse

from .state import Media, Message

API_VERSION = "2010-04-01"


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date style, e.g. "Thu, 30 Jul 2015 20:12:31 +0000"."""
    return format_datetime(moment.replace(microsecond=0)) if moment else None


def message_uri(account_sid: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"


def message_json(message: Message, account_sid: str) -> dict[str, Any]:
    """Field for field what Twilio returns; counts are strings like Twilio's."""
    uri = message_uri(account_sid, message.sid)
    pending_sender = message.from_ is None
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": rfc2822(message.date_sent),
        "date_updated": rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": message.error_code,
        "error_message": message.error_message,
        "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": str(len(message.media)),
        "num_segments": "0" if pending_sender else str(message.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": message.to,
        "uri": f"{uri}.json",
    }


def media_json(media: Media, message: Message, account_sid: str) -> dict[str, Any]:
    """Twilio's Media resource: metadata only; the content is at `uri` without `.json`."""
    return {
        "account_sid": account_sid,
        "content_type": media.content_type,
        "date_created": rfc2822(message.date_created),
        "date_updated": rfc2822(message.date_created),
        "parent_sid": message.sid,
        "sid": media.sid,
        "uri": f"{message_uri(account_sid, message.sid)}/Media/{media.sid}.json",
    }


def twilio_error(code: int, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """Twilio's REST error body, which the SDK turns into TwilioRestException(code=...)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)
