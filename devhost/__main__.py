"""`python -m devhost`: the whole product on one machine: broker, functions, sandbox and web client.

Azure Functions Core Tools cannot be installed here, so this runs the same `function_app.app` Azure runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from devhost.devsettings import development_environment
from devhost.sandbox import create_sandbox_app
from devhost.serving import Announcement, sandbox_config, serve, serve_workers
from relay.errors import SettingsError
from relay.settings import Settings, local_values

ROOT = Path(__file__).resolve().parent.parent
BROKER_READY_SECONDS = 20.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=7071)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--ws-port", type=int, default=9001)
    parser.add_argument(
        "--sandbox",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the Twilio sandbox (default: on when TWILIO_ACCOUNT_SID is unset)",
    )
    parser.add_argument("--data-dir", default=str(ROOT / ".data"), help="where development secrets and SQLite live")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="function processes serving the HTTP port (default: FUNCTIONS_WORKER_PROCESS_COUNT, else 1); "
        "with more than one, the sandbox gets a port of its own",
    )
    parser.add_argument("--sandbox-port", type=int, default=0, help="the sandbox's port with --workers > 1 (0: free)")
    return parser.parse_args(argv)


def worker_shape(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Processes and threads per process, read from the app settings Azure's Python worker reads."""
    try:
        if args.workers is None:
            args.workers = int(env.get("FUNCTIONS_WORKER_PROCESS_COUNT") or 1)
        threads = env.get("PYTHON_THREADPOOL_THREAD_COUNT")
        args.threads = int(threads) if threads else min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's
    except ValueError:
        raise SystemExit("devhost: worker process and thread counts must be whole numbers") from None
    if not 1 <= args.workers <= 10 or not 1 <= args.threads <= 32:
        raise SystemExit("devhost: between 1 and 10 worker processes, each with 1 to 32 threads")


def bound_hosts(args: argparse.Namespace) -> list[str]:
    """The names this host answers webhooks on: the address it binds, and localhost for a loopback one."""
    name = f"[{args.host}]" if ":" in args.host else args.host
    hosts = [f"{name}:{args.http_port}"]
    if args.host in ("127.0.0.1", "::1"):
        hosts.append(f"localhost:{args.http_port}")
    return hosts


def start_broker(env: dict[str, str], mqtt_port: int, ws_port: int) -> subprocess.Popen[str]:
    """The embedded broker as a child process, so a slow subscriber never stalls the functions."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(mqtt_port),
            "--ws-port",
            str(ws_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + BROKER_READY_SECONDS
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("broker ready"):
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"devhost: the broker did not start on ports {mqtt_port}/{ws_port}")


def stop_process(proc: subprocess.Popen[str] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    http_base = f"http://{args.host}:{args.http_port}"
    base_env = dict(os.environ)
    for name, value in local_values(ROOT / "local.settings.json").items():
        base_env.setdefault(name, value)
    worker_shape(args, base_env)
    sandbox_on = args.sandbox if args.sandbox is not None else not base_env.get("TWILIO_ACCOUNT_SID")
    external_broker = bool(base_env.get("MQTT_URL"))
    data_dir = Path(args.data_dir)
    base_env.setdefault("RELAY_STORE", str(data_dir / "relay.sqlite3"))
    sandbox_listener = None
    if args.workers > 1 and sandbox_on:
        sandbox_listener = socket.create_server((args.host, args.sandbox_port))
    sandbox_base = http_base if sandbox_listener is None else f"http://{args.host}:{sandbox_listener.getsockname()[1]}"
    env = development_environment(
        base_env,
        sandbox=sandbox_on,
        sandbox_base=sandbox_base,
        mqtt_port=args.mqtt_port,
        ws_port=args.ws_port,
        secrets_path=data_dir / "devhost.json",
    )
    env["WEBHOOK_HOSTS"] = ",".join(filter(None, [env.get("WEBHOOK_HOSTS"), *bound_hosts(args)]))
    try:
        settings = Settings.load(env, local_settings=Path("/nonexistent"))
    except SettingsError as exc:
        print(f"devhost: invalid setting {exc}", file=sys.stderr)
        return 2
    os.environ.update({k: v for k, v in env.items() if k.isupper()})
    broker = None if external_broker else start_broker(env, args.mqtt_port, args.ws_port)
    announce = Announcement(settings, http_base, sandbox_base if sandbox_on else None, broker is not None)
    try:
        if args.workers == 1:
            sandbox = create_sandbox_app(sandbox_config(settings, http_base)) if sandbox_on else None
            asyncio.run(serve(args, settings, announce, sandbox))
        else:
            serve_workers(args, settings, announce, sandbox_listener)
        return 0
    finally:
        stop_process(broker)


if __name__ == "__main__":
    raise SystemExit(main())
