"""Skips for missing external tools: allowed on a person's machine, a failure under CI=true."""

from __future__ import annotations

import os

import pytest


def require_tool(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing tool is a failure, not a skip)")
    pytest.skip(reason)
