"""Inbound polling: list what Twilio received since a high-water mark and feed it to the inbound pipeline.

Used alone (RELAY_INBOUND_MODE=poll) or as a reconciliation sweep behind the webhooks (both). Twilio's
date filter has whole-second granularity and a listing can lag behind a message's date_sent, so every sweep
starts `overlap` before the mark; MessageSid dedupe makes the re-listed messages harmless. The mark is
Twilio's own date_sent of the newest message handled, so our clock's skew never moves it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.clock import Clock
from relay.errors import BadRequest, RelayError, Unavailable, UpstreamRefused
from relay.inbound import Inbound
from relay.phones import mask
from relay.settings import Settings
from relay.store import Store, StoreError
from relay.twilio_gateway import InboundListing, TwilioGateway

log = logging.getLogger("relay.polling")

MARK = ("poll", "mark")
DEFAULT_OVERLAP = timedelta(minutes=2)


@dataclass(frozen=True)
class PollResult:
    listed: int  # messages in the window, known ones included
    ingested: int  # new to the relay, now stored and published
    mark: datetime  # where the next sweep starts, less the overlap
    complete: bool  # False when the run stopped early; the next one carries on


class Poller:
    """`max_per_run` bounds one run (a timer invocation has a time limit); the rest waits for the next."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        inbound: Inbound,
        gateway: TwilioGateway,
        clock: Clock,
        *,
        page_size: int = 100,
        overlap: timedelta = DEFAULT_OVERLAP,
        max_per_run: int = 1000,
    ) -> None:
        self._settings = settings
        self._store = store
        self._inbound = inbound
        self._gateway = gateway
        self._clock = clock
        self._page_size = page_size
        self._overlap = overlap
        self._max_per_run = max_per_run

    def mark(self) -> datetime | None:
        entry = self._store.kv_get(*MARK, self._clock.now())
        return datetime.fromisoformat(str(entry["dateSent"])) if entry else None

    def poll(self) -> PollResult:
        start = self.mark()
        if start is None:
            # First run: begin a little before now, and remember it so a quiet spell never skips anything.
            start = self._clock.now() - self._overlap
            self._save(start)
        listings = self._list(start - self._overlap)
        mark, ingested, complete = start, 0, True
        for item in listings:
            if self._store.get_message(item.params["MessageSid"]) is None:
                if ingested >= self._max_per_run:
                    complete = False
                    break
                try:
                    self._ingest(item)
                except (Unavailable, UpstreamRefused):  # the store, or Twilio's media list: next run resumes here
                    complete = False
                    break
                ingested += 1
            mark = max(mark, item.date_sent)
        if mark > start:
            self._save(mark)
        if ingested or not complete:
            log.info("poll: %d listed, %d ingested, complete=%s", len(listings), ingested, complete)
        return PollResult(len(listings), ingested, mark, complete)

    def _list(self, since: datetime) -> list[InboundListing]:
        """Our number by `To`; a Messaging Service by date, filtered. Merged by MessageSid, oldest first."""
        s = self._settings
        found: dict[str, InboundListing] = {}
        if s.twilio_from_number:
            for item in self._gateway.list_inbound(since, to=s.twilio_from_number, page_size=self._page_size):
                found[item.params["MessageSid"]] = item
        if s.twilio_messaging_service_sid:
            service = s.twilio_messaging_service_sid
            for item in self._gateway.list_inbound(since, service_sid=service, page_size=self._page_size):
                found.setdefault(item.params["MessageSid"], item)
        return sorted(found.values(), key=lambda item: item.date_sent)

    def _ingest(self, item: InboundListing) -> None:
        params = item.params
        if params.get("NumMedia", "0") != "0":
            params = {**params, **self._gateway.media_params(params["MessageSid"])}
        try:
            result = self._inbound.ingest(params)
        except BadRequest as exc:
            # It can never succeed; stopping here would stall every later message behind it.
            log.error("poll: message %s skipped: %s", item.params.get("MessageSid"), exc.message)
            return
        if result.reply is None or result.duplicate:
            return
        phone = item.params["From"]
        try:
            self._gateway.send(phone, result.reply, [], None)
        except RelayError as exc:
            log.warning("poll: keyword reply to %s not sent: %s", mask(phone), exc.message)

    def _save(self, mark: datetime) -> None:
        try:
            self._store.kv_put(*MARK, {"dateSent": mark.isoformat()}, None)
        except StoreError:
            log.exception("poll: high-water mark not saved; the next run repeats this window")
