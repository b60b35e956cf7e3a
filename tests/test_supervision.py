"""The local host supervises its children, with real processes and signals: the broker comes back after
`kill -9`, SIGTERM and SIGINT stop everything, and `kill -9` of the devhost leaves no child behind."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.devhost import DevhostProcess

pytestmark = pytest.mark.slow


def children(parent: int) -> dict[int, bytes]:
    """Every live descendant of `parent`, with its command line."""
    parents: dict[int, int] = {}
    lines: dict[int, bytes] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            lines[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: dict[int, bytes] = {}
    frontier = {parent}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        found.update({pid: lines.get(pid, b"") for pid in frontier})
    return found


def broker_pid(host: DevhostProcess) -> int:
    [pid] = [pid for pid, line in children(host.pid).items() if b"-m\x00broker" in line]
    return pid


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def healthy(host: DevhostProcess) -> bool:
    try:
        return httpx.get(f"{host.base_url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def port_free(port: int) -> bool:
    """Nobody listens on it: a server could bind it (as servers do, past connections in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def own_broker(tmp_path: Path, signing_key: str, workers: int = 1) -> DevhostProcess:
    code = secrets.token_urlsafe(12)
    return DevhostProcess(None, tmp_path, access_code=code, signing_key=signing_key, workers=workers)


def test_a_broker_killed_with_sigkill_comes_back_and_health_is_green_again(tmp_path: Path, signing_key: str) -> None:
    with own_broker(tmp_path, signing_key) as host:
        first = broker_pid(host)
        os.kill(first, signal.SIGKILL)
        assert eventually(lambda: not healthy(host), 10)
        assert eventually(lambda: healthy(host), 20), host.log()
        assert broker_pid(host) != first
        assert "the broker exited with -9; restarting it in 0.5 s" in host.log()
        assert "the broker is back" in host.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_stops_every_child_and_a_second_start_works(
    tmp_path: Path, signing_key: str, sig: signal.Signals
) -> None:
    host = own_broker(tmp_path, signing_key)
    host.start()
    try:
        family = children(host.pid)
        assert any(b"-m\x00broker" in line for line in family.values())
        os.kill(host.pid, sig)
        assert eventually(lambda: not alive(host.pid), 10), host.log()
        assert [pid for pid in family if alive(pid)] == []
        assert all(port_free(p) for p in (host.http_port, host.mqtt_port, host.ws_port))
        host.start()  # same ports: nothing left behind holds them
        assert healthy(host)
    finally:
        host.stop()


def test_kill_9_of_the_devhost_takes_its_broker_and_workers_with_it(tmp_path: Path, signing_key: str) -> None:
    host = own_broker(tmp_path, signing_key, workers=2)
    host.start()
    try:
        # Ready means one worker answers; the other may still be starting on a loaded machine.
        assert eventually(lambda: sum(b"spawn_main" in line for line in children(host.pid).values()) == 2, 10)
        family = children(host.pid)
        os.kill(host.pid, signal.SIGKILL)
        assert eventually(lambda: not any(alive(pid) for pid in family), 10), {
            pid: line for pid, line in family.items() if alive(pid)
        }
        assert eventually(lambda: all(port_free(p) for p in (host.http_port, host.mqtt_port, host.ws_port)), 5)
    finally:
        host.stop()
