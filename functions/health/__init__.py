"""GET /api/health: broker connection and store, for readiness and Azure's health check."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, json_response
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def health(req: func.HttpRequest) -> func.HttpResponse:
    healthy, report = get_runtime().health()
    return json_response(report, 200 if healthy else 503)
