"""POST /api/sms_status: Twilio's StatusCallback for messages we sent."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, webhook_request
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="sms_status", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def sms_status(req: func.HttpRequest) -> func.HttpResponse:
    rt, request = get_runtime(), webhook_request(req)
    rt.webhook_deadline.run(lambda: rt.delivery.receive(request))
    return func.HttpResponse(status_code=204)
