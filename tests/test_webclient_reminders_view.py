"""The Reminders view in real headless Chromium against the local devhost: upload a list, write the text with a
live preview, preview every row (errors highlighted), schedule it and watch the progress bar, then read the
board (counts, filters, live answers), open a conversation from it, and use the saved text in the compose box.
Screenshots go to docs/img/."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support.devhost import DevhostProcess

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.support.webclient import IMG_DIR, XSS, Desk, patient_replies, phone_received  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

expect.set_options(timeout=10_000)

DEVHOST_ENV = {"SCHEDULE_MIN_LEAD_SECONDS": "0", "SCHEDULE_POLL_SECONDS": "1", "SEND_RATE_PER_SECOND": "20"}
TEXT = "Hi {name}, see you on {date} at {time} at {desk}. Reply C to confirm."


def test_upload_preview_schedule_and_the_board(maria: Desk, devhost: DevhostProcess, tmp_path: Path) -> None:
    page = maria.page
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    ana, ben, hostile, dora = "+14155550301", "+14155550302", "+14155550303", "+14155550304"
    rows = [
        f"{ana},Ana Núñez,{tomorrow},09:00",
        f"{ben},Ben Okafor,{tomorrow},09:30",
        f'{hostile},"{XSS}",{tomorrow},10:00',
        f"{dora},Dora Lee,{tomorrow},10:30",
        f"12ab,Nobody,{tomorrow},11:00",
        f"{ben},Ben again,{tomorrow},09:30",
    ]
    listed = tmp_path / "tomorrow.csv"
    listed.write_text("phone,name,date,time\n" + "\n".join(rows) + "\n", encoding="utf-8")

    page.get_by_role("button", name="Reminders").click()
    expect(page.get_by_role("heading", name="Reminders", exact=True)).to_be_focused()
    page.set_input_files("#rem-file", str(listed))
    page.get_by_label("Reminder text").fill(TEXT)
    page.get_by_label("Send time").fill("00:00")  # a time already past: they go at once
    expect(page.locator("#rem-sample")).to_contain_text("Hi Ana Núñez, see you on")
    expect(page.locator("#rem-sample")).to_contain_text("at Reception. Reply C")
    expect(page.locator("#rem-sample-count")).to_contain_text("SMS")
    page.get_by_label("Save this text as").fill("Tomorrow")
    page.get_by_role("button", name="Save text").click()
    expect(page.locator("#rem-template-status")).to_have_text("Saved as “Tomorrow”.")

    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#rem-summary")).to_have_text("4 ready · 2 with errors")
    errors = page.locator("#rem-preview tr.row-error")
    expect(errors).to_have_count(2)
    expect(errors.nth(0).locator(".rem-status")).to_contain_text("phone number")
    expect(errors.nth(1).locator(".rem-status")).to_contain_text("earlier row")
    expect(page.locator("#rem-preview tr[data-row='3'] td").nth(1)).to_have_text(XSS)
    expect(page.locator("#rem-preview img")).to_have_count(0)
    page.locator("#rem-preview").screenshot(path=str(IMG_DIR / "reminders-preview.png"))

    page.get_by_role("button", name="Schedule 4 reminders").click()
    expect(page.locator("#rem-progress-text")).to_have_text("Done: 4 of 4 sent", timeout=20_000)
    expect(page.locator("#rem-progress")).to_have_js_property("value", 4)
    assert phone_received(devhost, ana, "Hi Ana Núñez, see you on")
    page.get_by_label("Appointments on").fill(tomorrow)
    expect(page.locator("#board-counts")).to_have_text("4 sent")

    # Ana confirms from her phone: the board changes by itself.
    patient_replies(devhost, ana, "C")
    expect(page.locator("#board-counts")).to_have_text("3 sent · 1 confirmed")
    page.get_by_role("button", name="confirmed (1)").click()
    board = page.locator("#board-table tbody tr")
    expect(board).to_have_count(1)
    expect(board.locator("td").nth(4)).to_have_text("C")
    page.get_by_role("button", name="All (4)").click()
    expect(board).to_have_count(4)
    expect(page.locator("#board-table tr[data-phone='+14155550303'] button")).to_have_text(XSS)
    expect(page.locator("#board-table img")).to_have_count(0)
    page.locator("#reminders-view .board").screenshot(path=str(IMG_DIR / "reminders-board.png"))

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == f"reminders-{tomorrow}.csv"

    # A row opens its conversation; the saved text is in the compose box.
    page.get_by_role("button", name="Open the conversation with Ben Okafor").click()
    expect(page.locator("#conversation")).to_have_attribute("data-phone", ben)
    expect(page.locator("#reminders-view")).to_be_hidden()
    page.locator("#compose-text").press("Control+/")
    page.keyboard.type("Tomorrow")
    page.keyboard.press("Enter")
    expect(page.locator("#compose-text")).to_have_value(
        "Hi Ben Okafor, see you on {date} at {time} at Reception. Reply C to confirm."
    )


def test_a_saved_text_in_the_new_message_dialog(maria: Desk) -> None:
    page = maria.page
    page.click("#new-message-btn")
    expect(page.locator("#new-dialog")).to_be_visible()
    page.fill("#new-name", "Carla Díaz")
    page.fill("#new-date", "2026-11-24")
    page.fill("#new-time", "15:30")
    page.get_by_label("Insert a saved text").select_option(label="Tomorrow")
    expect(page.locator("#new-text")).to_have_value(
        "Hi Carla Díaz, see you on Tue 24 Nov at 15:30 at Reception. Reply C to confirm."
    )
    expect(page.locator("#new-counter")).to_contain_text("SMS")
    page.keyboard.press("Escape")
    expect(page.locator("#new-dialog")).to_be_hidden()
