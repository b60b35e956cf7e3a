"""Timer: the inbound poll (RELAY_INBOUND_MODE=poll) or reconciliation sweep (both); idle in push mode."""

from __future__ import annotations

import logging

import azure.functions as func

from relay.runtime import get_runtime

bp = func.Blueprint()
log = logging.getLogger("relay.timers")


@bp.timer_trigger(schedule="%POLL_SCHEDULE%", arg_name="timer", run_on_startup=False)
def poll_inbound(timer: func.TimerRequest) -> None:
    rt = get_runtime()
    if rt.settings.relay_inbound_mode == "push":
        return
    result = rt.poller.poll()
    if result.ingested:
        log.info("inbound poll took in %d messages (%d listed)", result.ingested, result.listed)
