"""The embedded development MQTT broker (amqtt): JWT auth, per-desk topic isolation, sign-out."""

from broker.config import BrokerConfig
from broker.server import DevBroker, run_broker

__all__ = ["BrokerConfig", "DevBroker", "run_broker"]
