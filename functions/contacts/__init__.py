"""The clinic's address book: search, add or change a name, remove one, import and export CSV."""

from __future__ import annotations

import azure.functions as func

from functions.http import SECURITY_HEADERS, adapter, bearer, json_response, read_json
from relay.csvfiles import require_csv
from relay.runtime import get_runtime

bp = func.Blueprint()


@bp.route(route="contacts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def search_contacts(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    rt.sessions.authenticate(bearer(req))
    return json_response({"contacts": rt.contacts.search(req.params.get("q"))})


@bp.route(route="contacts/export", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def export_contacts(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    rt.sessions.authenticate(bearer(req))
    return csv_response(rt.contacts.export_csv(), "contacts.csv")


@bp.route(route="contacts/import", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def import_contacts(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    require_csv(req.headers.get("content-type"))
    return json_response(rt.contacts.import_csv(caller.staff, req.get_body() or b""))


# contacts/{phone} also matches these literal routes for the methods they do not serve.
LITERAL = {"import": "POST", "export": "GET"}


def _literal(req: func.HttpRequest) -> func.HttpResponse | None:
    allow = LITERAL.get(req.route_params.get("phone", ""))
    if allow is None:
        return None
    error = {"error": {"code": "method_not_allowed", "message": "Method not allowed."}}
    return json_response(error, 405, {"Allow": allow})


@bp.route(route="contacts/{phone}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def put_contact(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := _literal(req)) is not None:
        return refused
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    contact, created = rt.contacts.put(caller.staff, req.route_params.get("phone", ""), read_json(req))
    return json_response(contact, 201 if created else 200)


@bp.route(route="contacts/{phone}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def delete_contact(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := _literal(req)) is not None:
        return refused
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    rt.contacts.delete(caller.staff, req.route_params.get("phone", ""))
    return func.HttpResponse(status_code=204, headers=SECURITY_HEADERS)


def csv_response(content: bytes, filename: str) -> func.HttpResponse:
    return func.HttpResponse(
        content,
        status_code=200,
        mimetype="text/csv",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )
