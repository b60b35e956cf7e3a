"""The inbox tools in real headless Chromium against the local devhost: Open / Done / All, internal notes, the
opt-out banner, deep links to a conversation, and what the list shows after a reload."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from tests.support.webclient import XSS, Desk, patient_replies, phone_received, signed_in  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

expect.set_options(timeout=10_000)


def filter_button(desk: Desk, name: str):
    return desk.page.locator("#list-filters").get_by_role("button", name=name, exact=True)


def test_done_leaves_the_open_list_and_the_title_count_until_the_patient_replies(
    maria: Desk, devhost: DevhostProcess
) -> None:
    page, phone, other = maria.page, "+14155550301", "+14155550302"
    maria.send_new("(415) 555-0301", phone, "Your prescription is ready.")
    maria.send_new("(415) 555-0302", other, "Your invoice is attached.")
    expect(filter_button(maria, "Open")).to_have_attribute("aria-pressed", "true")

    maria.open(phone)
    page.get_by_role("button", name="Mark this conversation done").click()
    expect(page.locator("#done-btn")).to_have_text("Reopen")
    expect(maria.conv(phone)).to_have_count(0)  # Open is the default filter
    expect(maria.conv(other)).to_be_visible()
    filter_button(maria, "Done").click()
    expect(maria.conv(phone)).to_be_visible()
    expect(maria.conv(other)).to_have_count(0)
    filter_button(maria, "All").click()
    expect(maria.conv(phone)).to_be_visible()
    expect(maria.conv(other)).to_be_visible()
    filter_button(maria, "Open").click()

    # Unread counts and the title badge count open conversations only: look away, both patients write.
    maria.open(other)
    page.evaluate("() => { Object.defineProperty(document, 'hidden', {value: true, configurable: true}); }")
    patient_replies(devhost, other, "Got it")
    expect(page).to_have_title("(1) SMS Relay")
    patient_replies(devhost, phone, "One more question")  # a reply reopens it, and counts
    expect(maria.conv(phone)).to_be_visible()
    expect(page).to_have_title("(2) SMS Relay")
    page.evaluate("() => { delete document.hidden; }")
    maria.open(phone)
    expect(page.locator("#done-btn")).to_have_text("Done")

    # Marked done again from another browser at the desk: this one follows live.
    token = devhost.session(staff="Ken")["token"]
    r = httpx.post(
        f"{devhost.base_url}/api/conversations/%2B14155550301/done",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    expect(page.locator("#done-btn")).to_have_text("Reopen")
    expect(maria.conv(phone)).to_have_count(0)
    page.reload()
    maria.expect_connected()
    expect(maria.conv(other)).to_be_visible()
    expect(maria.conv(phone)).to_have_count(0)
    filter_button(maria, "Done").click()
    expect(maria.conv(phone)).to_be_visible()
    filter_button(maria, "Open").click()


def test_an_internal_note_is_styled_apart_live_to_a_colleague_and_never_texted(
    maria: Desk, browser: Browser, devhost: DevhostProcess
) -> None:
    page, phone = maria.page, "+14155550303"
    maria.send_new("(415) 555-0303", phone, "Please call us back.")
    assert phone_received(devhost, phone, "Please call us back.")
    texts_before = httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json()
    with signed_in(browser, devhost, "Ken") as ken:
        ken.open(phone)
        page.get_by_role("button", name="Internal note").click()
        expect(page.locator("#compose-note")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#compose-send")).to_have_text("Add note")
        page.fill("#compose-text", f"Called twice, no answer {XSS}")
        page.press("#compose-text", "Enter")
        expect(page.locator("#compose-text")).to_have_value("")
        for desk in (maria, ken):
            note = desk.page.locator("#message-list li.msg.note")
            expect(note.locator(".note-body")).to_have_text(f"Called twice, no answer {XSS}")
            expect(note.locator(".note-by")).to_have_text("Maria")
            expect(note.locator(".note-tag")).to_have_text("Internal note")
            expect(desk.page.locator("#message-list img")).to_have_count(0)
            expect(desk.conv(phone).locator(".conv-snippet")).to_have_text(
                f"Note from Maria: Called twice, no answer {XSS}"
            )
        bubble = page.locator("#message-list li.msg.outbound .bubble").first
        note_card = page.locator("#message-list li.msg.note .note-card")
        assert note_card.evaluate("n => getComputedStyle(n).backgroundColor") != bubble.evaluate(
            "n => getComputedStyle(n).backgroundColor"
        )
        # Still in note mode: the next Enter is a note too, never a text by accident.
        expect(page.locator("#compose-send")).to_have_text("Add note")
        page.get_by_role("button", name="Internal note").click()
        expect(page.locator("#compose-send")).to_have_text("Send")
        ken.page.reload()  # from the history, as after a transfer: the same card, the same name
        ken.expect_connected()
        expect(ken.page.locator("#message-list li.msg.note .note-by")).to_have_text("Maria")
        expect(ken.page.locator("#message-list li.msg.note .note-body")).to_have_text(f"Called twice, no answer {XSS}")
    assert httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5).json() == texts_before


def test_stop_shows_a_banner_and_closes_the_composer_until_start_live(maria: Desk, devhost: DevhostProcess) -> None:
    page, phone = maria.page, "+14155550304"
    maria.send_new("(415) 555-0304", phone, "Your flu shot is due.")
    banner = page.locator("#optout-banner")
    expect(banner).to_be_hidden()
    patient_replies(devhost, phone, "STOP")
    expect(banner).to_be_visible()
    expect(banner).to_have_text("This number has opted out; they must text START")
    expect(page.locator("#compose-text")).to_be_disabled()
    expect(page.locator("#compose-send")).to_be_disabled()
    expect(page.get_by_role("textbox", name="Message")).to_have_accessible_description(re.compile("opted out"))

    page.reload()  # the list and the history say so too, not only the live event
    maria.expect_connected()
    maria.open(phone)
    expect(banner).to_be_visible()
    expect(page.locator("#compose-text")).to_be_disabled()
    page.get_by_role("button", name="Internal note").click()  # a note for colleagues still goes
    expect(page.locator("#compose-text")).to_be_enabled()
    page.get_by_role("button", name="Internal note").click()
    expect(page.locator("#compose-text")).to_be_disabled()

    patient_replies(devhost, phone, "START")
    expect(banner).to_be_hidden()
    expect(page.locator("#compose-text")).to_be_enabled()
    maria.send_compose("Welcome back!")


def test_a_deep_link_survives_a_reload_back_and_forward_work_and_another_desk_is_told(
    maria: Desk, browser: Browser, devhost: DevhostProcess
) -> None:
    page, first, second = maria.page, "+14155550305", "+14155550306"
    maria.send_new("(415) 555-0305", first, "First patient")
    maria.send_new("(415) 555-0306", second, "Second patient")
    page.goto(f"{devhost.base_url}/")  # a fresh start: the list, then two conversations opened from it
    maria.expect_connected()
    expect(page.locator("#pane-empty")).to_be_visible()
    maria.open(first)
    assert page.url.endswith(f"#/c/{first}")
    maria.open(second)
    assert page.url.endswith(f"#/c/{second}")
    link = page.url

    page.reload()
    maria.expect_connected()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", second)
    expect(maria.bubble("Second patient")).to_be_visible()

    page.go_back()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", first)
    expect(maria.bubble("First patient")).to_be_visible()
    page.go_forward()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", second)
    page.go_back()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", first)
    page.go_back()  # before the first conversation: the list, nothing open
    expect(page.locator("#conversation")).to_be_hidden()
    expect(page.locator("#pane-empty")).to_be_visible()
    page.go_forward()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", first)

    # A colleague at the same desk opens the shared link; someone at Billing gets the list and is told why.
    with signed_in(browser, devhost, "Ken") as ken:
        ken.page.goto(link)
        ken.expect_connected()
        expect(ken.page.locator("#conversation")).to_have_attribute("data-phone", second)
        expect(ken.bubble("Second patient")).to_be_visible()
    with signed_in(browser, devhost, "Lee", "billing") as lee:
        lee.page.goto(link)
        lee.expect_connected()
        expect(lee.page.locator("#list-notice")).to_have_text(
            "That conversation is not on this desk (Billing). Ask the desk that has it, or switch desk."
        )
        expect(lee.page.locator("#conversation")).to_be_hidden()
        assert "#/c/" not in lee.page.url


def test_after_a_reload_the_list_shows_a_photo_row_and_the_text_without_the_alias(
    maria: Desk, devhost: DevhostProcess
) -> None:
    page, photo, aliased = maria.page, "+14155550307", "+14155550308"
    maria.send_new("(415) 555-0307", photo, "Send us a photo of the form")
    maria.send_new("(415) 555-0308", aliased, "Which desk do you need?")
    patient_replies(devhost, photo, "", image=True)
    patient_replies(devhost, aliased, "#R  about my appointment")
    for reload in (False, True):
        if reload:
            page.reload()
            maria.expect_connected()
        expect(maria.conv(photo).locator(".conv-snippet")).to_have_text("📷 Photo")
        expect(maria.conv(aliased).locator(".conv-snippet")).to_have_text("about my appointment")
