"""GET /api/desks lists the desks a signed-in person can switch to; POST /api/presence says a browser is open."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, bearer, json_response
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="desks", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def list_desks(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    rt.sessions.authenticate(bearer(req))
    desks = [{**d.to_json(), "online": rt.sessions.online(d.id)} for d in rt.directory.live()]
    return json_response({"desks": desks})


@bp.route(route="presence", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def presence(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    rt.sessions.seen(rt.sessions.authenticate(bearer(req)))
    return func.HttpResponse(status_code=204)
