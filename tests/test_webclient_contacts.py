"""The address book in the web client, in real headless Chromium against the local devhost: names instead of
numbers in the lists and the thread, edited in place from the conversation header and the New message dialog,
seen live by another tab; a hostile name is only ever text."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.support.webclient import XSS, Desk, patient_replies  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

expect.set_options(timeout=10_000)


def import_contacts(devhost: DevhostProcess, csv: str) -> dict[str, Any]:
    token = devhost.session(staff="Ken")["token"]
    r = httpx.post(
        f"{devhost.base_url}/api/contacts/import",
        content=csv.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_imported_names_show_in_the_list_the_header_and_the_unrouted_list(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    result = import_contacts(
        devhost, f'name,phone,note\nAna Núñez,+14155550201,prefers mornings\n"{XSS}",+14155550202,\n'
    )
    assert (result["created"], result["error"]) == (2, 0), result

    # A stranger in the book texts in: the unrouted list names them, as text.
    patient_replies(devhost, "+14155550202", "Hello?")
    row = maria.unrouted("+14155550202")
    expect(row.locator(".conv-name")).to_have_text(XSS)
    expect(row.locator(".conv-number")).to_have_text("+1 (415) 555-0202")
    expect(row.get_by_role("button", name=f"Claim conversation with {XSS}")).to_be_visible()
    expect(page.locator("#unrouted-list img")).to_have_count(0)

    # Texting Ana: the list and the header say her name, the number beside it, and her note.
    maria.send_new("(415) 555-0201", "+14155550201", "Hello Ana")
    expect(maria.conv("+14155550201").locator(".conv-name")).to_have_text("Ana Núñez")
    expect(page.locator("#conv-title")).to_have_text("Ana Núñez")
    expect(page.locator("#conv-number")).to_have_text("+1 (415) 555-0201")
    expect(page.locator("#conv-note")).to_have_text("prefers mornings")

    # Claimed, the hostile name is the thread's title, as text.
    maria.unrouted("+14155550202").get_by_role("button", name=f"Claim conversation with {XSS}").click()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", "+14155550202")
    expect(page.locator("#conv-title")).to_have_text(XSS)
    expect(maria.conv("+14155550202").locator(".conv-name")).to_have_text(XSS)
    expect(page.locator("#conversation img, #conv-list img")).to_have_count(0)


def test_inline_edit_in_the_header_is_seen_live_by_another_tab(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    maria.open("+14155550201")
    second = page.context.new_page()  # same session, another tab
    try:
        tab = Desk(second)
        second.on("pageerror", lambda e: tab.errors.append(str(e)))
        second.goto(f"{devhost.base_url}/")
        tab.expect_connected()
        tab.open("+14155550201")
        expect(second.locator("#conv-title")).to_have_text("Ana Núñez")

        page.get_by_role("button", name="Edit name and note of +1 (415) 555-0201").click()
        expect(page.get_by_label("Name", exact=True)).to_be_focused()
        expect(page.get_by_label("Name", exact=True)).to_have_value("Ana Núñez")
        page.get_by_label("Name", exact=True).fill("x" * 81)
        expect(page.locator("#contact-error")).to_contain_text("80 at most")
        expect(page.locator("#contact-save")).to_be_disabled()
        page.get_by_label("Name", exact=True).fill("Ana Núñez-García")
        page.get_by_label("Note (optional)").fill("moved to 3 pm on Thursdays")
        page.keyboard.press("Enter")
        expect(page.locator("#contact-form")).to_be_hidden()
        expect(page.locator("#conv-title")).to_have_text("Ana Núñez-García")
        expect(page.locator("#contact-edit-btn")).to_be_focused()

        # The other tab, live: its header, note and list.
        expect(second.locator("#conv-title")).to_have_text("Ana Núñez-García")
        expect(second.locator("#conv-note")).to_have_text("moved to 3 pm on Thursdays")
        expect(tab.conv("+14155550201").locator(".conv-name")).to_have_text("Ana Núñez-García")

        # Escape leaves the name as it was.
        page.get_by_role("button", name="Edit name and note of +1 (415) 555-0201").click()
        page.get_by_label("Name", exact=True).fill("Someone else")
        page.keyboard.press("Escape")
        expect(page.locator("#conv-title")).to_have_text("Ana Núñez-García")
        assert not tab.errors, tab.errors
    finally:
        second.close()


def test_new_message_dialog_fills_and_saves_the_name(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0201")
    expect(page.get_by_label("Patient's name (optional)")).to_have_value("Ana Núñez-García")
    expect(page.get_by_label("Note about the patient (optional)")).to_have_value("moved to 3 pm on Thursdays")
    page.keyboard.press("Escape")
    expect(page.locator("#new-dialog")).to_be_hidden()

    # A new number with a name typed in: the book has it, and the thread says it.
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0203")
    page.get_by_label("Patient's name (optional)").fill("Bo Lindqvist")
    page.fill("#new-text", "Hello Bo")
    page.click("#new-send")
    expect(page.locator("#new-dialog")).to_be_hidden()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", "+14155550203")
    expect(page.locator("#conv-title")).to_have_text("Bo Lindqvist")
    expect(maria.conv("+14155550203").locator(".conv-name")).to_have_text("Bo Lindqvist")
    token = devhost.session(staff="Ken")["token"]
    found = httpx.get(
        f"{devhost.base_url}/api/contacts", params={"q": "Lindqvist"}, headers={"Authorization": f"Bearer {token}"}
    ).json()["contacts"]
    assert [(c["phone"], c["name"]) for c in found] == [("+14155550203", "Bo Lindqvist")]
