"""`python -m bench.original`: the 2018 design, as the baseline the relay is measured against.

Per webhook: check the Twilio signature, serialize the form to JSON and publish it QoS 0 with a brand-new MQTT
connection over TLS (connect, publish, disconnect), as the first version of the project did. No store, no routing.
It runs under the same uvicorn settings as devhost, with the handler in a worker thread like a sync function.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
import paho.mqtt.publish as mqtt_publish
import uvicorn
from twilio.request_validator import RequestValidator

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
TOPIC = "sms/unrouted/inbound"


class OriginalWebhook:
    def __init__(self, auth_token: str, broker_port: int, cafile: str, username: str, password: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._port = broker_port
        self._tls = {"ca_certs": cafile}
        self._auth = {"username": username, "password": password}

    def handle(self, url: str, signature: str, body: bytes) -> int:
        params = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
        if not self._validator.validate(url, params, signature):
            return 403
        mqtt_publish.single(
            TOPIC,
            json.dumps(params, ensure_ascii=False),
            qos=0,
            hostname="127.0.0.1",
            port=self._port,
            client_id=f"relay-service-{secrets.token_hex(6)}",
            auth=self._auth,  # type: ignore[arg-type]
            tls=self._tls,  # type: ignore[arg-type]
        )
        return 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        url = f"http://{headers.get('host', '')}{scope['path']}"
        status = await anyio.to_thread.run_sync(self.handle, url, headers.get("x-twilio-signature", ""), body)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/xml")]})
        await send({"type": "http.response.body", "body": TWIML if status == 200 else b""})


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.original")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    args = parser.parse_args()
    app = OriginalWebhook(
        os.environ["TWILIO_AUTH_TOKEN"],
        args.broker_port,
        args.cafile,
        os.environ.get("MQTT_USERNAME", ""),
        os.environ.get("MQTT_PASSWORD", ""),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
