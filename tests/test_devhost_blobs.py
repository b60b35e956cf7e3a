"""The local host's blob service: started for pictures, and its absence never stops the product."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from devhost.blobs import start_blob_service
from devhost.supervision import stop_process


def test_the_blob_service_starts_on_a_free_port_and_keeps_its_data_in_the_data_dir(tmp_path: Path) -> None:
    started = start_blob_service(tmp_path, 0)
    assert started is not None
    proc, connection = started
    try:
        endpoint = next(p.split("=", 1)[1] for p in connection.split(";") if p.startswith("BlobEndpoint="))
        assert httpx.get(f"{endpoint}?comp=list", timeout=5).status_code in (200, 403)
        assert (tmp_path / "azurite").is_dir()
    finally:
        stop_process(proc)


def test_a_port_in_use_turns_pictures_off_instead_of_failing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert start_blob_service(tmp_path, taken.getsockname()[1]) is None
