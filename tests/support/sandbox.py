"""The Twilio sandbox in one uvicorn with a receiver that plays our Functions and checks every signature."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from twilio.request_validator import HMAC_SHA1, RequestValidator, get_signature_algorithm
from twilio.rest import Client

from devhost.sandbox import SandboxConfig, create_sandbox_app
from devhost.sandbox.state import SandboxState
from tests.support.ports import free_port, wait_for_port

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "sandbox-auth-token"
OUR = "+14155550100"
POOL_2 = "+14155550102"
SERVICE = "MG" + "fedcba9876543210" * 2
PHONE = "+14155550101"
T = TypeVar("T")


@dataclass
class Receiver:
    """Test double for OUR Functions: records each Twilio request and checks its signature."""

    public_base: str | None = None
    shared_key: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        signed = (self.public_base + request.url.path) if self.public_base else str(request.url)
        algorithm = get_signature_algorithm(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
        key = TOKEN if algorithm == HMAC_SHA1 else self.shared_key or ""
        signature = request.headers.get("X-Twilio-Signature", "")
        valid = RequestValidator(key).validate(signed, form, signature, algorithm)
        with self.lock:
            self.requests.append(
                {"path": request.url.path, "form": form, "valid": valid, "algorithm": algorithm, "at": time.monotonic()}
            )
        body = form.get("Body", "")
        if body == "teapot":
            return Response("short and stout", status_code=418)
        if body.startswith("echo "):
            return Response(f"<Response><Message>{body[5:]}</Message></Response>", media_type="text/xml")
        return Response("<Response/>", media_type="text/xml")

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@dataclass
class Sandbox:
    base: str
    config: SandboxConfig
    state: SandboxState
    receiver: Receiver
    http: httpx.Client
    client: Client

    def reply(self, phone: str, **payload: Any) -> httpx.Response:
        return self.http.post(f"/sandbox/phones/{phone}/reply", json=payload)

    def phone_messages(self, phone: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.http.get(f"/sandbox/phones/{phone}/messages").json()
        return result


def sdk_client(base: str, sid: str = ACCOUNT, token: str = TOKEN) -> Client:
    # A non-empty environment, or twilio falls back to os.environ (and TWILIO_REGION would rewrite the host).
    client = Client(sid, token, environment={"TWILIO_REGION": ""})
    client.api.base_url = f"{base}/sandbox/twilio"
    return client


def wait_for(probe: Callable[[], T | None], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


@contextmanager
def sandboxes() -> Iterator[Callable[..., Sandbox]]:
    """Start sandbox + receiver in one uvicorn on a free port, as the devhost mounts them."""
    stops: list[Callable[[], None]] = []

    def start(**overrides: Any) -> Sandbox:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = SandboxConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            from_number=OUR,
            messaging_service_sid=SERVICE,
            service_numbers=(OUR, POOL_2),
            webhook_url=f"{base}/api/receive_sms",
            status_delay_seconds=0.02,
        )
        config = replace(config, **overrides)
        receiver = Receiver(public_base=config.public_base_url, shared_key=config.webhook_shared_key)
        sandbox_app = create_sandbox_app(config)
        app = Starlette(
            routes=[
                Mount("/sandbox", sandbox_app),
                Route("/api/receive_sms", receiver.handle, methods=["POST"]),
                Route("/api/sms_status", receiver.handle, methods=["POST"]),
            ]
        )
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_port(port, timeout=10)
        http = httpx.Client(base_url=base, timeout=15)

        def stop() -> None:
            http.close()
            server.should_exit = True
            thread.join(timeout=10)

        stops.append(stop)
        return Sandbox(base, config, sandbox_app.state.sandbox, receiver, http, sdk_client(base))

    try:
        yield start
    finally:
        for stop in stops:
            stop()
