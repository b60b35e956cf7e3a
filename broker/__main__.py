"""`python -m broker`: run the development broker until SIGTERM/SIGINT.

Prints `broker ready mqtt://HOST:PORT ws://HOST:PORT` on stdout once both listeners accept connections.
Exit codes: 0 after a signal, 1 when a listener cannot start, 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from amqtt.errors import BrokerError

from broker.config import BrokerConfig
from broker.server import DevBroker
from relay.errors import SettingsError

SHUTDOWN_SECONDS = 4.0
logger = logging.getLogger("broker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m broker", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address both listeners bind to (default 127.0.0.1)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="MQTT over TCP; 0 picks a free port")
    parser.add_argument("--ws-port", type=int, default=9001, help="MQTT over WebSocket; 0 picks a free port")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    try:
        config = BrokerConfig.from_env(host=args.host, mqtt_port=args.mqtt_port, ws_port=args.ws_port)
    except SettingsError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 2
    # Other libraries stay at WARNING: amqtt's DEBUG output includes CONNECT packets (tokens) and SMS text.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logger.setLevel(args.log_level)
    return asyncio.run(_serve(config))


async def _serve(config: BrokerConfig) -> int:
    broker = DevBroker(config)
    try:
        await broker.start()
    except BrokerError as exc:
        print(f"broker: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"broker ready {broker.mqtt_url} {broker.ws_url}", flush=True)
    await stop.wait()
    try:
        await asyncio.wait_for(broker.shutdown(), SHUTDOWN_SECONDS)
    except TimeoutError:
        logger.warning("shutdown took longer than %ss; exiting anyway", SHUTDOWN_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
