"""Runs `function_app.app` the way the Functions host and Python worker do, as an ASGI app.

The route table is built once from `app.get_functions()` (a second call raises). Each request becomes a
real `azure.functions.HttpRequest` with the full URL the client used, and sync functions run in a thread
pool, as the Python worker runs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import azure.functions as func
from azure.functions.timer import TimerRequest
from starlette.requests import Request
from starlette.responses import Response

from devhost.timers import Schedule, TimerJob, resolve_schedule

MAX_BODY_BYTES = 1024 * 1024
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


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, headers=headers, media_type="application/json")


class FunctionsHost:
    def __init__(self, app: func.FunctionApp, route_prefix: str, *, threads: int = 16) -> None:
        self.http, self.timers = load_functions(app, route_prefix)
        self._limiter = anyio.CapacityLimiter(threads)

    def match(self, path: str) -> list[tuple[HttpFunction, dict[str, str]]]:
        found = []
        for fn in self.http:
            m = fn.pattern.match(path)
            if m:
                found.append((fn, {k: unquote(v) for k, v in m.groupdict().items() if v is not None}))
        return found

    async def handle(self, request: Request) -> Response:
        raw_path = bytes(request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        matches = self.match(raw_path)
        if not matches:
            return json_error(404, "not_found", "No function serves this path.")
        allowed = [(fn, params) for fn, params in matches if request.method in fn.methods]
        if not allowed:
            methods = sorted({m for fn, _ in matches for m in fn.methods})
            return json_error(405, "method_not_allowed", "Method not allowed.", {"Allow": ", ".join(methods)})
        fn, route_params = allowed[0]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return json_error(413, "payload_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return json_error(413, "payload_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
        headers = {k: v for k, v in request.headers.items() if k != "x-client-ip"}
        if request.client:
            headers["x-client-ip"] = request.client.host
        query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        req = func.HttpRequest(
            method=request.method,
            url=f"{request.url.scheme}://{host}{raw_path}" + (f"?{query}" if query else ""),
            headers=headers,
            params=dict(parse_qsl(request.url.query, keep_blank_values=True)),
            route_params=route_params,
            body=bytes(body),
        )
        result = await anyio.to_thread.run_sync(lambda: fn.call(**{fn.arg_name: req}), limiter=self._limiter)
        return to_response(result)


def to_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        headers = {k.lower(): v for k, v in result.headers.items() if k.lower() != "content-length"}
        if "content-type" not in headers and result.status_code != 204:
            headers["content-type"] = f"{result.mimetype}; charset={result.charset}"
        return Response(result.get_body(), result.status_code, headers=headers)
    if result is None:
        return Response(status_code=204)
    return Response(str(result), 200, media_type="text/plain")
