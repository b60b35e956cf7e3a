"""Scheduled messages: a desk's list, cancel, edit; and the timer that sends what is due."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import adapter, bearer, json_response, read_json
from relay.runtime import get_runtime

bp = func.Blueprint()
log = logging.getLogger("relay.timers")


@bp.route(route="scheduled", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def list_scheduled(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response({"scheduled": rt.scheduler.of_desk(caller.desk)})


@bp.route(route="scheduled/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def cancel_scheduled(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.scheduler.cancel(caller.desk, req.route_params.get("id", "")))


@bp.route(route="scheduled/{id}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@adapter
def edit_scheduled(req: func.HttpRequest) -> func.HttpResponse:
    rt = get_runtime()
    caller = rt.sessions.authenticate(bearer(req))
    return json_response(rt.scheduler.edit(caller.desk, req.route_params.get("id", ""), read_json(req)))


@bp.timer_trigger(schedule="* * * * * *", arg_name="timer", run_on_startup=False)
def send_scheduled(timer: func.TimerRequest) -> None:
    """Ticks every second and does the work every SCHEDULE_POLL_SECONDS (a setting can't be an NCRONTAB here)."""
    sent = get_runtime().scheduler.run_if_due()
    if sent:
        log.info("sent %d scheduled messages", sent)
