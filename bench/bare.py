"""`python -m bench.bare`: the bare pipeline the relay's throughput is a ratio of, measured in the same run.

Starlette, the twilio SDK's signature check, one SQLite insert per MessageSid and a long-lived paho client
publishing QoS 1: the work a webhook cannot do without, and nothing else (no routing, no outbox, no events).
It runs with as many worker processes as devhost is given, each with its own connection and client.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import threading
from pathlib import Path
from urllib.parse import parse_qsl

import paho.mqtt.client as mqtt
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
TOPIC = "sms/unrouted/inbound"
PUBLISH_TIMEOUT = 2.0


class Pipeline:
    def __init__(self, auth_token: str, database: Path, broker_port: int, username: str, password: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # the relay's SQLite store's settings
        self._db.execute("CREATE TABLE IF NOT EXISTS messages (sid TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"relay-service-bare-{secrets.token_hex(4)}")
        self._client.username_pw_set(username, password)
        self._client.connect("127.0.0.1", broker_port)
        self._client.loop_start()

    def handle(self, url: str, signature: str, body: bytes) -> int:
        params = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
        if not self._validator.validate(url, params, signature):
            return 403
        payload = json.dumps(params, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?)", (params.get("MessageSid", ""), payload))
        published = self._client.publish(TOPIC, payload, qos=1)
        published.wait_for_publish(PUBLISH_TIMEOUT)
        return 200 if published.is_published() else 503  # no outbox here: unpublished is not done


def create_app() -> Starlette:
    pipeline = Pipeline(
        os.environ["TWILIO_AUTH_TOKEN"],
        Path(os.environ["BARE_DATABASE"]),
        int(os.environ["BARE_BROKER_PORT"]),
        os.environ.get("MQTT_USERNAME", ""),
        os.environ.get("MQTT_PASSWORD", ""),
    )

    async def receive(request: Request) -> Response:
        body = await request.body()
        url = f"http://{request.headers.get('host', '')}{request.url.path}"
        signature = request.headers.get("x-twilio-signature", "")
        status = await run_in_threadpool(pipeline.handle, url, signature, body)
        return Response(TWIML if status == 200 else b"", status_code=status, media_type="text/xml")

    return Starlette(routes=[Route("/api/receive_sms", receive, methods=["POST"])])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
