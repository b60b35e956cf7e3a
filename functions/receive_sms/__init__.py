"""POST /api/receive_sms: Twilio's inbound-SMS webhook."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, webhook_request
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="receive_sms", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def receive_sms(req: func.HttpRequest) -> func.HttpResponse:
    rt, request = get_runtime(), webhook_request(req)
    result = rt.webhook_deadline.run(lambda: rt.inbound.receive(request))
    return func.HttpResponse(result.twiml, status_code=200, mimetype="text/xml", charset="utf-8")
