"""Saved texts of the desk: list, create or change one, remove one."""

from __future__ import annotations

import azure.functions as func

from functions.http import SECURITY_HEADERS, adapter, bearer, json_response, read_json
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="templates", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def list_templates(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response({"templates": rt.templates.of_desk(caller.desk)})


@bp.route(route="templates/{id}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def put_template(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    template, created = rt.templates.put(caller.desk, caller.staff, req.route_params.get("id", ""), read_json(req))
    return json_response(template, 201 if created else 200)


@bp.route(route="templates/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def delete_template(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    rt.templates.delete(caller.desk, caller.staff, req.route_params.get("id", ""))
    return func.HttpResponse(status_code=204, headers=SECURITY_HEADERS)
