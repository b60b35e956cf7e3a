"""Accessibility of every screen, in real headless Chromium against the local devhost: axe-core (from npm, not a
CDN) finds no serious or critical violation on sign-in, the inbox, a conversation, the New message and Transfer
dialogs, the desk menu, the reminders view, the operator page and the sandbox's phone simulator, and in the
compose box with the quick replies open or a picture attached; and on a 375 px phone the header leaves the
conversation room."""

from __future__ import annotations

import re

import httpx
import pytest

from devhost.sandbox.media import tiny_png
from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from tests.support.accessibility import assert_accessible  # noqa: E402
from tests.support.webclient import NARROW, VIEWPORT, Desk, attach_picture, patient_replies  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

expect.set_options(timeout=10_000)

PATIENT = "+14155550101"


def test_sign_in_has_no_serious_violations(browser: Browser, devhost: DevhostProcess) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{devhost.base_url}/")
        expect(page.get_by_label("Access code")).to_be_visible()
        assert_accessible(page, "sign-in")
    finally:
        context.close()


def test_inbox_conversation_and_new_message_have_no_serious_violations(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    patient_replies(devhost, "+14155550109", "Hi, is anyone there?")  # an unrouted row too
    expect(maria.unrouted("+14155550109")).to_be_visible()
    assert_accessible(page, "the inbox")

    maria.send_new("(415) 555-0101", PATIENT, "Your appointment is on Friday at 10:00.")
    patient_replies(devhost, PATIENT, "#R Thanks, see you then")
    expect(maria.bubble("Thanks, see you then")).to_be_visible()
    # The thread stays a list to assistive technology, and new messages are announced.
    expect(page.get_by_role("list", name=re.compile("Messages"))).to_be_visible()
    expect(page.locator("#message-list li")).not_to_have_count(0)
    assert_accessible(page, "a conversation")

    page.click("#new-message-btn")
    expect(page.locator("#new-dialog")).to_be_visible()
    assert_accessible(page, "the New message dialog")
    page.click("#new-cancel")
    expect(page.locator("#new-dialog")).to_be_hidden()

    page.click("#transfer-btn")
    expect(page.locator("#transfer-dialog")).to_be_visible()
    assert_accessible(page, "the Transfer dialog")
    page.click("#transfer-cancel")
    expect(page.locator("#transfer-dialog")).to_be_hidden()

    maria.open_desk_menu()
    assert_accessible(page, "the desk menu")
    page.keyboard.press("Escape")
    expect(page.locator("#desk-menu")).to_be_hidden()


def test_quick_replies_and_an_attached_picture_have_no_serious_violations(maria: Desk, devhost: DevhostProcess) -> None:
    ken = devhost.session(staff="Ken")
    saved = httpx.put(
        f"{devhost.base_url}/api/templates/late",
        json={"name": "Running late", "body": "Hi {name}, we are running 10 minutes late at {desk}."},
        headers={"Authorization": f"Bearer {ken['token']}"},
        timeout=10,
    )
    assert saved.status_code in (200, 201), saved.text
    page = maria.page
    maria.open(PATIENT)
    page.locator("#compose-text").press("Control+/")
    expect(page.get_by_role("listbox", name="Saved texts").get_by_role("option")).to_have_count(1)  # live
    assert_accessible(page, "the quick replies picker")
    page.keyboard.press("Escape")
    expect(page.locator("#quick-replies")).to_be_hidden()

    page.emulate_media(reduced_motion="reduce")  # Send turns blue at once: axe must not judge a colour mid-fade
    try:
        attach_picture(page, "map.png", tiny_png(32))
        expect(page.locator("#compose-attachment-text")).to_contain_text("ready to send")
        expect(page.locator("#compose-send")).to_be_enabled()
        assert_accessible(page, "a picture attached")
        page.get_by_role("button", name="Remove picture").click()
        expect(page.locator("#compose-attachment")).to_be_hidden()
    finally:
        page.emulate_media(reduced_motion="no-preference")


def test_reminders_view_has_no_serious_violations(maria: Desk) -> None:
    page = maria.page
    page.locator("button, a, [role=tab]").filter(has_text=re.compile("^Reminders")).first.click()
    assert_accessible(page, "the reminders view")


def test_operator_page_has_no_serious_violations(browser: Browser, devhost: DevhostProcess) -> None:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{devhost.base_url}/admin.html")
        expect(page.get_by_label("Operator code")).to_be_visible()
        assert_accessible(page, "the operator sign-in")
        page.get_by_label("Operator code").fill(devhost.admin_code)
        page.keyboard.press("Enter")
        expect(page.locator("#admin")).to_be_visible()
        assert_accessible(page, "the operator page")
    finally:
        context.close()


def test_phone_simulator_has_no_serious_violations(browser: Browser, devhost: DevhostProcess, maria: Desk) -> None:
    context = browser.new_context(viewport=NARROW, locale="en-US")
    try:
        patient_replies(devhost, PATIENT, "#R Running ten minutes late")  # a sent bubble and its timestamp
        page = context.new_page()
        page.goto(f"{devhost.sandbox_url}/phone")
        page.fill("#number", PATIENT)
        page.press("#number", "Enter")
        expect(page.locator("#thread .bubble").first).to_be_visible()
        expect(page.locator("#thread .meta").first).to_be_visible()
        assert_accessible(page, "the phone simulator")
    finally:
        context.close()


def test_at_375_px_the_header_is_short_and_the_conversation_keeps_the_height(
    browser: Browser, devhost: DevhostProcess, maria: Desk
) -> None:
    """A 375 x 740 phone: the header is at most 56 px tall and the open conversation at least 75% of the height."""
    page = maria.page
    page.set_viewport_size(NARROW)
    try:
        page.goto(page.url.split("#")[0])  # the list, not the conversation a deep link would reopen
        maria.expect_connected()
        header = page.locator("header.topbar")
        box = header.bounding_box()
        assert box is not None and box["height"] <= 56, f"the header is {box and box['height']} px tall at 375 px"
        maria.open(PATIENT)
        conversation = page.locator("#conversation").bounding_box()
        assert conversation is not None
        assert conversation["height"] >= 0.75 * NARROW["height"], f"the conversation is {conversation['height']} px"
        # Nothing that matters is pushed off the screen: the composer and the Send button are in view.
        send = page.locator("#compose-send").bounding_box()
        assert send is not None and send["y"] + send["height"] <= NARROW["height"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= NARROW["width"]
    finally:
        page.set_viewport_size(VIEWPORT)
