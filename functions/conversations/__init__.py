"""The desk's conversation endpoints: list and search, history, unrouted, claim, transfer, done and reopen,
internal notes, read marks, catch-up feed."""

from __future__ import annotations

import azure.functions as func

from functions.http import adapter, bearer, json_response, read_json
from relay.runtime import Runtime, get_runtime

bp = func.Blueprint()


def _desk(req: func.HttpRequest) -> tuple[Runtime, str]:
    rt = get_runtime()
    return rt, rt.sessions.authenticate(bearer(req)).desk


@bp.route(route="conversations", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def list_conversations(req: func.HttpRequest) -> func.HttpResponse:
    rt, desk = _desk(req)
    query, status = req.params.get("q", ""), req.params.get("status")
    rt.conversations.check_status(status)  # a search ignores it, but a wrong one is still wrong
    if query.strip():  # a search: ranked, each with what matched
        return json_response({"conversations": rt.search.conversations(desk, query)})
    return json_response({"conversations": rt.conversations.of_desk(desk, status)})


@bp.route(route="conversations/{phone}/messages", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def conversation_messages(req: func.HttpRequest) -> func.HttpResponse:
    rt, desk = _desk(req)
    page = rt.conversations.messages(
        desk, req.route_params.get("phone", ""), req.params.get("before"), req.params.get("limit")
    )
    return json_response(page)


@bp.route(route="conversations/{phone}/claim", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def claim_conversation(req: func.HttpRequest) -> func.HttpResponse:
    rt, desk = _desk(req)
    return json_response(rt.conversations.claim(desk, req.route_params.get("phone", "")))


@bp.route(route="conversations/{phone}/transfer", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def transfer_conversation(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    return json_response(rt.conversations.transfer(caller, req.route_params.get("phone", ""), body))


@bp.route(route="conversations/{phone}/done", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def mark_conversation_done(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.conversations.set_done(caller, req.route_params.get("phone", ""), True))


@bp.route(route="conversations/{phone}/reopen", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def reopen_conversation(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.conversations.set_done(caller, req.route_params.get("phone", ""), False))


@bp.route(route="conversations/{phone}/notes", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def add_note(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    return json_response(rt.conversations.add_note(caller, req.route_params.get("phone", ""), body), status=201)


@bp.route(route="conversations/{phone}/read", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def mark_conversation_read(req: func.HttpRequest) -> func.HttpResponse:
    rt, desk = _desk(req)
    rt.conversations.mark_read(desk, req.route_params.get("phone", ""))
    return func.HttpResponse(status_code=204)


@bp.route(route="unrouted", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def unrouted(req: func.HttpRequest) -> func.HttpResponse:
    rt, _ = _desk(req)
    return json_response({"conversations": rt.conversations.unrouted()})


@bp.route(route="messages", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def catch_up(req: func.HttpRequest) -> func.HttpResponse:
    rt, desk = _desk(req)
    return json_response(rt.conversations.feed(desk, req.params.get("after")))
