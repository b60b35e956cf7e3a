"""The composition root: builds every collaborator once per process from the settings, lazily."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from relay.admin import Admin
from relay.automatic import AutomaticAnswers
from relay.batches import Batches
from relay.board import Board
from relay.broker_access import BrokerAccess, DynsecAccess, JwtAccess
from relay.bulk import Bulk
from relay.clock import Clock, SystemClock
from relay.contacts import Contacts
from relay.conversations import Conversations
from relay.deadlines import WebhookDeadline
from relay.delivery import Delivery
from relay.desk_changes import DeskChanges
from relay.directory import DeskDirectory
from relay.health import HealthCheck
from relay.inbound import Inbound
from relay.keywords import HandlerContext, load
from relay.logs import configure
from relay.notices import Notices
from relay.outbound import Outbound
from relay.outbox import Outbox
from relay.ownership import Ownership
from relay.polling import Poller
from relay.publisher import Publisher
from relay.rabbitmq import Management, RabbitAccess
from relay.reminders import HANDLER, Reminders
from relay.routing import Router
from relay.scheduler import Scheduler
from relay.search import Search
from relay.sessions import Sessions
from relay.settings import Settings
from relay.store import Store, open_store
from relay.templates import Templates
from relay.tokens import RABBITMQ_AUDIENCE, SERVICE_USER, TokenIssuer
from relay.topics import Topics
from relay.twilio_gateway import TwilioGateway
from relay.uploads import Uploads
from relay.webhooks import WebhookValidator

if TYPE_CHECKING:
    from relay.store.media import MediaBlobs

OUTBOX_TIMER_MIN_AGE = timedelta(seconds=15)


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    store: Store
    publisher: Publisher
    gateway: TwilioGateway
    issuer: TokenIssuer
    outbox: Outbox
    sessions: Sessions
    router: Router
    inbound: Inbound
    delivery: Delivery
    outbound: Outbound
    conversations: Conversations
    search: Search
    topics: Topics
    access: BrokerAccess
    poller: Poller
    directory: DeskDirectory
    desk_changes: DeskChanges
    ownership: Ownership
    admin: Admin
    reminders: Reminders
    contacts: Contacts
    scheduler: Scheduler
    templates: Templates
    batches: Batches
    bulk: Bulk
    board: Board
    webhook_deadline: WebhookDeadline
    checker: HealthCheck
    uploads: Uploads

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.checker.report()

    def close(self) -> None:
        self.webhook_deadline.close()
        self.checker.close()
        self.publisher.stop()
        self.outbox.close()
        self.uploads.close()
        self.store.close()


def build(settings: Settings, clock: Clock | None = None, store: Store | None = None) -> Runtime:
    """`clock` and `store` are injectable so tests can move time and choose the backend."""
    clock = clock or SystemClock()
    configure(settings.log_level)
    topics = Topics(settings.mqtt_topic_prefix)
    audience = RABBITMQ_AUDIENCE if settings.mqtt_broker_access == "rabbitmq" else None
    issuer = TokenIssuer(settings.relay_signing_key, topics, settings.relay_signing_algorithm, audience)
    store = store or open_store(settings.relay_store)

    def broker_password() -> str | None:
        # The broker checks expiry against wall time, whatever clock the relay was given.
        return settings.mqtt_password or issuer.service_token(SystemClock().now(), timedelta(days=1))

    after_connect: list[Callable[[], object]] = []  # filled once what it calls exists, which needs the publisher
    publisher = Publisher(
        settings.mqtt_url,
        client_id=f"{SERVICE_USER}-{secrets.token_hex(6)}",
        username=settings.mqtt_username or SERVICE_USER,
        password=broker_password,
        timeout_seconds=settings.mqtt_publish_timeout_seconds,
        on_connected=lambda: _each(after_connect),
    )
    outbox = Outbox(store, publisher, topics, clock, ack_window=store.mark_window)
    desk_changes = DeskChanges(publisher, topics.control("desks"))
    after_connect += [desk_changes.probe, lambda: outbox.resume(min_age=OUTBOX_TIMER_MIN_AGE)]
    gateway = TwilioGateway(settings)
    validator = WebhookValidator(settings)
    access = _broker_access(settings, publisher, topics, store, clock)
    directory = DeskDirectory(store, settings.relay_desks, desk_changes)
    directory.seed(clock.now())
    sessions = Sessions(settings, store, issuer, clock, access, directory)
    ownership = Ownership(store, directory, outbox, clock)
    ttl = timedelta(hours=settings.conversation_ttl_hours)
    router = Router(ownership, directory)
    notices = Notices(store, outbox)
    reminders = Reminders(settings, store, notices, clock, ownership)
    contacts = Contacts(store, notices, directory, clock)
    context = HandlerContext(settings, store, outbox, clock)
    keywords = load(settings.keyword_handlers, context, core=((HANDLER, reminders.answer_handler),))
    answers = AutomaticAnswers(store, outbox)
    inbound = Inbound(store, router, outbox, validator, clock, ttl, keywords, reminders, answers, notices)
    uploads = Uploads(_blobs(settings), clock)
    outbound = Outbound(settings, store, gateway, outbox, clock, ownership, reminders, uploads)
    batches = Batches(store, notices)
    scheduler = Scheduler(settings, store, outbound, gateway, reminders, directory, notices, batches, clock)
    templates = Templates(store, notices, clock)
    bulk = Bulk(settings, store, outbound, scheduler, reminders, contacts, templates, batches, directory, clock)
    conversations = Conversations(
        settings, store, outbox, gateway, clock, ownership, directory, reminders, contacts, notices
    )
    runtime = Runtime(
        settings=settings,
        clock=clock,
        store=store,
        publisher=publisher,
        gateway=gateway,
        issuer=issuer,
        outbox=outbox,
        sessions=sessions,
        router=router,
        inbound=inbound,
        delivery=Delivery(store, outbox, validator, clock, reminders),
        outbound=outbound,
        conversations=conversations,
        search=Search(settings, store, conversations, ownership, directory),
        topics=topics,
        poller=Poller(settings, store, inbound, gateway, clock),
        access=access,
        directory=directory,
        desk_changes=desk_changes,
        ownership=ownership,
        admin=Admin(settings, store, directory, sessions, ownership, clock),
        reminders=reminders,
        contacts=contacts,
        scheduler=scheduler,
        templates=templates,
        bulk=bulk,
        batches=batches,
        board=Board(store, contacts),
        webhook_deadline=WebhookDeadline(settings.webhook_deadline_seconds),
        checker=HealthCheck(store, publisher, clock, settings.max_clock_skew_seconds),
        uploads=uploads,
    )
    publisher.start()
    return runtime


def _broker_access(
    settings: Settings, publisher: Publisher, topics: Topics, store: Store, clock: Clock
) -> BrokerAccess:
    if settings.mqtt_broker_access == "mosquitto-dynsec":
        return DynsecAccess(publisher, topics, store)
    if settings.mqtt_broker_access == "rabbitmq":
        management = Management(
            settings.rabbitmq_management_urls,
            settings.rabbitmq_management_username or "",
            settings.rabbitmq_management_password or "",
        )
        return RabbitAccess(management, store, clock, settings.mqtt_username or SERVICE_USER)
    return JwtAccess(publisher, topics)


def _blobs(settings: Settings) -> MediaBlobs | None:
    """Imported only when pictures are on: azure-storage-blob costs a cold start ~100 ms otherwise."""
    if not settings.media_storage:
        return None
    from relay.store.media import MediaBlobs

    return MediaBlobs(settings.media_storage)


def _each(calls: list[Callable[[], object]]) -> None:
    """On the publisher's one drain thread, after each connect and each time the broker acknowledges again."""
    for call in calls:
        call()


_lock = threading.Lock()
_current: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, built on first use so importing function_app stays fast."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build(Settings.load())
    return _current


def install(runtime: Runtime | None) -> None:
    """For hosts that build the runtime themselves (the local host validates settings at start-up)."""
    global _current
    with _lock:
        _current = runtime
