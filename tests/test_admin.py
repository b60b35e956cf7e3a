"""The operator's API through the local host: desks added, renamed and archived, sessions listed and ended."""

from __future__ import annotations

import httpx

from tests.support.devhost import DevhostProcess


def code_of(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_desks_are_added_renamed_and_their_ids_and_aliases_stay_unique(devhost: DevhostProcess) -> None:
    added = devhost.admin("POST", "desks", json={"name": "Nurse line", "alias": "n2"})
    assert added.status_code == 201, added.text
    assert added.json() == {"id": "nurse_line", "name": "Nurse line", "alias": "N2"}
    assert code_of(devhost.admin("POST", "desks", json={"name": "nurse-line"})) == "desk_exists"
    assert code_of(devhost.admin("POST", "desks", json={"name": "Lab", "alias": "R"})) == "alias_taken"
    assert code_of(devhost.admin("POST", "desks", json={"name": "Lab", "alias": "TOOLONG"})) == "invalid_alias"
    assert code_of(devhost.admin("POST", "desks", json={"name": "Unrouted"})) == "invalid_desk_name"
    generated = devhost.admin("POST", "desks", json={"name": "Radiology"}).json()
    assert generated["alias"] and generated["alias"] not in {"R", "B", "N2"}

    renamed = devhost.admin("PATCH", "desks/nurse_line", json={"name": "Nurses", "alias": "NU"})
    assert renamed.json() == {"id": "nurse_line", "name": "Nurses", "alias": "NU"}
    assert devhost.admin("POST", "desks", json={"name": "Lab", "alias": "N2"}).status_code == 201  # freed
    assert code_of(devhost.admin("PATCH", "desks/nowhere", json={"name": "X"})) == "desk_not_found"

    staff = devhost.session("nurse_line", "Ann")
    desks = httpx.get(f"{devhost.base_url}/api/desks", headers={"Authorization": f"Bearer {staff['token']}"}).json()
    assert {"id": "nurse_line", "name": "Nurses", "alias": "NU", "online": 1} in desks["desks"]


def test_a_wrong_code_or_the_staff_code_is_refused_and_changes_nothing(devhost: DevhostProcess) -> None:
    before = devhost.admin("GET", "desks").json()
    for headers in ({}, {"X-Admin-Code": "wrong"}, {"X-Admin-Code": devhost.access_code}):
        r = httpx.post(f"{devhost.base_url}/api/admin/desks", json={"name": "Sneaky"}, headers=headers, timeout=5)
        assert (r.status_code, code_of(r)) == (401, "invalid_admin_code")
    assert devhost.admin("GET", "desks").json() == before


def test_sessions_are_listed_and_ended_one_or_one_person_at_a_time(devhost: DevhostProcess) -> None:
    ann_one, ann_two = devhost.session("billing", "Ann Lee"), devhost.session("reception", "ann lee")
    bob = devhost.session("billing", "Bob")
    listed = devhost.admin("GET", "sessions").json()["sessions"]
    mine = [s for s in listed if s["staff"]["name"].lower() == "ann lee"]
    assert sorted(s["desk"] for s in mine) == ["billing", "reception"]

    def works(session: dict[str, object]) -> bool:
        headers = {"Authorization": f"Bearer {session['token']}"}
        return httpx.get(f"{devhost.base_url}/api/desks", headers=headers, timeout=5).status_code == 200

    one = next(s for s in mine if s["desk"] == "billing")
    assert devhost.admin("DELETE", f"sessions/billing/{one['id']}").status_code == 204
    assert (works(ann_one), works(ann_two), works(bob)) == (False, True, True)
    ended = devhost.admin("DELETE", f"staff/{ann_two['staff']['id']}/sessions")
    assert ended.json() == {"sessionsEnded": 1}
    assert (works(ann_two), works(bob)) == (False, True)
