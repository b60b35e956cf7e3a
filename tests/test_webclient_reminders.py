"""Scheduled sending and reminders in the web client, in real headless Chromium against the local devhost (its
timer sends what is due every second): "Send later" from the compose box, the scheduled message in the thread
with Edit and Cancel, reminder states with staff setting one by hand."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.support.webclient import Desk, patient_replies  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

expect.set_options(timeout=10_000)

DEVHOST_ENV = {"SCHEDULE_MIN_LEAD_SECONDS": "0", "SCHEDULE_POLL_SECONDS": "1"}


def texts_to(devhost: DevhostProcess, phone: str, body: str) -> int:
    """How many times the patient's phone received exactly this text."""
    r = httpx.get(f"{devhost.sandbox_url}/phones/{phone}/messages", timeout=5)
    r.raise_for_status()
    data = r.json()
    messages = data.get("messages", data) if isinstance(data, dict) else data
    return sum(1 for m in messages if m.get("body", m.get("Body")) == body)


def local_in(page: Page, seconds: float) -> str:
    """A datetime-local value `seconds` from now, in the browser's time zone."""
    value: str = page.evaluate(
        "async (s) => (await import('/compose.js')).localInputValue(new Date(Date.now() + s * 1000))", seconds
    )
    return value


def scheduled_item(page: Page, text: str):
    return page.locator("#scheduled-list li.scheduled").filter(has=page.locator(".body", has_text=text))


def test_send_later_goes_once_at_its_time(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    phone = "+14155550301"
    maria.send_new("(415) 555-0301", phone, "Hello from the clinic")
    page.get_by_role("button", name="Send later…").click()
    expect(page.get_by_label("Send at")).to_be_focused()
    page.fill("#compose-text", "Your results are ready")
    expect(page.locator("#compose-send")).to_have_text("Schedule")
    page.get_by_label("Send at").fill(local_in(page, 4))
    started = time.monotonic()
    page.locator("#compose-send").click()

    item = scheduled_item(page, "Your results are ready")
    expect(item.locator(".when")).to_have_text(re.compile(r"^Scheduled for (Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:\d\d$"))
    expect(item.locator(".by")).to_have_text(" · by Maria")
    expect(page.locator("#compose-text")).to_have_value("")
    expect(page.get_by_role("button", name="Send later…")).to_be_visible()  # back to sending now
    assert texts_to(devhost, phone, "Your results are ready") == 0

    # At its time it goes, and the thread shows it as sent.
    expect(maria.bubble("Your results are ready")).to_be_visible(timeout=15_000)
    expect(item).to_have_count(0)
    assert time.monotonic() - started >= 2.5, "sent before its time"
    expect(maria.bubble("Your results are ready").locator(".status")).to_have_text(re.compile("delivered"))
    page.wait_for_timeout(2500)  # a few more timer runs
    assert texts_to(devhost, phone, "Your results are ready") == 1


def test_edit_and_cancel_a_scheduled_message(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    phone = "+14155550301"
    maria.open(phone)
    for text in ("Reminder: bring your card", "Second message, to cancel"):
        page.get_by_role("button", name="Send later…").click()
        page.get_by_label("Send at").fill(local_in(page, 3600))
        page.fill("#compose-text", text)
        page.locator("#compose-send").click()
        expect(scheduled_item(page, text)).to_be_visible()

    # Edit the text: the thread shows the new one.
    first = scheduled_item(page, "Reminder: bring your card")
    first.get_by_role("button", name="Edit").click()
    expect(first.get_by_label("Text")).to_be_focused()
    first.get_by_label("Text").fill("Reminder: please bring your insurance card")
    first.get_by_role("button", name="Save").click()
    edited = scheduled_item(page, "Reminder: please bring your insurance card")
    expect(edited).to_be_visible()
    expect(edited.get_by_role("button", name="Edit")).to_be_focused()

    # Cancel the other, with a step that can be declined.
    second = scheduled_item(page, "Second message, to cancel")
    second.get_by_role("button", name="Cancel").click()
    expect(second.get_by_role("button", name="Keep it")).to_be_focused()
    second.get_by_role("button", name="Keep it").click()
    expect(second.get_by_role("button", name="Cancel")).to_be_focused()
    second.get_by_role("button", name="Cancel").click()
    second.get_by_role("button", name="Cancel message").click()
    expect(second).to_have_count(0)

    token = devhost.session(staff="Ken")["token"]
    left = httpx.get(f"{devhost.base_url}/api/scheduled", headers={"Authorization": f"Bearer {token}"}).json()
    assert [i["body"] for i in left["scheduled"]] == ["Reminder: please bring your insurance card"]

    # A reload still shows what waits, and nothing that was cancelled.
    page.reload()
    maria.expect_connected()
    maria.open(phone)
    expect(scheduled_item(page, "Reminder: please bring your insurance card")).to_be_visible()
    expect(page.locator("#scheduled-list li")).to_have_count(1)
    edited = scheduled_item(page, "Reminder: please bring your insurance card")
    edited.get_by_role("button", name="Cancel").click()
    edited.get_by_role("button", name="Cancel message").click()
    expect(page.locator("#scheduled-section")).to_be_hidden()


def test_reminder_states_and_staff_setting_one_by_hand(maria: Desk, devhost: DevhostProcess) -> None:
    page = maria.page
    phone = "+14155550302"
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0302")
    page.fill("#new-date", "2026-12-03")
    page.fill("#new-time", "14:30")
    page.click("#new-template")
    page.check("#new-confirm")
    page.click("#new-send")
    expect(page.locator("#conversation")).to_have_attribute("data-phone", phone)
    reminder = maria.bubble("Your appointment is on", exact=False)
    expect(reminder.locator(".reminder-badge")).to_have_text("Reminder: awaiting confirmation")

    # The patient confirms (default settings): the automatic answer shows in the thread.
    patient_replies(devhost, phone, "C")
    expect(reminder.locator(".reminder-badge")).to_have_text("Reminder confirmed ✓")
    automatic = page.locator("#message-list li.msg.automatic")
    expect(automatic).to_have_count(1)
    expect(automatic.locator(".sender")).to_have_text("Automatic reply")

    # Staff move it by hand, with a note.
    reminder.get_by_role("button", name="Set state…").click()
    expect(reminder.get_by_label("State", exact=True)).to_be_focused()
    reminder.get_by_label("State", exact=True).select_option("cancelled")
    reminder.get_by_label("Note (optional)").fill("moved to 3 pm on Friday")
    reminder.get_by_role("button", name="Save state").click()
    expect(reminder.locator(".reminder-badge")).to_have_text("Reminder cancelled")
    expect(reminder.locator(".reminder-note")).to_have_text("Maria: moved to 3 pm on Friday")
    expect(reminder.get_by_role("button", name="Set state…")).to_be_focused()

    # After a reload the state and the note are still there.
    page.reload()
    maria.expect_connected()
    maria.open(phone)
    reminder = maria.bubble("Your appointment is on", exact=False)
    expect(reminder.locator(".reminder-badge")).to_have_text("Reminder cancelled")
    expect(reminder.locator(".reminder-note")).to_have_text("Maria: moved to 3 pm on Friday")

    # STOP ends a waiting reminder: opted out.
    page.click("#new-message-btn")
    page.fill("#new-phone", "(415) 555-0303")
    page.fill("#new-text", "Please confirm your visit tomorrow: reply C")
    page.check("#new-confirm")
    page.click("#new-send")
    expect(page.locator("#conversation")).to_have_attribute("data-phone", "+14155550303")
    second = maria.bubble("Please confirm your visit tomorrow: reply C")
    expect(second.locator(".status")).to_have_text(re.compile("delivered"))
    patient_replies(devhost, "+14155550303", "STOP")
    expect(second.locator(".reminder-badge")).to_have_text("Reminder: opted out (STOP)")
