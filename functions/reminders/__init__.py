"""Reminders: bulk import of a list, a batch's progress, the board of a day and its CSV, Remind again; read one,
set its state by hand (with who and a note); and the timer that marks no_answer.

The literal routes come first: as the Functions host does, `reminders/import` must never reach `reminders/{sid}`.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.contacts import csv_response
from functions.http import adapter, bearer, form_text, json_response, read_form_data, read_json
from relay.bulk import ImportForm
from relay.errors import BadRequest
from relay.runtime import get_runtime
from relay.webhooks import public_base

bp = func.Blueprint()
log = logging.getLogger("relay.timers")


@bp.route(route="reminders", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def reminders_board(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.board.day(caller.desk, req.params.get("date"), req.params.get("state") or None))


@bp.route(route="reminders/export", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def export_reminders(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    day = req.params.get("date")
    return csv_response(rt.board.export_csv(caller.desk, day), f"reminders-{day}.csv")


@bp.route(route="reminders/import", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def import_reminders(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    dry_run = req.params.get("dryRun", "false").lower()
    if dry_run not in ("true", "false"):
        raise BadRequest("'dryRun' must be true or false.", code="invalid_dry_run")
    fields = read_form_data(req)
    form = ImportForm(
        file=fields.get("file"),
        template=form_text(fields, "template"),
        template_id=form_text(fields, "templateId"),
        send_days_before=form_text(fields, "sendDaysBefore"),
        send_time=form_text(fields, "sendTime"),
    )
    headers = {k.lower(): v for k, v in req.headers.items()}
    base = public_base(rt.settings, req.url, headers)
    answer = rt.bulk.import_csv(caller.desk, caller.staff, form, dry_run == "true", base)
    return json_response(answer, 200 if dry_run == "true" else 202)


@bp.route(route="reminders/remind-again", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def remind_again(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    base = public_base(rt.settings, req.url, headers)
    return json_response(rt.bulk.remind_again(caller.desk, caller.staff, body, base), 202)


@bp.route(route="reminders/batches/{batch}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def batch_progress(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.batches.progress(caller.desk, req.route_params.get("batch", "")))


# reminders/{sid} also matches these literal routes for the methods they do not serve.
LITERAL = {"import": "POST", "export": "GET", "remind-again": "POST"}


def _literal(req: func.HttpRequest) -> func.HttpResponse | None:
    allow = LITERAL.get(req.route_params.get("sid", ""))
    if allow is None:
        return None
    error = {"error": {"code": "method_not_allowed", "message": "Method not allowed."}}
    return json_response(error, 405, {"Allow": allow})


@bp.route(route="reminders/{sid}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def get_reminder(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := _literal(req)) is not None:
        return refused
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.reminders.get(caller.desk, req.route_params.get("sid", "")))


@bp.route(route="reminders/{sid}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def set_reminder(req: func.HttpRequest) -> func.HttpResponse:
    if (refused := _literal(req)) is not None:
        return refused
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    return json_response(rt.reminders.set_by_staff(caller.desk, caller.staff, req.route_params.get("sid", ""), body))


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def sweep_reminders(timer: func.TimerRequest) -> None:
    moved = get_runtime().reminders.sweep()
    if moved:
        log.info("%d reminders had no answer in time", moved)
