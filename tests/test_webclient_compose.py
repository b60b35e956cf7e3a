"""The compose box in real headless Chromium against the local devhost: a picture attached with "Attach picture"
reaches the sandbox phone byte for byte and shows in the thread (after a reload too) and on the phone simulator;
a file that is not a picture, or is too large, is refused in words and sends nothing; and Ctrl+/ opens the quick
replies, chosen with the keyboard, with this conversation's name, desk and clinic filled in."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.blobs import blob_connection_string
from devhost.sandbox.media import tiny_png
from tests.support.broker import BrokerProcess
from tests.support.devhost import DevhostProcess
from tests.support.ports import free_port
from tests.test_conversations_api import api, until
from tests.test_uploads import calls_now, creates, on_the_phone, picture_bytes

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

from tests.support.webclient import NARROW, XSS, Desk, attach_picture, signed_in  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

expect.set_options(timeout=10_000)

ANA, BEN, CARL = "+14155550501", "+14155550502", "+14155550503"
VISIT = "Hi {name}, this is {desk} at {clinic}. Your visit is on {date} at {time}."
FAKE_PNG = b"<!doctype html><script>alert(1)</script>"


DEVHOST_ENV = {"CLINIC_NAME": "Lakeside Clinic"}


@pytest.fixture(scope="module")
def maria(browser: Browser, devhost: DevhostProcess) -> Iterator[Desk]:
    ken = devhost.session(staff="Ken")
    for template_id, name, body in [
        ("visit", "Visit", VISIT),
        ("directions", f"Directions {XSS}", "The entrance is on Pine Street, {name}."),
    ]:
        r = api(devhost, ken, "PUT", f"templates/{template_id}", json={"name": name, "body": body})
        assert r.status_code in (200, 201), r.text
    r = api(devhost, ken, "PUT", f"contacts/{ANA.replace('+', '%2B')}", json={"name": "Ana Núñez"})
    assert r.status_code in (200, 201), r.text
    with signed_in(browser, devhost, "Maria") as desk:
        yield desk
        assert not desk.dialogs, desk.dialogs


def loaded(page: Page, selector: str) -> None:
    """An <img> that really shows a picture (decoded, not a broken icon)."""
    page.wait_for_function(
        "(s) => [...document.querySelectorAll(s)].some((i) => i.complete && i.naturalWidth > 0)", arg=selector
    )


def test_a_picture_from_the_desk_reaches_the_phone_byte_for_byte(
    maria: Desk, devhost: DevhostProcess, browser: Browser
) -> None:
    page, png = maria.page, tiny_png(48)
    maria.send_new("(415) 555-0502", BEN, "Here is the parking map")
    attach_picture(page, "parking.png", png)
    expect(page.locator("#compose-attachment-text")).to_have_text(
        re.compile(r"^parking\.png · \d+ KB · ready to send$")
    )
    loaded(page, "#compose-thumb")
    expect(page.locator("#compose-counter")).to_contain_text("1 picture (MMS)")
    expect(page.locator("#compose-send")).to_be_enabled()  # no caption needed

    page.press("#compose-text", "Enter")
    expect(page.locator("#compose-attachment")).to_be_hidden()
    sent = page.locator("#message-list li.msg.outbound").last
    expect(sent.get_by_role("img", name="Picture sent")).to_be_visible()
    loaded(page, "#message-list li.msg.outbound img.mms")

    got = until(lambda: [m for m in on_the_phone(devhost, BEN) if m["media"]])
    assert got, on_the_phone(devhost, BEN)
    assert got[-1]["media"][0]["url"].startswith("/sandbox/")
    assert picture_bytes(devhost, got[-1]["media"][0]) == png

    page.reload()
    maria.expect_connected()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", BEN)
    loaded(page, "#message-list li.msg.outbound img.mms")
    expect(page.locator(f'#conv-list li[data-phone="{BEN}"]')).to_contain_text("📷 Photo")

    context = browser.new_context(viewport=NARROW, locale="en-US")
    try:
        phone = context.new_page()
        phone.goto(f"{devhost.sandbox_url}/phone")
        phone.fill("#number", BEN)
        phone.press("#number", "Enter")
        loaded(phone, "#thread img")
    finally:
        context.close()


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("map.png", FAKE_PNG, "“map.png” was not attached. Only JPEG, PNG and GIF pictures can be sent"),
        (
            "huge.png",
            b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024),
            "“huge.png” is 5.0 MB; a picture can be at most 5 MB.",
        ),
    ],
    ids=["html-named-png", "over-5-MB"],
)
def test_a_file_that_is_not_a_small_picture_is_refused_and_nothing_is_sent(
    maria: Desk, devhost: DevhostProcess, name: str, content: bytes, words: str
) -> None:
    page = maria.page
    maria.open(BEN)
    before = calls_now(devhost)
    attach_picture(page, name, content)
    expect(page.locator("#compose-error")).to_contain_text(words)
    expect(page.locator("#compose-attachment")).to_be_hidden()
    expect(page.get_by_role("button", name="Attach picture")).to_be_focused()
    expect(page.locator("#compose-send")).to_be_disabled()
    page.press("#compose-text", "Enter")
    page.wait_for_timeout(500)
    assert creates(devhost, before) == []
    assert page.locator("#message-list img.mms").count() == 1  # only the picture sent before

    # Picking a real picture clears the refusal; Remove takes it off again.
    attach_picture(page, "ok.png", tiny_png())
    expect(page.locator("#compose-error")).to_have_text("")
    expect(page.locator("#compose-attachment-text")).to_contain_text("ready to send")
    page.get_by_role("button", name="Remove picture").click()
    expect(page.locator("#compose-attachment")).to_be_hidden()
    expect(page.get_by_role("button", name="Attach picture")).to_be_focused()
    expect(page.locator("#compose-send")).to_be_disabled()


def test_a_picture_stays_with_its_conversation_and_its_desk(maria: Desk) -> None:
    page = maria.page
    maria.send_new("(415) 555-0503", CARL, "Hello Carl")
    attach_picture(page, "for-carl.png", tiny_png(30))
    expect(page.locator("#compose-attachment-text")).to_contain_text("for-carl.png")
    maria.open(BEN)
    expect(page.locator("#compose-attachment")).to_be_hidden()
    maria.open(CARL)
    expect(page.locator("#compose-attachment-text")).to_contain_text("for-carl.png · ")
    # Another desk's browser session keeps nothing of this one: its uploads are not that desk's to send.
    maria.switch_desk("billing")
    maria.switch_desk("reception")
    maria.open(CARL)
    expect(page.locator("#compose-attachment")).to_be_hidden()


def options(page: Page) -> Any:
    return page.get_by_role("listbox", name="Saved texts").get_by_role("option")


def test_ctrl_slash_inserts_a_quick_reply_with_the_contact_filled_in(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    maria.send_new("(415) 555-0501", ANA, "Good morning")
    box = page.locator("#compose-text")
    box.fill("Thanks! ")
    box.press("End")
    box.press("Control+/")
    picker = page.get_by_role("dialog", name="Quick replies")
    expect(picker).to_be_visible()
    expect(page.get_by_role("combobox", name="Find a quick reply")).to_be_focused()
    expect(options(page)).to_have_count(2)
    expect(options(page).first).to_have_attribute("aria-selected", "true")  # by name: Directions, then Visit
    expect(options(page).first.locator(".quick-name")).to_have_text(f"Directions {XSS}")
    expect(page.locator("#quick-list img")).to_have_count(0)
    expect(page.get_by_role("button", name="Quick replies")).to_have_attribute("aria-expanded", "true")

    page.keyboard.press("ArrowDown")
    expect(options(page).nth(1)).to_have_attribute("aria-selected", "true")
    expect(options(page).nth(1)).to_contain_text("Hi Ana Núñez, this is Reception at Lakeside Clinic.")
    page.keyboard.press("Enter")
    expect(picker).to_be_hidden()
    expect(box).to_be_focused()
    expect(box).to_have_value(
        "Thanks! Hi Ana Núñez, this is Reception at Lakeside Clinic. Your visit is on {date} at {time}."
    )
    # The first placeholder left is selected: typing replaces it.
    assert (
        page.evaluate(
            "() => { const b = document.getElementById('compose-text'); "
            "return b.value.slice(b.selectionStart, b.selectionEnd); }"
        )
        == "{date}"
    )
    page.keyboard.type("Fri 5 Dec")
    expect(box).to_have_value(
        "Thanks! Hi Ana Núñez, this is Reception at Lakeside Clinic. Your visit is on Fri 5 Dec at {time}."
    )
    expect(page.locator("#compose-counter")).to_contain_text("SMS")

    # The button opens it too; typing narrows the list; Escape goes back to the text, which is unchanged.
    page.get_by_role("button", name="Quick replies").click()
    expect(page.get_by_role("combobox", name="Find a quick reply")).to_be_focused()
    ken = devhost.session(staff="Ken")
    saved = api(devhost, ken, "PUT", "templates/parking", json={"name": "Parking", "body": "Parking is free."})
    assert saved.status_code == 201, saved.text
    expect(options(page)).to_have_count(3)  # a colleague's new text shows up live
    page.keyboard.type("pine")
    expect(options(page)).to_have_count(1)
    page.keyboard.type("zzz")
    expect(options(page)).to_have_count(0)
    expect(page.locator("#quick-empty")).to_have_text("No saved text matches.")
    page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    expect(box).to_be_focused()
    expect(box).to_have_value(re.compile(r"Fri 5 Dec at \{time\}\.$"))


def test_a_number_without_a_name_keeps_name_for_staff_to_fill(maria: Desk) -> None:
    page = maria.page
    maria.open(BEN)
    box = page.locator("#compose-text")
    box.fill("")
    box.press("Control+/")
    page.keyboard.press("Enter")  # Directions
    expect(box).to_have_value("The entrance is on Pine Street, {name}.")
    assert (
        page.evaluate(
            "() => { const b = document.getElementById('compose-text'); "
            "return b.value.slice(b.selectionStart, b.selectionEnd); }"
        )
        == "{name}"
    )
    page.keyboard.type("Ben")
    maria.page.press("#compose-text", "Enter")
    expect(maria.bubble("The entrance is on Pine Street, Ben.")).to_be_visible()


def test_the_session_names_the_clinic(devhost: DevhostProcess) -> None:
    assert devhost.session()["clinic"] == "Lakeside Clinic"


def test_when_blob_storage_is_down_the_server_says_so_under_the_box(
    browser: Browser, broker: BrokerProcess, signing_key: str, tmp_path: Path
) -> None:
    closed = free_port()  # nothing listens here: every upload fails to be stored
    env = {"MEDIA_STORAGE": blob_connection_string(closed)}
    with (
        DevhostProcess(
            broker, tmp_path, access_code=secrets.token_urlsafe(12), signing_key=signing_key, extra_env=env
        ) as down,
        signed_in(browser, down, "Maria") as desk,
    ):
        page = desk.page
        desk.send_new("(415) 555-0504", "+14155550504", "Hello")
        attach_picture(page, "map.png", tiny_png())
        # One try, bounded well inside the request's time (no SDK retries with backoff), then the server's words.
        expect(page.locator("#compose-error")).to_have_text(
            "“map.png” was not attached. The picture could not be stored; try again.", timeout=8_000
        )
        expect(page.locator("#compose-attachment")).to_be_hidden()
