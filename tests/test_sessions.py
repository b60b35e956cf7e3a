"""Staff sessions through the real `session` and `desks` functions: access code and App Service principals."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from relay.runtime import Runtime
from relay.store.sqlite import SqliteStore
from tests.support.functions import FUNCTIONS
from tests.support.runtime import ACCESS_CODE, clock, desk


@pytest.fixture
def runtime_for(tmp_path: Path, installed: Callable[..., Runtime]) -> Callable[[str], Runtime]:
    """An installed runtime in the given RELAY_AUTH mode, so the functions under test use it."""

    def make(mode: str) -> Runtime:
        store = SqliteStore(str(tmp_path / f"{mode}.sqlite3"))
        return installed(store, RELAY_AUTH=mode, RELAY_DESKS="Reception=R,Billing=B,Nurse line=N")

    return make


def call(name: str, method: str, body: object = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    raw = json.dumps(body).encode() if body is not None else b""
    h = {"Content-Type": "application/json", **(headers or {})}
    route = {"session": "session", "list_desks": "desks", "presence": "presence"}[name]
    req = func.HttpRequest(method=method, url=f"http://127.0.0.1:7071/api/{route}", headers=h, body=raw)
    response = FUNCTIONS[name](req)
    text = response.get_body().decode()
    return response.status_code, json.loads(text) if text else None


def principal(user_id: str, name: str, *roles: str) -> dict[str, str]:
    """The headers App Service Authentication sets for a signed-in user."""
    claims = [{"typ": "roles", "val": r} for r in roles] + [{"typ": "name", "val": name}]
    encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    return {"X-MS-CLIENT-PRINCIPAL-ID": user_id, "X-MS-CLIENT-PRINCIPAL-NAME": name, "X-MS-CLIENT-PRINCIPAL": encoded}


def test_app_service_roles_say_which_desks_a_person_may_join(runtime_for: Callable[[str], Runtime]) -> None:
    runtime_for("appservice")
    ken = principal("aad-ken", "Ken Ito", "desk.billing")
    status, grant = call("session", "POST", {"desk": "billing"}, ken)
    assert status == 200, grant
    assert (grant["desk"]["id"], grant["staff"]) == ("billing", {"id": "aad-ken", "name": "Ken Ito"})
    assert call("session", "POST", {}, ken)[1]["desk"]["id"] == "billing"  # the default desk is not his
    status, refused = call("session", "POST", {"desk": "reception"}, ken)
    assert (status, refused["error"]["code"]) == (403, "desk_not_allowed")
    status, nobody = call("session", "POST", {}, principal("aad-eve", "Eve"))
    assert (status, nobody["error"]["code"]) == (403, "no_desk")
    status, anonymous = call("session", "POST", {"accessCode": ACCESS_CODE, "staffName": "Eve"})
    assert (status, anonymous["error"]["code"]) == (401, "not_signed_in")


def test_the_access_code_mode_ignores_principal_headers(runtime_for: Callable[[str], Runtime]) -> None:
    runtime_for("accesscode")
    forged = principal("aad-admin", "Boss", "desk.billing", "relay.admin")
    status, refused = call("session", "POST", {"desk": "billing"}, forged)
    assert (status, refused["error"]["code"]) == (401, "invalid_access_code")
    status, grant = call("session", "POST", {"accessCode": ACCESS_CODE, "staffName": "Maria", "desk": "nurse_line"})
    assert (status, grant["desk"]["name"], grant["alias"]) == (200, "Nurse line", "#N")


def test_online_counts_people_with_a_page_open_and_sessions_end_one_at_a_time(
    runtime_for: Callable[[str], Runtime],
) -> None:
    runtime = runtime_for("accesscode")
    maria, maria_again = desk(runtime, "reception", "Maria"), desk(runtime, "reception", "maria")
    ken = desk(runtime, "reception", "Ken")
    assert runtime.sessions.online("reception") == 2  # Maria in two browsers is one person, then Ken
    bearer = {"Authorization": f"Bearer {ken.token}"}
    desks = {d["id"]: d for d in call("list_desks", "GET", headers=bearer)[1]["desks"]}
    assert (desks["reception"]["online"], desks["billing"]["online"]) == (2, 0)
    clock(runtime).advance(timedelta(seconds=91))
    assert runtime.sessions.online("reception") == 0  # nobody said they were there for 90 s
    assert call("presence", "POST", headers=bearer)[0] == 204
    assert runtime.sessions.online("reception") == 1

    assert call("session", "DELETE", headers={"Authorization": f"Bearer {maria.token}"})[0] == 204
    assert call("list_desks", "GET", headers={"Authorization": f"Bearer {maria.token}"})[0] == 401
    assert call("list_desks", "GET", headers={"Authorization": f"Bearer {maria_again.token}"})[0] == 200
    assert runtime.sessions.end_staff(maria_again.staff.id) == 1
    assert call("list_desks", "GET", headers={"Authorization": f"Bearer {maria_again.token}"})[0] == 401
    assert call("list_desks", "GET", headers=bearer)[0] == 200
