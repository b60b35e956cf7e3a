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
from relay.errors import BadRequest, RelayError, StoreUnavailable, Unavailable, UpstreamRefused
from relay.inbound import Inbound
from relay.phones import mask
from relay.settings import Settings
from relay.store import Store, StoreError
from relay.twilio_gateway import InboundListing, TwilioGateway

log = logging.getLogger("relay.polling")

MARK = ("poll", "mark")
MEDIA_ATTEMPTS = "poll-media"  # KV namespace: failed media listings per MessageSid
DEFAULT_OVERLAP = timedelta(minutes=2)
DEFAULT_MEDIA_TRIES = 3


@dataclass(frozen=True)
class PollResult:
    listed: int  # messages in the window, known ones included
    ingested: int  # new to the relay, now stored and published
    mark: datetime  # where the next sweep starts, less the overlap
    complete: bool  # False when the run stopped early; the next one carries on
    deferred: int = 0  # new messages left for the next run because their media could not be listed yet


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
        media_tries: int = DEFAULT_MEDIA_TRIES,
    ) -> None:
        self._settings = settings
        self._store = store
        self._inbound = inbound
        self._gateway = gateway
        self._clock = clock
        self._page_size = page_size
        self._overlap = overlap
        self._max_per_run = max_per_run
        self._media_tries = media_tries

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
        held: list[datetime] = []  # date_sent of messages deferred for their media: the mark must not pass them
        for item in listings:
            if self._store.get_message(item.params["MessageSid"]) is None:
                if ingested >= self._max_per_run:
                    complete = False
                    break
                try:
                    params = self._with_media(item)
                    if params is None:
                        held.append(item.date_sent)
                        continue
                    self._ingest(item, params)
                except Unavailable:  # the store: the next run resumes here
                    complete = False
                    break
                ingested += 1
            mark = max(mark, item.date_sent)
        if held:
            mark = max(start, min(mark, *held))
        if mark > start:
            self._save(mark)
        if ingested or held or not complete:
            log.info(
                "poll: %d listed, %d ingested, %d deferred, complete=%s", len(listings), ingested, len(held), complete
            )
        return PollResult(len(listings), ingested, mark, complete, len(held))

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

    def _with_media(self, item: InboundListing) -> dict[str, str] | None:
        """The webhook's form with MediaUrlN, or None to try again next run. After `media_tries` failed listings
        the message is stored anyway, its media marked unavailable and listed again when a desk opens it: one
        attachment must never hold back the texts behind it."""
        params, sid = item.params, item.params["MessageSid"]
        count = params.get("NumMedia", "0")
        if count in ("0", ""):
            return params
        try:
            return {**params, **self._gateway.media_params(sid)}
        except (Unavailable, UpstreamRefused) as exc:
            reason = exc.message
        now = self._clock.now()
        try:
            tries = int((self._store.kv_get(MEDIA_ATTEMPTS, sid, now) or {}).get("tries", 0)) + 1
            if tries < self._media_tries:
                self._store.kv_put(MEDIA_ATTEMPTS, sid, {"tries": tries}, now + timedelta(days=1))
                log.warning("poll: media of %s not listed (try %d of %d): %s", sid, tries, self._media_tries, reason)
                return None
            self._store.kv_delete(MEDIA_ATTEMPTS, sid)
        except StoreError as exc:
            raise StoreUnavailable(f"The message store is unavailable: {exc}") from None
        log.error("poll: media of %s not listed after %d tries (%s); stored as unavailable", sid, tries, reason)
        number = int(count) if count.isascii() and count.isdigit() else 0
        return {**params, "MediaUnavailable": "true", **self._gateway.media_placeholders(sid, number)}

    def _ingest(self, item: InboundListing, params: dict[str, str]) -> None:
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
