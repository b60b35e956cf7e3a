"""Runs `function_app.app` the way the Functions host and Python worker do, as an ASGI app.

The route table is built once from `app.get_functions()` (a second call raises). Each request becomes a
real `azure.functions.HttpRequest` with the full URL the client used, and sync functions run in a thread
pool, as the Python worker runs them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import azure.functions as func
from azure.functions.timer import TimerRequest
from starlette.types import Receive, Scope, Send

from devhost.timers import Schedule, TimerJob, resolve_schedule

MAX_BODY_BYTES = 6 * 1024 * 1024  # the largest body a function takes is a 5 MB picture; each function checks its own
TEMPLATE_PART = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    arg_name: str
    call: Callable[..., Any]


def compile_route(prefix: str, template: str) -> re.Pattern[str]:
    """Azure route templates: `{name}`, `{name:constraint}`, `{name?}` and a catch-all `{*rest}`."""
    out, pos = [], 0
    for m in TEMPLATE_PART.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        body = ".+" if m.group(1) else "[^/]+"
        group = f"(?P<{m.group(2)}>{body})"
        out.append(f"(?:{group})?" if m.group(3) else group)
        pos = m.end()
    out.append(re.escape(template[pos:]))
    root = f"/{prefix.strip('/')}/" if prefix.strip("/") else "/"
    return re.compile("^" + re.escape(root) + "".join(out) + "/?$")


def load_functions(app: func.FunctionApp, route_prefix: str) -> tuple[list[HttpFunction], list[TimerJob]]:
    http, timers = [], []
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        name = fn.get_function_name() or ""
        if trigger is None:
            continue
        user_function = fn.get_user_function()
        if trigger.get_binding_name() == "httpTrigger":
            data = trigger.get_dict_repr()
            methods = frozenset(str(m).upper() for m in (data.get("methods") or ["GET", "POST"]))
            route = str(data.get("route") or name)
            http.append(HttpFunction(name, compile_route(route_prefix, route), methods, trigger.name, user_function))
        elif trigger.get_binding_name() == "timerTrigger":
            schedule = Schedule.parse(resolve_schedule(trigger.get_dict_repr()["schedule"]))
            arg = trigger.name
            timers.append(TimerJob(name, schedule, _timer_call(user_function, arg)))
    return http, timers


def _timer_call(user_function: Callable[..., Any], arg: str) -> Callable[[], None]:
    def run() -> None:
        user_function(**{arg: TimerRequest(past_due=False)})

    return run


# What functions.http puts on every JSON response; the host's own errors promise the same (docs/api.md).
ERROR_HEADERS = {"content-type": "application/json", "x-content-type-options": "nosniff", "cache-control": "no-store"}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Reply(status, {**(headers or {}), **ERROR_HEADERS}, body)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class FunctionsHost:
    """An ASGI app for every path under the route prefix, without a web framework in between: this sits on the
    path of every webhook, and Starlette's request and response objects cost more than the routing itself."""

    def __init__(self, app: func.FunctionApp, route_prefix: str, *, threads: int) -> None:
        self.http, self.timers = load_functions(app, route_prefix)
        # As the Python worker runs sync functions: a ThreadPoolExecutor, through run_in_executor.
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="function")

    def match(self, path: str) -> list[tuple[HttpFunction, dict[str, str]]]:
        found = []
        for fn in self.http:
            m = fn.pattern.match(path)
            if m:
                found.append((fn, {k: unquote(v) for k, v in m.groupdict().items() if v is not None}))
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = await self.handle(scope, receive)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def handle(self, scope: Scope, receive: Receive) -> Reply:
        raw_path = bytes(scope.get("raw_path") or str(scope["path"]).encode()).decode("latin-1")
        method = str(scope["method"])
        matches = self.match(raw_path)
        if not matches:
            return json_error(404, "not_found", "No function serves this path.")
        allowed = [(fn, params) for fn, params in matches if method in fn.methods]
        if not allowed:
            # As ASP.NET routing: a literal segment outranks a parameter, so `contacts/import` answers for itself.
            fewest = min(len(params) for _, params in matches)
            methods = sorted({m for fn, params in matches if len(params) == fewest for m in fn.methods})
            return json_error(405, "method_not_allowed", "Method not allowed.", {"allow": ", ".join(methods)})
        # A literal segment outranks a parameter here too: `reminders/export` is not the reminder "export".
        fn, route_params = min(allowed, key=lambda found: len(found[1]))
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return json_error(413, "payload_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return json_error(400, "client_disconnected", "The client went away.")
            body.extend(message.get("body", b""))
            if len(body) > MAX_BODY_BYTES:
                return json_error(413, "payload_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
            if not message.get("more_body"):
                break
        headers.pop("x-client-ip", None)
        if scope.get("client"):
            headers["x-client-ip"] = str(scope["client"][0])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        server = scope.get("server") or ("127.0.0.1", 80)
        host = headers.get("host") or f"{server[0]}:{server[1]}"
        req = func.HttpRequest(
            method=method,
            url=f"{scope.get('scheme', 'http')}://{host}{raw_path}" + (f"?{query}" if query else ""),
            headers=headers,
            params=dict(parse_qsl(query, keep_blank_values=True)),
            route_params=route_params,
            body=bytes(body),
        )
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, lambda: fn.call(**{fn.arg_name: req}))
        return to_reply(result)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def to_reply(result: Any) -> Reply:
    if isinstance(result, func.HttpResponse):
        headers = {k.lower(): v for k, v in result.headers.items() if k.lower() != "content-length"}
        if "content-type" not in headers and result.status_code != 204:
            headers["content-type"] = f"{result.mimetype}; charset={result.charset}"
        return Reply(result.status_code, headers, result.get_body())
    if result is None:
        return Reply(204, {}, b"")
    return Reply(200, {"content-type": "text/plain; charset=utf-8"}, str(result).encode())
