"""The operator's API under /api/admin: desks added, renamed, archived; staff sessions listed and ended.

Every call carries `X-Admin-Code: <RELAY_ADMIN_CODE>`, or comes through App Service with the relay.admin role.
"""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, client_address, json_response, principal, read_json
from relay.admin import AdminRequest
from relay.runtime import Runtime, get_runtime

bp = func.Blueprint()


def _operator(req: func.HttpRequest) -> Runtime:
    rt = get_runtime()
    rt.admin.check(
        AdminRequest(
            code=req.headers.get("x-admin-code"),
            principal=principal(req) if rt.settings.relay_auth == "appservice" else None,
            client_address=client_address(req, rt.settings.trusted_proxy_hops),
        )
    )
    return rt


@bp.route(route="admin/desks", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_desks(req: func.HttpRequest) -> func.HttpResponse:
    rt = _operator(req)
    if req.method == "POST":
        return json_response(rt.admin.add_desk(read_json(req)), 201)
    return json_response(rt.admin.desks())


@bp.route(route="admin/desks/{desk}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_change_desk(req: func.HttpRequest) -> func.HttpResponse:
    rt = _operator(req)
    return json_response(rt.admin.change_desk(req.route_params.get("desk", ""), read_json(req)))


@bp.route(route="admin/desks/{desk}/archive", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_archive_desk(req: func.HttpRequest) -> func.HttpResponse:
    rt = _operator(req)
    return json_response(rt.admin.archive_desk(req.route_params.get("desk", "")))


@bp.route(route="admin/sessions", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_sessions(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_operator(req).admin.sessions())


@bp.route(route="admin/sessions/{desk}/{session}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_end_session(req: func.HttpRequest) -> func.HttpResponse:
    rt = _operator(req)
    rt.admin.end_session(req.route_params.get("desk", ""), req.route_params.get("session", ""))
    return func.HttpResponse(status_code=204)


@bp.route(route="admin/staff/{staff}/sessions", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def admin_end_staff(req: func.HttpRequest) -> func.HttpResponse:
    rt = _operator(req)
    return json_response(rt.admin.end_staff(req.route_params.get("staff", "")))
