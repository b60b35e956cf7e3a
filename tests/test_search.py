"""Search through the local host, `GET /api/conversations?q=`: a patient found by name, by their number however
it is typed, or by a word of a message, ranked, with what matched as plain text and offsets; only within what the
desk may read (not another desk's, not what came after a transfer), and the unrouted list by what it shows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.devhost import DevhostProcess

pytestmark = pytest.mark.timeout(90)

ANA, BEN, STRANGER = "+14155550301", "+14155550302", "+14155550309"
XSS = "<img src=x onerror=alert(1)>"


def api(host: DevhostProcess, session: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {session['token']}"}
    return httpx.request(method, f"{host.base_url}/api/{path}", headers=headers, timeout=15, **kw)


def search(host: DevhostProcess, session: dict[str, Any], q: str) -> list[dict[str, Any]]:
    r = api(host, session, "GET", "conversations", params={"q": q})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["conversations"]
    return found


def reply(host: DevhostProcess, phone: str, body: str) -> None:
    r = httpx.post(f"{host.sandbox_url}/phones/{phone}/reply", json={"body": body}, timeout=20)
    assert r.status_code < 300, r.text


def marked(match: dict[str, Any]) -> list[str]:
    """The marked words, cut from the snippet by its UTF-16 offsets as a browser would."""
    units = match["text"].encode("utf-16-le")
    return [units[2 * a : 2 * b].decode("utf-16-le") for a, b in match["marks"]]


@pytest.fixture(scope="module")
def desks(devhost: DevhostProcess) -> dict[str, dict[str, Any]]:
    reception, billing = devhost.session("reception", "Maria"), devhost.session("billing", "Ken")
    r = api(devhost, reception, "PUT", f"contacts/{ANA.replace('+', '%2B')}", json={"name": "Ana Núñez"})
    assert r.status_code in (200, 201), r.text
    for to, body in [(ANA, "Your appointment is on Friday at 10:00"), (BEN, f"Parking map 🅿️ attached {XSS}")]:
        r = api(devhost, reception, "POST", "send_sms", json={"to": to, "body": body})
        assert r.status_code == 201, r.text
    reply(devhost, ANA, "#R Can I bring my daughter? 😊 She needs a refill too")
    reply(devhost, STRANGER, "Hello, I need a refill")  # no desk code: unrouted
    return {"reception": reception, "billing": billing}


@pytest.mark.parametrize("typed", ["+14155550301", "(415) 555-0301", "415 555 0301", "415.555.0301", "14155550301"])
def test_a_number_however_it_is_typed_finds_the_patient_first(
    devhost: DevhostProcess, desks: dict[str, Any], typed: str
) -> None:
    found = search(devhost, desks["reception"], typed)
    assert found[0]["phone"] == ANA, found
    assert found[0]["match"]["in"] == "number" and found[0]["unrouted"] is False
    assert found[0]["contact"] == {"name": "Ana Núñez"}


def test_part_of_a_number_finds_every_patient_it_is_in(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    found = search(devhost, desks["reception"], "555-030")
    assert {c["phone"] for c in found} == {ANA, BEN, STRANGER}
    assert all(marked(c["match"]) == ["555030"] for c in found)


def test_a_name_in_any_case_and_without_accents(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    found = search(devhost, desks["reception"], "nunez")
    assert [c["phone"] for c in found] == [ANA]
    assert found[0]["match"]["in"] == "name" and marked(found[0]["match"]) == ["Núñez"]


def test_a_word_of_a_message_with_the_message_and_its_marks(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    found = search(devhost, desks["reception"], "daught")  # typed so far
    assert [c["phone"] for c in found] == [ANA]
    match = found[0]["match"]
    assert match["in"] == "message" and match["sid"].startswith("SM")
    assert match["text"] == "Can I bring my daughter? 😊 She needs a refill too"  # without the desk's alias
    assert marked(match) == ["daughter"]
    # The emoji before "refill" counts two UTF-16 units, as the browser counts.
    assert marked(search(devhost, desks["reception"], "refill")[0]["match"]) == ["refill"]


def test_hostile_text_comes_back_as_text(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    found = search(devhost, desks["reception"], "parking map")
    assert [c["phone"] for c in found] == [BEN]
    assert found[0]["match"]["text"] == f"Parking map 🅿️ attached {XSS}"
    assert marked(found[0]["match"]) == ["Parking", "map"]


def test_the_unrouted_list_by_what_it_shows(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    found = search(devhost, desks["reception"], "refill")
    assert [(c["phone"], c["unrouted"]) for c in found] == [(ANA, False), (STRANGER, True)]
    assert found[1]["match"]["text"] == "Hello, I need a refill"


def test_another_desk_finds_nothing_of_this_desks(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    assert search(devhost, desks["billing"], "daughter") == []
    assert search(devhost, desks["billing"], "nunez") == []
    assert [c["phone"] for c in search(devhost, desks["billing"], "refill")] == [STRANGER]  # unrouted: any desk


def test_a_transfer_carries_the_history_but_not_what_came_after(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    reception, billing = desks["reception"], desks["billing"]
    path = f"conversations/{BEN.replace('+', '%2B')}/transfer"
    r = api(devhost, reception, "POST", path, json={"desk": "billing", "note": "parking question"})
    assert r.status_code == 200, r.text
    reply(devhost, BEN, "Where is the wheelchair entrance?")
    found = search(devhost, billing, "parking")
    assert [c["phone"] for c in found] == [BEN]  # the history came with it
    assert [c["phone"] for c in search(devhost, billing, "wheelchair")] == [BEN]
    assert search(devhost, reception, "wheelchair") == []  # after Reception let go
    assert [c["phone"] for c in search(devhost, reception, "parking")] == [BEN]  # what it had, it keeps


def test_a_bad_or_empty_query(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    r = api(devhost, desks["reception"], "GET", "conversations", params={"q": "x" * 201})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_query"
    everything = api(devhost, desks["reception"], "GET", "conversations").json()["conversations"]
    assert search(devhost, desks["reception"], "  ") == everything
    assert search(devhost, desks["reception"], "zebra") == []
    no_session = httpx.get(f"{devhost.base_url}/api/conversations", params={"q": "refill"}, timeout=10)
    assert no_session.status_code == 401


def test_a_long_message_is_cut_around_the_match(devhost: DevhostProcess, desks: dict[str, Any]) -> None:
    long = "word " * 60 + "needle " + "https://example.test/" + "x" * 300
    r = api(devhost, desks["reception"], "POST", "send_sms", json={"to": "+14155550303", "body": long})
    assert r.status_code == 201, r.text
    match = search(devhost, desks["reception"], "needle")[0]["match"]
    assert match["text"].startswith("…word ") and match["text"].endswith("…")
    assert len(match["text"]) <= 122 and marked(match) == ["needle"]
