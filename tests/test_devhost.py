"""The local host: Azure route templates, NCRONTAB timers, and running a FunctionApp as the worker does."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import httpx
import pytest

from devhost.functions_host import MAX_BODY_BYTES, FunctionsHost, compile_route
from devhost.timers import Schedule, TimerJob, resolve_schedule, run_timers
from tests.support.asgi import serve_in_thread
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber


def test_route_templates_follow_azure() -> None:
    pattern = compile_route("api", "conversations/{phone}/messages")
    match = pattern.match("/api/conversations/%2B14155550101/messages")
    assert match is not None
    assert match.group("phone") == "%2B14155550101"
    assert pattern.match("/api/conversations/a/b/messages") is None
    assert compile_route("api", "files/{*rest}").match("/api/files/a/b/c") is not None
    optional = compile_route("", "items/{id?}")
    assert optional.match("/items/") is not None
    assert optional.match("/items/7") is not None


def test_ncrontab_has_seconds_and_sunday_is_zero() -> None:
    every_30s = Schedule.parse("*/30 * * * * *")
    assert every_30s.matches(datetime(2026, 1, 4, 9, 0, 30, tzinfo=UTC))
    assert not every_30s.matches(datetime(2026, 1, 4, 9, 0, 31, tzinfo=UTC))
    sundays = Schedule.parse("0 0 3 * * 0")
    assert sundays.matches(datetime(2026, 1, 4, 3, 0, 0, tzinfo=UTC))  # a Sunday
    assert not sundays.matches(datetime(2026, 1, 5, 3, 0, 0, tzinfo=UTC))
    assert Schedule.parse("0 15,45 9-17 * * 1-5").matches(datetime(2026, 1, 5, 9, 45, tzinfo=UTC))
    for bad in ("* * * * *", "61 * * * * *", "*/0 * * * * *"):
        with pytest.raises(ValueError, match=r"."):
            Schedule.parse(bad)


def test_schedules_can_name_a_setting() -> None:
    assert resolve_schedule("%POLL_SCHEDULE%", {"POLL_SCHEDULE": "*/5 * * * * *"}) == "*/5 * * * * *"
    with pytest.raises(ValueError, match="POLL_SCHEDULE"):
        resolve_schedule("%POLL_SCHEDULE%", {})


def test_timers_run_on_schedule_and_stop() -> None:
    ran = threading.Event()
    job = TimerJob("tick", Schedule.parse("* * * * * *"), ran.set)

    async def scenario() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(run_timers([job], stop))
        fired = await asyncio.to_thread(ran.wait, 3.0)
        stop.set()
        await asyncio.wait_for(task, 5)
        return fired

    assert asyncio.run(scenario())


def test_a_function_app_runs_with_real_http_requests() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    seen: list[func.HttpRequest] = []

    @app.route(route="echo/{name}", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        seen.append(req)
        return func.HttpResponse(f"hi {req.route_params['name']}", status_code=201, mimetype="text/plain")

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
    def hourly(timer: func.TimerRequest) -> None:
        return None

    host = FunctionsHost(app, "api", threads=2)
    assert [t.name for t in host.timers] == ["hourly"]
    with serve_in_thread(host) as base:
        r = httpx.post(f"{base}/api/echo/ada%20l?x=1", content=b"body", headers={"X-Test": "1"}, timeout=5)
        wrong_method = httpx.get(f"{base}/api/echo/ada", timeout=5)
        missing = httpx.get(f"{base}/api/nothing", timeout=5)
        too_large = httpx.post(f"{base}/api/echo/ada", content=b"x" * (MAX_BODY_BYTES + 1), timeout=5)
    assert r.status_code == 201
    assert r.text == "hi ada l"
    assert isinstance(seen[0], func.HttpRequest)
    assert seen[0].url == f"{base}/api/echo/ada%20l?x=1"
    assert seen[0].params == {"x": "1"}
    assert seen[0].get_body() == b"body"
    assert seen[0].headers["x-test"] == "1"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert missing.status_code == 404
    assert too_large.status_code == 413
    for error in (wrong_method, missing, too_large):
        assert error.json()["error"]["code"]
        assert error.headers["x-content-type-options"] == "nosniff"
        assert error.headers["cache-control"] == "no-store"


def worker_pids(parent: int) -> set[int]:
    """The function processes a devhost started (multiprocessing's resource tracker is not one)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def test_several_workers_serve_one_port_with_the_sandbox_apart(
    broker: BrokerProcess, signing_key: str, tmp_path: Path
) -> None:
    host = DevhostProcess(broker, tmp_path, access_code=secrets.token_urlsafe(12), signing_key=signing_key, workers=2)
    with host:
        assert host.sandbox_url != f"{host.base_url}/sandbox"
        workers = worker_pids(host.pid)
        assert len(workers) == 2
        desk = host.session()
        phones = [f"+1415555{3000 + i:04d}" for i in range(30)]
        with Subscriber(broker.mqtt_port, desk) as sub, ThreadPoolExecutor(10) as pool:

            def text(phone: str) -> str:
                r = httpx.post(f"{host.sandbox_url}/phones/{phone}/reply", json={"body": "hello"}, timeout=20)
                r.raise_for_status()
                return str(r.json()["sid"])

            sids = list(pool.map(text, phones))  # 30 webhooks at once, into two processes and one SQLite file
            arrived: list[str] = []
            deadline = time.monotonic() + 15
            while len(arrived) < len(sids) and time.monotonic() < deadline:
                arrived += [p["MessageSid"] for t, p in sub.drain(0.3) if t.endswith("/inbound")]
        assert sorted(arrived) == sorted(sids)
        sent = httpx.post(
            f"{host.base_url}/api/send_sms",
            json={"to": phones[0], "body": "Thanks, see you soon."},
            headers={"Authorization": f"Bearer {desk['token']}"},
            timeout=15,
        )
        assert sent.status_code == 201, sent.text
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
