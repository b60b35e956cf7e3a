"""GET /api/media/{sid}/{index}: an MMS image, fetched from Twilio for the desk that owns the message."""

from __future__ import annotations

import azure.functions as func

from functions.http import SECURITY_HEADERS, adapter, bearer
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="media/{sid}/{index}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def media(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    desk = rt.sessions.authenticate(bearer(req)).desk
    sid, index = req.route_params.get("sid", ""), req.route_params.get("index", "")
    found = rt.conversations.media(desk, sid, index)
    return func.HttpResponse(
        found.content,
        status_code=200,
        headers={
            **SECURITY_HEADERS,
            "Content-Type": found.content_type,
            "Content-Disposition": f'inline; filename="{sid}-{index}"',
        },
    )
