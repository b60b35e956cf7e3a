"""POST /api/session opens a staff session at a desk (or renews one); DELETE ends this session only."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.http import adapter, bearer, client_address, json_response, principal, read_json
from relay.clock import iso
from relay.runtime import Runtime, get_runtime
from relay.sessions import SessionGrant, SessionRequest

bp = func.Blueprint()


def _text(body: dict[str, object], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and len(value) <= 4096 else None


def grant_json(rt: Runtime, grant: SessionGrant) -> dict[str, Any]:
    return {
        "webAppId": grant.web_app_id,
        "desk": grant.desk.to_json(),
        "staff": grant.staff.to_json(),
        "alias": f"#{grant.desk.alias}",
        "clinic": rt.settings.clinic_name,
        "token": grant.token,
        "expiresAt": iso(grant.expires_at),
        "mqtt": {
            "url": rt.settings.mqtt_browser_urls[0],
            "urls": list(rt.settings.mqtt_browser_urls),
            "clientId": grant.client_id,
            "username": grant.mqtt_username,
            "password": grant.mqtt_password,
            "topics": rt.topics.filters_for(grant.web_app_id),
        },
    }


@bp.route(route="session", methods=["POST", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def session(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    if req.method == "DELETE":
        rt.sessions.sign_out(bearer(req))
        return func.HttpResponse(status_code=204)
    has_bearer = bool(req.headers.get("authorization"))
    body = read_json(req, required=not has_bearer)
    grant = rt.sessions.open(
        SessionRequest(
            access_code=_text(body, "accessCode"),
            desk=body.get("desk"),
            staff_name=body.get("staffName"),
            bearer=bearer(req) if has_bearer else None,
            client_address=client_address(req, rt.settings.trusted_proxy_hops),
            principal=principal(req) if rt.settings.relay_auth == "appservice" else None,
        )
    )
    return json_response(grant_json(rt, grant))
