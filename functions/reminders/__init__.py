"""Reminders: read one, set its state by hand (with who and a note), and the timer that marks no_answer."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import adapter, bearer, json_response, read_json
from relay.runtime import get_runtime

bp = func.Blueprint()
log = logging.getLogger("relay.timers")


@bp.route(route="reminders/{sid}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def get_reminder(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.reminders.get(caller.desk, req.route_params.get("sid", "")))


@bp.route(route="reminders/{sid}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def set_reminder(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    body = read_json(req)
    return json_response(rt.reminders.set_by_staff(caller.desk, caller.staff, req.route_params.get("sid", ""), body))


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def sweep_reminders(timer: func.TimerRequest) -> None:
    moved = get_runtime().reminders.sweep()
    if moved:
        log.info("%d reminders had no answer in time", moved)
