"""Every setting, read once into a frozen object and validated; errors name the setting."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import phonenumbers

from relay.desks import DEFAULT_DESKS, DeskRuleError, DeskSpec, parse_desks
from relay.errors import SettingsError
from relay.phones import DEFAULT_NUMBER_TYPES, NUMBER_TYPES
from relay.quiet import parse_window, zone
from relay.tokens import ALGORITHMS, TokenIssuer
from relay.topics import Topics

MQTT_SCHEMES = ("mqtt", "mqtts", "ws", "wss")
INBOUND_MODES = ("push", "poll", "both")
BROKER_ACCESS = ("jwt", "mosquitto-dynsec", "rabbitmq")
AUTH_MODES = ("accesscode", "appservice")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
T = TypeVar("T")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class Settings:
    twilio_account_sid: str
    twilio_auth_token: str = field(repr=False)
    relay_signing_key: str = field(repr=False)
    relay_access_code: str = field(repr=False)
    relay_admin_code: str | None = field(default=None, repr=False)
    relay_desks: tuple[DeskSpec, ...] = parse_desks(DEFAULT_DESKS)
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str | None = None
    twilio_webhook_shared_key: str | None = field(default=None, repr=False)
    public_base_url: str | None = None
    webhook_hosts: frozenset[str] = frozenset()  # host or host:port, lower-case; WEBHOOK_HOSTS + WEBSITE_HOSTNAME
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_browser_url: str = "ws://127.0.0.1:9001"
    mqtt_topic_prefix: str = "sms"
    mqtt_publish_timeout_seconds: float = 2.0
    webhook_deadline_seconds: float = 8.0
    mqtt_broker_access: str = "jwt"
    rabbitmq_management_urls: tuple[str, ...] = ()
    rabbitmq_management_username: str | None = None
    rabbitmq_management_password: str | None = field(default=None, repr=False)
    relay_signing_algorithm: str = "HS256"
    relay_store: str = ".data/relay.sqlite3"
    conversation_ttl_hours: float = 4.0
    retention_days: int = 90
    max_clock_skew_seconds: float = 30.0
    session_ttl_hours: float = 12.0
    login_max_failures: int = 10
    send_limit_per_minute: int = 30
    send_limit_per_day: int = 2000  # per desk: a 1,000-row reminder import and a day's ordinary texts
    allowed_countries: frozenset[str] = frozenset()
    allowed_number_types: frozenset[str] = DEFAULT_NUMBER_TYPES
    new_recipient_limit_per_hour: int = 1000  # per desk: a 1,000-row reminder import still fits in an hour
    new_recipient_limit_per_hour_all_desks: int = 2000
    trusted_proxy_hops: int = 0
    relay_auth: str = "accesscode"
    log_level: str = "INFO"
    relay_inbound_mode: str = "push"
    poll_schedule: str = "*/30 * * * * *"
    keyword_handlers: tuple[str, ...] = ()
    help_text: str = "Reply STOP to opt out. For help, call the clinic."
    autoreply_text: str = "Thanks, we'll get back to you during opening hours."
    reminder_confirmed_text: str = "Thanks, your appointment is confirmed."
    reminder_declined_text: str = "Thanks for letting us know. We will be in touch to find another time."
    reminder_no_answer_hours: float = 12.0
    quiet_hours: tuple[time, time] | None = None
    relay_timezone: str = "UTC"
    schedule_min_lead_seconds: float = 60.0
    schedule_poll_seconds: float = 15.0
    send_rate_per_second: float = 1.0
    media_storage: str | None = field(default=None, repr=False)  # Blob Storage for pictures the desks send
    clinic_name: str = "the clinic"

    @property
    def mqtt_urls(self) -> tuple[str, ...]:
        """`MQTT_URL` may list several brokers (a cluster's nodes); the publisher moves on when one fails."""
        return tuple(self.mqtt_url.split(","))

    @property
    def mqtt_browser_urls(self) -> tuple[str, ...]:
        """Web clients get the whole list and move to the next URL on every reconnect."""
        return tuple(self.mqtt_browser_url.split(","))

    @property
    def our_side(self) -> str:
        """Our side of a conversation: the Messaging Service when there is one, else the number."""
        return self.twilio_messaging_service_sid or self.twilio_from_number or ""

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, local_settings: Path | None = None) -> Settings:
        """Build from the environment; `local.settings.json` Values fill what it leaves unset."""
        env = dict(os.environ if environ is None else environ)
        path = local_settings if local_settings is not None else Path("local.settings.json")
        for name, value in local_values(path).items():
            env.setdefault(name, value)
        return cls.from_mapping(env)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        r = _Reader(env)
        from_number = r.e164("TWILIO_FROM_NUMBER")
        service_sid = r.sid("TWILIO_MESSAGING_SERVICE_SID", "MG")
        if not from_number and not service_sid:
            raise SettingsError("TWILIO_FROM_NUMBER", "set it (E.164) or TWILIO_MESSAGING_SERVICE_SID")
        countries = r.countries("ALLOWED_COUNTRIES")
        if not countries:
            if from_number:
                region = phonenumbers.region_code_for_number(phonenumbers.parse(from_number))
                countries = frozenset({region or "ZZ"})
            else:
                raise SettingsError("ALLOWED_COUNTRIES", "required when only a Messaging Service is configured")
        store = r.text("RELAY_STORE")
        if not store:
            if env.get("WEBSITE_INSTANCE_ID"):
                raise SettingsError("RELAY_STORE", "required on Azure: set it to the storage connection string")
            store = ".data/relay.sqlite3"
        webhook_hosts = r.hosts("WEBHOOK_HOSTS") | r.hosts("WEBSITE_HOSTNAME")
        if env.get("WEBSITE_INSTANCE_ID") and not webhook_hosts and not r.text("PUBLIC_BASE_URL"):
            raise SettingsError("WEBHOOK_HOSTS", "required on Azure without PUBLIC_BASE_URL or WEBSITE_HOSTNAME")
        prefix = r.text("MQTT_TOPIC_PREFIX") or "sms"
        if not _PREFIX.match(prefix):
            raise SettingsError("MQTT_TOPIC_PREFIX", "must be topic levels of letters, digits, - or _")
        access = r.choice("MQTT_BROKER_ACCESS", BROKER_ACCESS, "jwt")
        if access == "rabbitmq":
            for name in (
                "MQTT_USERNAME",
                "MQTT_PASSWORD",
                "RABBITMQ_MANAGEMENT_USERNAME",
                "RABBITMQ_MANAGEMENT_PASSWORD",
            ):
                r.required(name)
            if not r.urls("RABBITMQ_MANAGEMENT_URL", ("http", "https")):
                raise SettingsError("RABBITMQ_MANAGEMENT_URL", "required when MQTT_BROKER_ACCESS=rabbitmq")
        return cls(
            twilio_account_sid=r.required_sid("TWILIO_ACCOUNT_SID", "AC"),
            twilio_auth_token=r.required("TWILIO_AUTH_TOKEN"),
            relay_signing_key=r.signing_key(
                "RELAY_SIGNING_KEY", r.choice("RELAY_SIGNING_ALGORITHM", ALGORITHMS, "HS256", upper=True)
            ),
            relay_signing_algorithm=r.choice("RELAY_SIGNING_ALGORITHM", ALGORITHMS, "HS256", upper=True),
            relay_access_code=r.text("RELAY_ACCESS_CODE") or _required_unless_appservice(r),
            relay_admin_code=r.admin_code("RELAY_ADMIN_CODE", r.text("RELAY_ACCESS_CODE")),
            relay_desks=r.desks("RELAY_DESKS"),
            twilio_from_number=from_number,
            twilio_messaging_service_sid=service_sid,
            twilio_api_base_url=r.url("TWILIO_API_BASE_URL", ("http", "https")),
            twilio_webhook_shared_key=r.text("TWILIO_WEBHOOK_SHARED_KEY"),
            public_base_url=r.url("PUBLIC_BASE_URL", ("http", "https")),
            webhook_hosts=webhook_hosts,
            mqtt_url=",".join(r.urls("MQTT_URL", MQTT_SCHEMES, same_scheme=True)) or "mqtt://127.0.0.1:1883",
            mqtt_username=r.text("MQTT_USERNAME"),
            mqtt_password=r.text("MQTT_PASSWORD"),
            mqtt_browser_url=",".join(r.urls("MQTT_BROWSER_URL", ("ws", "wss"))) or "ws://127.0.0.1:9001",
            mqtt_topic_prefix=prefix,
            mqtt_publish_timeout_seconds=r.number("MQTT_PUBLISH_TIMEOUT_SECONDS", 2.0, 0.1, 10.0),
            webhook_deadline_seconds=r.number("WEBHOOK_DEADLINE_SECONDS", 8.0, 1.0, 14.0),
            mqtt_broker_access=access,
            rabbitmq_management_urls=r.urls("RABBITMQ_MANAGEMENT_URL", ("http", "https")),
            rabbitmq_management_username=r.text("RABBITMQ_MANAGEMENT_USERNAME"),
            rabbitmq_management_password=r.text("RABBITMQ_MANAGEMENT_PASSWORD"),
            relay_store=store,
            conversation_ttl_hours=r.number("CONVERSATION_TTL_HOURS", 4.0, 0.01, 24 * 365),
            max_clock_skew_seconds=r.number("MAX_CLOCK_SKEW_SECONDS", 30.0, 1.0, 3600.0),
            retention_days=int(r.number("RETENTION_DAYS", 90, 1, 3650)),
            session_ttl_hours=r.number("SESSION_TTL_HOURS", 12.0, 0.01, 24 * 30),
            login_max_failures=int(r.number("LOGIN_MAX_FAILURES", 10, 1, 10_000)),
            send_limit_per_minute=int(r.number("SEND_LIMIT_PER_MINUTE", 30, 1, 100_000)),
            send_limit_per_day=int(r.number("SEND_LIMIT_PER_DAY", 2000, 1, 10_000_000)),
            allowed_countries=countries,
            allowed_number_types=r.number_types("ALLOWED_NUMBER_TYPES") or DEFAULT_NUMBER_TYPES,
            new_recipient_limit_per_hour=int(r.number("NEW_RECIPIENT_LIMIT_PER_HOUR", 1000, 1, 1_000_000)),
            new_recipient_limit_per_hour_all_desks=int(
                r.number("NEW_RECIPIENT_LIMIT_PER_HOUR_ALL_DESKS", 2000, 1, 10_000_000)
            ),
            trusted_proxy_hops=int(r.number("TRUSTED_PROXY_HOPS", 0, 0, 10)),
            relay_auth=_auth_mode(r, env),
            log_level=r.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            relay_inbound_mode=r.choice("RELAY_INBOUND_MODE", INBOUND_MODES, "push"),
            poll_schedule=r.text("POLL_SCHEDULE") or "*/30 * * * * *",
            keyword_handlers=r.names("KEYWORD_HANDLERS"),
            help_text=r.text("HELP_TEXT") or Settings.help_text,
            autoreply_text=r.text("AUTOREPLY_TEXT") or Settings.autoreply_text,
            reminder_confirmed_text=r.text("REMINDER_CONFIRMED_TEXT") or Settings.reminder_confirmed_text,
            reminder_declined_text=r.text("REMINDER_DECLINED_TEXT") or Settings.reminder_declined_text,
            reminder_no_answer_hours=r.number("REMINDER_NO_ANSWER_HOURS", 12.0, 0.01, 24 * 35),
            quiet_hours=r.parsed("QUIET_HOURS", parse_window),
            relay_timezone=r.parsed("RELAY_TIMEZONE", lambda v: zone(v or "UTC").key),
            schedule_min_lead_seconds=r.number("SCHEDULE_MIN_LEAD_SECONDS", 60.0, 0, 24 * 3600),
            schedule_poll_seconds=r.number("SCHEDULE_POLL_SECONDS", 15.0, 1, 3600),
            send_rate_per_second=r.number("SEND_RATE_PER_SECOND", 1.0, 0.1, 1000),
            media_storage=r.text("MEDIA_STORAGE") or _blobs_of(store),
            clinic_name=_clinic_name(r),
        )


def _blobs_of(store: str) -> str | None:
    """A storage account's connection string serves its blobs too, unless it names only a Table endpoint."""
    if "BlobEndpoint=" in store or store.startswith("UseDevelopmentStorage="):
        return store
    return store if "AccountName=" in store and "TableEndpoint=" not in store else None


def _clinic_name(r: _Reader) -> str:
    """{clinic} in reminder texts: one line of plain text, as a desk's name."""
    value = r.text("CLINIC_NAME") or Settings.clinic_name
    if len(value) > 80 or any(c < " " or c == "\x7f" for c in value):
        raise SettingsError("CLINIC_NAME", "must be one line of at most 80 characters")
    return value


def _required_unless_appservice(r: _Reader) -> str:
    if r.choice("RELAY_AUTH", AUTH_MODES, "accesscode") == "appservice":
        return ""
    raise SettingsError("RELAY_ACCESS_CODE", "required unless RELAY_AUTH=appservice")


def _auth_mode(r: _Reader, env: Mapping[str, str]) -> str:
    """On Azure, App Service Authentication must be on before its principal headers mean anything: without it
    they are whatever the caller sent."""
    mode = r.choice("RELAY_AUTH", AUTH_MODES, "accesscode")
    enabled = env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"
    if mode == "appservice" and env.get("WEBSITE_INSTANCE_ID") and not enabled:
        raise SettingsError("RELAY_AUTH", "appservice needs App Service Authentication on (WEBSITE_AUTH_ENABLED=true)")
    return mode


def local_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(str(path), f"unreadable: {exc}") from None
    values = data.get("Values", {}) if isinstance(data, dict) else {}
    if not isinstance(values, dict):
        raise SettingsError(str(path), "Values must be an object")
    return {str(k): str(v) for k, v in values.items() if v is not None and str(v) != ""}


class _Reader:
    """Typed accessors over the raw mapping; each failure names its setting."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise SettingsError(name, "required")
        return value

    def signing_key(self, name: str, algorithm: str) -> str:
        value = self.required(name)
        if algorithm == "RS256":
            pem = value.replace("\\n", "\n")  # app settings often carry a PEM on one line
            try:
                TokenIssuer(pem, Topics(), "RS256")
            except (ValueError, TypeError):
                raise SettingsError(name, "must be a PEM RSA private key when RELAY_SIGNING_ALGORITHM=RS256") from None
            return pem
        if len(value) < 32:
            raise SettingsError(name, "must be at least 32 characters")
        return value

    def admin_code(self, name: str, access_code: str | None) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        if len(value) < 12:
            raise SettingsError(name, "must be at least 12 characters")
        if access_code is not None and value == access_code:
            raise SettingsError(name, "must differ from RELAY_ACCESS_CODE: staff must not be operators")
        return value

    def desks(self, name: str) -> tuple[DeskSpec, ...]:
        try:
            return parse_desks(self.text(name) or DEFAULT_DESKS)
        except DeskRuleError as exc:
            raise SettingsError(name, str(exc)) from None

    def sid(self, name: str, prefix: str) -> str | None:
        value = self.text(name)
        if value and not (_SID.match(value) and value.startswith(prefix)):
            raise SettingsError(name, f"must be a Twilio SID starting with {prefix}")
        return value

    def required_sid(self, name: str, prefix: str) -> str:
        value = self.sid(name, prefix)
        if not value:
            raise SettingsError(name, "required")
        return value

    def e164(self, name: str) -> str | None:
        value = self.text(name)
        if not value:
            return None
        try:
            parsed = phonenumbers.parse(value)
        except phonenumbers.NumberParseException:
            raise SettingsError(name, "must be an E.164 number such as +14155550100") from None
        formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if formatted != value or not phonenumbers.is_possible_number(parsed):
            raise SettingsError(name, "must be an E.164 number such as +14155550100")
        return value

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if not value:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise SettingsError(name, "is not a valid URL") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise SettingsError(name, f"must be a URL with scheme {', '.join(schemes)} and a host")
        return value.rstrip("/")

    def urls(self, name: str, schemes: tuple[str, ...], *, same_scheme: bool = False) -> tuple[str, ...]:
        """A comma list of URLs (a cluster's nodes, tried in turn), each checked like `url`."""
        parts = (_Reader({name: part}).url(name, schemes) for part in (self.text(name) or "").split(","))
        urls = tuple(part for part in parts if part)
        if same_scheme and len({urlsplit(u).scheme for u in urls}) > 1:
            raise SettingsError(name, "every URL in the list must use the same scheme")
        return urls

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, "must be a number") from None
        if not low <= number <= high:
            raise SettingsError(name, f"must be between {low:g} and {high:g}")
        return number

    def choice(self, name: str, options: tuple[str, ...], default: str, *, upper: bool = False) -> str:
        value = self.text(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in options:
            raise SettingsError(name, f"must be one of {', '.join(options)}")
        return value

    def parsed(self, name: str, parse: Callable[[str], T]) -> T:
        """`parse` gets the trimmed value ('' when unset) and raises ValueError to refuse it."""
        try:
            return parse(self.text(name) or "")
        except ValueError as exc:
            raise SettingsError(name, str(exc)) from None

    def names(self, name: str) -> tuple[str, ...]:
        value = self.text(name) or ""
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())

    def hosts(self, name: str) -> frozenset[str]:
        hosts = set()
        for entry in self.names(name):
            try:
                parts = urlsplit(f"//{entry}")
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise SettingsError(name, f"{entry!r} is not a host or host:port") from None
            if not parts.hostname or parts.path or parts.query or parts.username is not None:
                raise SettingsError(name, f"{entry!r} is not a host or host:port")
            hosts.add(entry)
        return frozenset(hosts)

    def number_types(self, name: str) -> frozenset[str]:
        types = {kind.upper() for kind in self.names(name)}
        unknown = sorted(types - set(NUMBER_TYPES))
        if unknown:
            raise SettingsError(name, f"unknown number type(s) {', '.join(unknown)}; one of {', '.join(NUMBER_TYPES)}")
        return frozenset(types)

    def countries(self, name: str) -> frozenset[str]:
        codes = {code.upper() for code in self.names(name)}
        known = phonenumbers.SUPPORTED_REGIONS
        unknown = sorted(codes - known)
        if unknown:
            raise SettingsError(name, f"unknown ISO 3166 region(s): {', '.join(unknown)}")
        return frozenset(codes)
