"""POST /api/send_sms: text a number from the desk's session."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, bearer, json_response, read_json
from relay.outbound import SendRequest
from relay.runtime import get_runtime
from relay.webhooks import public_base

bp = func.Blueprint()


@bp.route(route="send_sms", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def send_sms(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    key = headers.get("idempotency-key")
    request = SendRequest(
        web_app_id=caller.desk,
        to=body.get("to"),
        body=body.get("body"),
        media_urls=body.get("mediaUrl"),
        media_ids=body.get("mediaIds"),
        confirm=body.get("confirm", False),
        idempotency_key=key[:200] if key else None,
        base_url=public_base(rt.settings, req.url, headers),
        sent_by=caller.staff,
        take_over=body.get("takeOver", False),
        ignore_quiet_hours=body.get("ignoreQuietHours", False),
    )
    if "sendAt" in body:
        return json_response(rt.scheduler.schedule(request, body.get("sendAt")), 202)
    return json_response(rt.outbound.send(request).to_json(), 201)
