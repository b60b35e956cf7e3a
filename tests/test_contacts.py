"""Contacts through the real functions: edit, search, live on every desk, names in conversations, CSV both ways."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.devhost import DevhostProcess
from tests.support.mqtt import Subscriber

HOSTILE = '<img src=x onerror="alert(1)">'


def call(host: DevhostProcess, session: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {session['token']}", **kw.pop("headers", {})}
    return httpx.request(method, f"{host.base_url}/api/{path}", headers=headers, timeout=20, **kw)


def put(host: DevhostProcess, session: dict[str, Any], phone: str, body: Any) -> httpx.Response:
    return call(host, session, "PUT", f"contacts/{quote(phone, safe='')}", json=body)


def upload(host: DevhostProcess, session: dict[str, Any], data: bytes, kind: str = "text/csv") -> httpx.Response:
    return call(host, session, "POST", "contacts/import", content=data, headers={"Content-Type": kind})


def test_edit_search_and_every_desk_sees_it_live(devhost: DevhostProcess) -> None:
    maria, other_tab = devhost.session("reception", "Maria"), devhost.session("reception", "Maria")
    ken = devhost.session("billing", "Ken")
    port = devhost.broker.mqtt_port
    with Subscriber(port, other_tab) as tab, Subscriber(port, ken) as billing:
        r = put(devhost, maria, "+14155550161", {"name": "  Ana Núñez ", "note": "prefers mornings"})
        assert r.status_code == 201, r.text
        assert (r.json()["name"], r.json()["note"]) == ("Ana Núñez", "prefers mornings")
        _, seen = tab.wait_for(lambda t, p: t == "sms/reception/contact" and p["phone"] == "+14155550161")
        _, theirs = billing.wait_for(lambda t, p: t == "sms/billing/contact" and p["phone"] == "+14155550161")
    assert seen["contact"]["name"] == theirs["contact"]["name"] == "Ana Núñez"
    assert seen["by"] == maria["staff"]
    assert tab.topics == ["sms/reception/#", "sms/unrouted/#"]  # the desk's own topics: the ACL is unchanged

    r = put(devhost, maria, "+1 415 555 0162", {"name": HOSTILE})
    assert r.status_code == 201 and r.json()["phone"] == "+14155550162"
    assert put(devhost, maria, "+14155550161", {"name": "Ana Núñez-Ortiz"}).status_code == 200
    for q, expected in (("núñez", ["+14155550161"]), ("555 0162", ["+14155550162"]), ("onerror", ["+14155550162"])):
        found = call(devhost, maria, "GET", "contacts", params={"q": q}).json()["contacts"]
        assert [c["phone"] for c in found] == expected, q
    assert call(devhost, ken, "GET", "contacts", params={"q": "img"}).json()["contacts"][0]["name"] == HOSTILE

    # Names travel with the conversation and its messages.
    sent = call(devhost, maria, "POST", "send_sms", json={"to": "+14155550162", "body": "Hello"})
    assert sent.status_code == 201, sent.text
    [conv] = [
        c for c in call(devhost, maria, "GET", "conversations").json()["conversations"] if c["phone"] == "+14155550162"
    ]
    assert conv["contact"] == {"name": HOSTILE}
    page = call(devhost, maria, "GET", "conversations/%2B14155550162/messages").json()
    assert [m["contact"] for m in page["messages"]] == [{"name": HOSTILE}]

    for body, code in (
        ({"name": "Eve\u202egnp.exe"}, "invalid_name"),
        ({"name": ""}, "invalid_name"),
        ({"name": "x" * 81}, "invalid_name"),
        ({"name": "Ok", "note": "x" * 501}, "invalid_note"),
        ({"name": "Ok", "note": "a\u2066b"}, "invalid_note"),
    ):
        r = put(devhost, maria, "+14155550163", body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body
    r = put(devhost, maria, "12", {"name": "Ok"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_number")
    assert call(devhost, maria, "GET", "contacts", params={"q": "x" * 101}).status_code == 400

    assert call(devhost, maria, "DELETE", "contacts/%2B14155550162").status_code == 204
    r = call(devhost, maria, "DELETE", "contacts/%2B14155550162")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "contact_not_found")
    assert call(devhost, maria, "GET", "conversations").json()["conversations"][0]["contact"] is None
    assert call(devhost, {"token": "nope"}, "GET", "contacts").status_code == 401


def test_import_reports_each_row_and_export_neutralises_formulas(devhost: DevhostProcess) -> None:
    maria = devhost.session("reception", "Maria")
    rows = [
        "Name,Phone,Note",
        "Ben Okafor,+14155550171,",
        '=HYPERLINK("http://evil"),+14155550172,+1 to everything',
        "not a number,12345,",
        ",+14155550173,",
        "Ben again,+14155550171,",
        "'@Tab Quote,'+14155550174,-fine",
        "",
        "Cara,+1 (415) 555-0175,\tindented",
    ]
    data = ("\ufeff" + "\r\n".join(rows)).encode()
    r = upload(devhost, maria, data)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["error"]) == (4, 0, 3)
    outcome = {
        row["row"]: row["result"] if row["result"] != "error" else row["error"]["code"] for row in report["rows"]
    }
    assert outcome == {
        1: "created",
        2: "created",
        3: "invalid_number",
        4: "invalid_name",
        5: "duplicate_row",
        6: "created",
        8: "created",
    }
    again = upload(devhost, maria, data).json()
    assert (again["created"], again["updated"]) == (0, 4)

    export = call(devhost, maria, "GET", "contacts/export")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert table[0] == ["name", "phone", "note"]
    by_phone = {row[1]: row for row in table[1:]}
    assert by_phone["+14155550172"] == ['\'=HYPERLINK("http://evil")', "+14155550172", "'+1 to everything"]
    assert by_phone["+14155550174"] == ["'@Tab Quote", "+14155550174", "'-fine"]  # phones are never quoted
    assert by_phone["+14155550175"][2] == "indented"  # the import trimmed the cell
    # Our own export imports back unchanged: one leading apostrophe is stripped.
    assert upload(devhost, maria, export.content).json()["updated"] == len(table) - 1
    assert call(devhost, maria, "GET", "contacts", params={"q": "hyperlink"}).json()["contacts"][0]["name"] == (
        '=HYPERLINK("http://evil")'
    )


def test_bad_files_are_refused_whole(devhost: DevhostProcess) -> None:
    maria = devhost.session("reception", "Maria")
    for data, kind, status, code in (
        ("name,phone\nZoë,+14155550181".encode("latin-1"), "text/csv", 400, "invalid_csv"),
        (b"phone,nombre\n+14155550181,x", "text/csv", 400, "invalid_csv"),
        (b"", "text/csv", 400, "invalid_csv"),
        (b'name,phone\n"unclosed,+1', "text/csv", 400, "invalid_csv"),
        (b"name,phone\n" + b"a,+14155550181\n" * 5001, "text/csv", 400, "too_many_rows"),
        (b"name,phone\n" + b"x" * (1024 * 1024), "text/csv", 413, "payload_too_large"),
        (b"name,phone\nA,+14155550181", "application/json", 415, "unsupported_media_type"),
    ):
        r = upload(devhost, maria, data, kind)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (code, r.text[:200])
    assert call(devhost, maria, "GET", "contacts", params={"q": "+14155550181"}).json()["contacts"] == []
