"""An in-process Runtime on a chosen store, a real broker and the sandbox, with a clock the test moves."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from relay.clock import ManualClock
from relay.runtime import Runtime, build
from relay.sessions import SessionGrant, SessionRequest
from relay.settings import Settings
from relay.store import Store

ACCOUNT = "AC" + "1" * 32
TOKEN = "sandbox-token"
OURS = "+14155550100"
ACCESS_CODE = "open-sesame"


def make_runtime(store: Store, mqtt_port: int, signing_key: str, sandbox_url: str, **env: str) -> Runtime:
    settings = Settings.from_mapping(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": OURS,
            "TWILIO_API_BASE_URL": sandbox_url + "/twilio",
            "RELAY_SIGNING_KEY": signing_key,
            "RELAY_ACCESS_CODE": ACCESS_CODE,
            "MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "WEBHOOK_HOSTS": "127.0.0.1",  # the loopback servers tests run the relay behind, on any port
            **env,
        }
    )
    rt = build(settings, ManualClock(datetime.now(UTC)), store)
    assert rt.publisher.wait_connected(10)
    return rt


def clock(rt: Runtime) -> ManualClock:
    assert isinstance(rt.clock, ManualClock)
    return rt.clock


def desk(rt: Runtime, desk_id: str | None = None, staff: str = "Maria", address: str = "127.0.0.1") -> SessionGrant:
    """A staff session at a desk (the default desk, Reception, unless named)."""
    return rt.sessions.open(SessionRequest(ACCESS_CODE, desk_id, staff, None, address))


def as_session(grant: SessionGrant, rt: Runtime) -> dict[str, Any]:
    """The shape `/api/session` answers, for a Subscriber."""
    return {
        "token": grant.token,
        "mqtt": {
            "clientId": grant.client_id,
            "username": grant.mqtt_username,
            "password": grant.mqtt_password,
            "topics": rt.topics.filters_for(grant.web_app_id),
        },
    }


def inbound_params(phone: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or "SM" + secrets.token_hex(16),
        "AccountSid": ACCOUNT,
        "From": phone,
        "To": OURS,
        "Body": body,
        "NumMedia": "0",
        **extra,
    }
