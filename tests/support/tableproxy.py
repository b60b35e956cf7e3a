"""A loopback proxy in front of Azurite that notes every Table request: the count of round trips a user action
costs is what carries from this machine to Azure, where each is a billed transaction.

It reads each HTTP request's line and headers (the Azure SDK sends every body with a Content-Length), records the
method and table (a batch transaction by the table it writes), and pipes the bytes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

_TABLE = re.compile(r"^/[^/]+/([A-Za-z0-9$]+)")
_BATCHED = re.compile(rb"(?m)^(?:POST|PUT|PATCH|MERGE|DELETE) https?://[^/\s]+/[^/\s]+/([A-Za-z0-9]+)")


def clock() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class Trip:
    at: float
    method: str
    table: str
    query: str = ""  # a query's $filter, so a reader can tell whose it was


class CountingProxy:
    """A loopback TCP proxy in front of Azurite that notes each HTTP request passing through."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.trips: list[Trip] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="table-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the counting proxy did not start")

    def between(self, start: float, end: float) -> list[Trip]:
        with self._lock:
            return [t for t in self.trips if start <= t.at <= end]

    def counted(self, start: float, end: float) -> Counter[str]:
        """ "METHOD table" -> round trips between two clock() readings."""
        return Counter(f"{t.method} {t.table}" for t in self.between(start, end))

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(_pipe(up_reader, writer))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                url = urlsplit(path.decode("latin-1"))
                found = _TABLE.match(url.path)
                table = found.group(1) if found else "?"
                query = parse_qs(url.query).get("$filter", [""])[0]
                inner = _BATCHED.search(body) if table == "$batch" else None
                table = f"$batch {inner.group(1).decode()}" if inner else table
                with self._lock:
                    self.trips.append(Trip(clock(), method.decode(), table.split("(")[0], query))
                up_writer.write(head + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            up_writer.close()
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Azurite's answers back to the client. When Azurite closes an idle kept-alive connection, the client's side
    closes too, as it would without a proxy: a client that reused it would otherwise wait for an answer that
    never comes (the SDK's read timeout, then a 503 from the relay)."""
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.close()
