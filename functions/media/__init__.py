"""Pictures: an MMS image fetched from Twilio for the desk that owns the message, and the desk's own uploads."""

from __future__ import annotations

import azure.functions as func

from functions.http import SECURITY_HEADERS, adapter, bearer, json_response
from relay.runtime import get_runtime
from relay.twilio_gateway import Media

bp = func.Blueprint()


@bp.route(route="media", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def upload_media(req: func.HttpRequest) -> func.HttpResponse:
    """The body is the picture itself; its type is read from its bytes, whatever Content-Type says."""
    rt = get_runtime()
    desk = rt.sessions.authenticate(bearer(req)).desk
    return json_response(rt.uploads.add(desk, req.get_body() or b""), 201)


@bp.route(route="media/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def uploaded_media(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    desk = rt.sessions.authenticate(bearer(req)).desk
    media_id = req.route_params.get("id", "")
    return _picture(rt.uploads.read(desk, media_id), media_id)


@bp.route(route="media/{sid}/{index}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def media(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    desk = rt.sessions.authenticate(bearer(req)).desk
    sid, index = req.route_params.get("sid", ""), req.route_params.get("index", "")
    return _picture(rt.conversations.media(desk, sid, index), f"{sid}-{index}")


def _picture(found: Media, name: str) -> func.HttpResponse:
    return func.HttpResponse(
        found.content,
        status_code=200,
        headers={
            **SECURITY_HEADERS,
            "Content-Type": found.content_type,
            "Content-Disposition": f'inline; filename="{name}"',
        },
    )
