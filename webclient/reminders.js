// The desk's Reminders view: upload tomorrow's list, write the text (live preview
// and segment count), preview every row (errors highlighted), schedule it and
// watch the batch go out, then read the board of a day. Every value from the
// file or the server is untrusted text: it only ever goes into textContent.
import { explainApiError } from "./api.js";
import { formatPhone } from "./phone.js";
import { $, el } from "./render.js";
import { describeSegments } from "./segments.js";

export const STATES = ["scheduled", "sent", "confirmed", "declined", "no_answer", "opted_out", "failed", "cancelled"];
const LABELS = { no_answer: "no answer", opted_out: "opted out" };
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
export const DEFAULT_TEMPLATE =
  "Hi {name}, this is {clinic} reminding you of your appointment on {date} at {time}. Reply C to confirm or N to cancel.";

export const stateLabel = (state) => LABELS[state] ?? state;

/** "32 sent · 21 confirmed · 2 declined · 9 no answer": the states that have any. */
export function countsText(counts) {
  const parts = STATES.filter((s) => (counts?.[s] ?? 0) > 0).map((s) => `${counts[s]} ${stateLabel(s)}`);
  return parts.length ? parts.join(" · ") : "No reminders for this day.";
}

/** `Wed 24 Nov`, as the server renders {date}. */
export function dayText(isoDay) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(isoDay ?? "")) return isoDay ?? "";
  const [y, m, d] = isoDay.split("-").map(Number);
  const t = new Date(Date.UTC(y, m - 1, d));
  if (Number.isNaN(t.getTime()) || m < 1 || m > 12) return isoDay;
  return `${WEEKDAYS[t.getUTCDay()]} ${d} ${MONTHS[m - 1]}`;
}

/** The template with sample values, as the server substitutes them (values, never formats). */
export function renderTemplate(body, values) {
  return (body ?? "").replace(/\{([^{}]*)\}/g, (whole, key) => (key in values ? values[key] : whole));
}

export function isoDay(offsetDays = 0) {
  const t = new Date();
  t.setDate(t.getDate() + offsetDays);
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
}

export class RemindersView {
  constructor({ api, store, onOpen }) {
    this.api = api;
    this.store = store;
    this.onOpen = onOpen;
    this.preview = null; // the dry run's answer for the file as it is now
    this.batch = null; // {batch, total, sent, failed, ...} being followed
    this.board = null;
    this.filter = null;
    $("reminders-btn").addEventListener("click", () => this.show());
    $("reminders-close").addEventListener("click", () => this.hide(true));
    $("rem-file").addEventListener("change", () => this.changed());
    for (const id of ["rem-days", "rem-time"]) $(id).addEventListener("change", () => this.changed());
    $("rem-template").addEventListener("input", () => this.changed());
    $("rem-template-pick").addEventListener("change", () => this.pickTemplate());
    $("rem-template-save").addEventListener("click", () => this.saveTemplate());
    $("rem-upload").addEventListener("submit", (e) => {
      e.preventDefault();
      this.dryRun();
    });
    $("rem-schedule").addEventListener("click", () => this.schedule());
    $("board-date").addEventListener("change", () => this.loadBoard());
    $("board-export").addEventListener("click", () => this.exportBoard());
    $("board-again").addEventListener("click", () => this.remindAgain());
    $("rem-template").value = DEFAULT_TEMPLATE;
    $("board-date").value = isoDay(1);
    this.changed();
  }

  get visible() {
    return !$("reminders-view").hidden;
  }

  show() {
    $("pane-empty").hidden = true;
    $("conversation").hidden = true;
    $("reminders-view").hidden = false;
    $("layout").dataset.view = "conversation";
    this.renderTemplates();
    this.loadBoard();
    $("reminders-heading").focus();
  }

  /** Leave the view (for a conversation, or back to the list). */
  hide(toList = false) {
    if (!this.visible) return;
    $("reminders-view").hidden = true;
    if (toList) {
      $("layout").dataset.view = "list";
      if (this.store.current) $("conversation").hidden = false;
      else $("pane-empty").hidden = false;
      $("reminders-btn").focus();
    }
  }

  reset() {
    this.preview = null;
    this.batch = null;
    this.board = null;
    $("reminders-view").hidden = true;
    $("rem-preview").replaceChildren();
    $("rem-summary").textContent = "";
    $("rem-progress-row").hidden = true;
  }

  // -- the text

  values() {
    return {
      name: "Ana Núñez",
      date: dayText($("board-date").value || isoDay(1)),
      time: "09:30",
      desk: this.store.session?.desk?.name ?? "",
      clinic: "the clinic",
    };
  }

  changed() {
    this.preview = null;
    $("rem-schedule").disabled = true;
    const text = renderTemplate($("rem-template").value, this.values());
    $("rem-sample").textContent = text;
    $("rem-sample-count").textContent = describeSegments(text);
    $("rem-preview-btn").disabled = !$("rem-file").files?.length || !$("rem-template").value.trim();
  }

  renderTemplates() {
    const pick = $("rem-template-pick");
    const chosen = pick.value;
    const saved = [...this.store.templates.values()].sort((a, b) => a.name.localeCompare(b.name));
    pick.replaceChildren(
      el("option", { value: "", text: "Saved texts…" }),
      ...saved.map((t) => el("option", { value: t.id, text: t.name })),
    );
    pick.value = saved.some((t) => t.id === chosen) ? chosen : "";
  }

  pickTemplate() {
    const t = this.store.templates.get($("rem-template-pick").value);
    if (!t) return;
    $("rem-template").value = t.body;
    $("rem-template-name").value = t.name;
    this.changed();
  }

  async saveTemplate() {
    const name = $("rem-template-name").value.trim();
    const status = $("rem-template-status");
    if (!name) {
      status.textContent = "Give the text a name to save it.";
      $("rem-template-name").focus();
      return;
    }
    const id = [...this.store.templates.values()].find((t) => t.name === name)?.id ?? slug(name);
    try {
      const saved = await this.api.putTemplate(id, { name, body: $("rem-template").value });
      this.store.templates.set(saved.id, saved);
      this.store.onTemplates();
      status.textContent = `Saved as “${saved.name}”.`;
    } catch (err) {
      status.textContent = explainApiError(err);
    }
  }

  // -- preview and schedule

  form() {
    return {
      file: $("rem-file").files[0],
      template: $("rem-template").value,
      sendDaysBefore: $("rem-days").value || "1",
      sendTime: $("rem-time").value || "09:00",
    };
  }

  async dryRun() {
    const error = $("rem-error");
    error.textContent = "";
    if (!$("rem-file").files?.length) return;
    $("rem-preview-btn").disabled = true;
    try {
      const res = await this.api.importReminders(this.form(), true);
      this.preview = res;
      this.renderRows(res);
      $("rem-schedule").disabled = res.valid === 0;
      $("rem-schedule").textContent = `Schedule ${res.valid} reminder${res.valid === 1 ? "" : "s"}`;
    } catch (err) {
      error.textContent = explainApiError(err);
    } finally {
      $("rem-preview-btn").disabled = false;
    }
  }

  renderRows(res) {
    const parts = [`${res.valid + res.scheduled} ready`];
    if (res.existing) parts.push(`${res.existing} already scheduled`);
    if (res.invalid) parts.push(`${res.invalid} with errors`);
    $("rem-summary").textContent = parts.join(" · ");
    const rows = res.rows.map((r) => {
      const bad = r.status === "invalid";
      const status = bad ? r.error?.message ?? "Invalid" : r.status === "existing" ? "Already scheduled" : r.status === "scheduled" ? "Scheduled" : "Ready";
      return el("tr", { class: bad ? "row-error" : r.status === "existing" ? "row-existing" : null, dataset: { row: String(r.row), status: r.status } },
        el("td", { text: String(r.row) }),
        el("td", { text: r.name ?? "" }),
        el("td", { class: "nowrap", text: r.phone ? formatPhone(r.phone) : "" }),
        el("td", { class: "nowrap", text: [r.date ? dayText(r.date) : "", r.time].filter(Boolean).join(" ") }),
        el("td", { class: "nowrap", text: r.sendAt ? new Date(r.sendAt).toLocaleString("en-GB", { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }) : "" }),
        el("td", { class: "rem-text", text: r.text ?? "" }),
        el("td", { class: "nowrap", text: r.segments != null ? `${r.segments} · ${r.encoding}` : "" }),
        el("td", { class: "rem-status", text: status }),
      );
    });
    const head = el("tr", {}, ...["Row", "Name", "Phone", "Appointment", "Sends", "Text", "SMS", "Status"].map((h) => el("th", { scope: "col", text: h })));
    $("rem-preview").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  }

  async schedule() {
    if (!this.preview) return;
    const error = $("rem-error");
    error.textContent = "";
    $("rem-schedule").disabled = true;
    try {
      const res = await this.api.importReminders(this.form(), false);
      this.renderRows(res);
      this.preview = null;
      if (res.batch) {
        this.batch = { batch: res.batch, total: res.scheduled, sent: 0, failed: 0, cancelled: 0, scheduled: res.scheduled, done: false };
        this.renderProgress();
        this.api.batch(res.batch).then((p) => this.onBatch(p)).catch(() => {});
      } else {
        $("rem-progress-text").textContent = "Nothing new to schedule: every appointment was already scheduled.";
        $("rem-progress-row").hidden = false;
      }
      this.loadBoard();
    } catch (err) {
      error.textContent = explainApiError(err);
      $("rem-schedule").disabled = false;
    }
  }

  /** A live `batch` event (or the batch's progress read once). */
  onBatch(p) {
    if (!p?.batch) return;
    if (this.batch?.batch === p.batch) {
      const ahead = (p.sent ?? 0) + (p.failed ?? 0) >= (this.batch.sent ?? 0) + (this.batch.failed ?? 0);
      if (ahead) this.batch = p;
      this.renderProgress();
    }
    if (this.visible) this.loadBoardSoon();
  }

  renderProgress() {
    const b = this.batch;
    if (!b) return;
    const bar = $("rem-progress");
    bar.max = Math.max(1, b.total);
    bar.value = b.sent + b.failed + (b.cancelled ?? 0);
    const parts = [`${b.sent} of ${b.total} sent`];
    if (b.failed) parts.push(`${b.failed} failed`);
    if (b.cancelled) parts.push(`${b.cancelled} cancelled`);
    $("rem-progress-text").textContent = (b.done ? "Done: " : "Sending: ") + parts.join(" · ");
    $("rem-progress-row").hidden = false;
  }

  // -- the board

  loadBoardSoon() {
    clearTimeout(this.boardTimer);
    this.boardTimer = setTimeout(() => this.loadBoard(), 300);
  }

  async loadBoard() {
    const day = $("board-date").value;
    if (!day) return;
    try {
      const res = await this.api.board(day);
      if ($("board-date").value !== day) return;
      this.board = res;
      this.renderBoard();
      $("board-error").textContent = "";
    } catch (err) {
      $("board-error").textContent = explainApiError(err);
    }
  }

  renderBoard() {
    const b = this.board;
    if (!b) return;
    $("board-counts").textContent = countsText(b.counts);
    const filters = [null, ...STATES.filter((s) => (b.counts[s] ?? 0) > 0)];
    if (this.filter && !filters.includes(this.filter)) this.filter = null;
    $("board-filters").replaceChildren(...filters.map((s) => el("button", {
      type: "button",
      class: "chip",
      "aria-pressed": String(this.filter === s),
      dataset: { state: s ?? "all" },
      text: s ? `${stateLabel(s)} (${b.counts[s]})` : `All (${b.total})`,
      onclick: () => { this.filter = s; this.renderBoard(); },
    })));
    const rows = b.reminders.filter((r) => !this.filter || r.state === this.filter).map((r) => {
      const name = r.contact?.name ?? formatPhone(r.phone);
      return el("tr", { dataset: { phone: r.phone, state: r.state } },
        el("td", { class: "nowrap", text: r.time ?? "" }),
        el("td", {}, el("button", { type: "button", class: "link", text: name, "aria-label": `Open the conversation with ${name}`, onclick: () => this.openRow(r.phone) })),
        el("td", { class: "nowrap", text: formatPhone(r.phone) }),
        el("td", {}, el("span", { class: `state state-${r.state}`, text: stateLabel(r.state) })),
        el("td", { text: r.lastReply ?? "" }),
        el("td", { text: r.note ?? "" }),
      );
    });
    const head = el("tr", {}, ...["Time", "Patient", "Phone", "State", "Last reply", "Note"].map((h) => el("th", { scope: "col", text: h })));
    $("board-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
    $("board-empty").hidden = b.total > 0;
    const unanswered = b.counts.no_answer ?? 0;
    $("board-again").disabled = unanswered === 0;
    $("board-again").textContent = unanswered ? `Remind again (${unanswered})` : "Remind again";
  }

  openRow(phone) {
    this.hide();
    this.onOpen(phone);
  }

  async exportBoard() {
    const day = $("board-date").value;
    try {
      const blob = await this.api.exportBoard(day);
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: `reminders-${day}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      $("board-error").textContent = explainApiError(err);
    }
  }

  async remindAgain() {
    const day = $("board-date").value;
    $("board-again").disabled = true;
    try {
      const res = await this.api.remindAgain(day);
      $("board-error").textContent = res.count ? `Reminding ${res.count} again.` : "Nobody is waiting for an answer.";
      if (res.batch) {
        this.batch = { batch: res.batch, total: res.count, sent: 0, failed: 0, cancelled: 0, scheduled: res.count, done: false };
        this.renderProgress();
      }
      this.loadBoard();
    } catch (err) {
      $("board-error").textContent = explainApiError(err);
    }
  }
}

function slug(name) {
  const s = name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 48);
  return s || `t-${Date.now().toString(36)}`;
}
