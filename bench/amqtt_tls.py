"""`python -m bench.amqtt_tls`: the product's embedded broker with an extra MQTT-over-TLS listener.

`python -m broker` has no TLS listener; the original design published over TLS, so the benchmark adds one here
to compare both designs with TLS on amqtt too. Authentication and plugins are the product's own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

from broker.__main__ import _serve
from broker.config import BrokerConfig


@dataclass(frozen=True)
class TlsBrokerConfig(BrokerConfig):
    tls_port: int = 0
    certfile: str = ""
    keyfile: str = ""

    def amqtt_config(self) -> dict[str, Any]:
        config = super().amqtt_config()
        config["listeners"]["tls"] = {
            "type": "tcp",
            "bind": f"{self.host}:{self.tls_port}",
            "ssl": True,
            "certfile": self.certfile,
            "keyfile": self.keyfile,
        }
        return config


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.amqtt_tls")
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--ws-port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    args = parser.parse_args()
    base = BrokerConfig.from_env(mqtt_port=args.mqtt_port, ws_port=args.ws_port)
    config = TlsBrokerConfig(
        signing_key=base.signing_key,
        host=base.host,
        mqtt_port=base.mqtt_port,
        ws_port=base.ws_port,
        topic_prefix=base.topic_prefix,
        tls_port=args.tls_port,
        certfile=args.certfile,
        keyfile=args.keyfile,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(_serve(config))


if __name__ == "__main__":
    raise SystemExit(main())
