"""What the development broker needs to know, read from flags and the environment, and its amqtt configuration."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.errors import SettingsError

MIN_KEY_LENGTH = 32
_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class BrokerConfig:
    """A port of 0 asks the OS for a free one; `DevBroker` reports the port it got."""

    signing_key: str = field(repr=False)
    host: str = "127.0.0.1"
    mqtt_port: int = 1883
    ws_port: int = 9001
    topic_prefix: str = "sms"

    def __post_init__(self) -> None:
        if len(self.signing_key) < MIN_KEY_LENGTH:
            raise SettingsError("RELAY_SIGNING_KEY", f"must be at least {MIN_KEY_LENGTH} characters")
        if not _PREFIX.match(self.topic_prefix):
            raise SettingsError("MQTT_TOPIC_PREFIX", "must be topic levels of letters, digits, - or _")
        for name, port in (("mqtt_port", self.mqtt_port), ("ws_port", self.ws_port)):
            if not 0 <= port <= 65535:
                raise SettingsError(name, "must be a TCP port number")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        ws_port: int = 9001,
    ) -> BrokerConfig:
        """The key and prefix come from the same variables the relay reads, so both sides agree."""
        env = os.environ if environ is None else environ
        key = env.get("RELAY_SIGNING_KEY", "").strip()
        if not key:
            raise SettingsError("RELAY_SIGNING_KEY", "required")
        prefix = env.get("MQTT_TOPIC_PREFIX", "").strip() or "sms"
        return cls(signing_key=key, host=host, mqtt_port=mqtt_port, ws_port=ws_port, topic_prefix=prefix)

    @property
    def signout_topic(self) -> str:
        """Only the relay service's `pub` claim covers it; desks can neither publish nor subscribe to it."""
        return f"{self.topic_prefix}/_control/signout"

    def amqtt_config(self) -> dict[str, Any]:
        """Only our three plugins: no anonymous access, no $SYS publisher, no packet logger (it would log tokens)."""
        return {
            "listeners": {
                "default": {"type": "tcp", "bind": _bind(self.host, self.mqtt_port)},
                "ws": {"type": "ws", "bind": _bind(self.host, self.ws_port)},
            },
            "plugins": {
                "amqtt.contrib.jwt.UserAuthJwtPlugin": {"secret_key": self.signing_key, "user_claim": "sub"},
                "amqtt.contrib.jwt.TopicAuthJwtPlugin": {
                    "secret_key": self.signing_key,
                    "publish_claim": "pub",
                    "subscribe_claim": "subs",
                    "receive_claim": "subs",
                },
                "broker.auth.DeskGuardPlugin": {"secret_key": self.signing_key, "signout_topic": self.signout_topic},
            },
        }


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
