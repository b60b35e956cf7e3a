"""Timers: drain the outbox so nothing waits on a dead instance, expire broker grants, purge old messages."""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.functions as func

from relay.runtime import OUTBOX_TIMER_MIN_AGE, get_runtime

bp = func.Blueprint()
log = logging.getLogger("relay.timers")


@bp.timer_trigger(schedule="*/15 * * * * *", arg_name="timer", run_on_startup=False)
def flush_outbox(timer: func.TimerRequest) -> None:
    sent = get_runtime().outbox.drain(min_age=OUTBOX_TIMER_MIN_AGE)
    if sent:
        log.info("outbox timer published %d pending events", sent)


@bp.timer_trigger(schedule="0 17 3 * * *", arg_name="timer", run_on_startup=False)
def purge_retention(timer: func.TimerRequest) -> None:
    rt = get_runtime()
    now = rt.clock.now()
    removed = rt.store.purge(now - timedelta(days=rt.settings.retention_days))
    rt.store.staff.purge(now - timedelta(days=1))  # ended sessions stay a day, for the operator's list
    pictures = rt.uploads.purge(now - timedelta(days=rt.settings.retention_days))
    log.info("retention purge removed %d messages and %d uploaded pictures", removed, pictures)


@bp.timer_trigger(schedule="30 * * * * *", arg_name="timer", run_on_startup=False)
def expire_broker_grants(timer: func.TimerRequest) -> None:
    rt = get_runtime()
    removed = rt.access.sweep(rt.clock.now())
    if removed:
        log.info("removed %d expired broker grants", removed)
