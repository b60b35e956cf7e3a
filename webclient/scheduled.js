// Messages this desk scheduled for later: loaded with the desk, kept up to date
// by live `scheduled` events, and shown at the end of their conversation as
// "Scheduled for Wed 09:00" with Edit (text and time) and Cancel.
import { explainApiError } from "./api.js";
import { localInputValue } from "./compose.js";
import { $, el } from "./render.js";
import { countSegments, describeSegments } from "./segments.js";
import { ts } from "./state.js";

/** "Wed 09:00" this week, "Wed 24 Nov 09:00" further ahead, in this computer's time. */
export function whenText(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  const day = t.toLocaleDateString("en-GB", { weekday: "short" });
  const time = t.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const soon = t.getTime() - Date.now() < 6 * 86400_000;
  const date = soon ? "" : ` ${t.toLocaleDateString("en-GB", { day: "numeric", month: "short" })}`;
  return `${day}${date} ${time}`;
}

export class ScheduledMessages {
  constructor({ api, store }) {
    this.api = api;
    this.store = store;
    this.editing = null; // id of the item whose editor is open
    this.confirming = null; // id of the item asking "Cancel it?"
  }

  async load() {
    const desk = this.store.session?.webAppId;
    const res = await this.api.scheduled();
    if (this.store.session?.webAppId !== desk) return;
    this.store.scheduled.clear();
    for (const item of res?.scheduled ?? []) if (item.status === "scheduled") this.store.scheduled.set(item.id, item);
    this.render();
  }

  /** A scheduled item was created, changed, cancelled or sent (a live event, or our own answer). */
  upsert(item) {
    if (!item?.id) return;
    const known = this.store.scheduled.get(item.id);
    if (known && item.status === "scheduled" && known.status !== "scheduled") return;
    if (item.status === "scheduled") this.store.scheduled.set(item.id, item);
    else this.store.scheduled.delete(item.id);
    if (!this.store.current || item.to === this.store.current) this.render();
  }

  /** The open conversation's scheduled messages, soonest first. */
  render() {
    const phone = this.store.current;
    const items = [...this.store.scheduled.values()]
      .filter((i) => i.to === phone)
      .sort((a, b) => ts(a.goesAt ?? a.sendAt) - ts(b.goesAt ?? b.sendAt));
    const list = $("scheduled-list");
    const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused ? [focused.closest("li")?.dataset.id, focused.dataset.role] : null;
    list.replaceChildren(...items.map((item) => this._item(item)));
    $("scheduled-section").hidden = items.length === 0;
    if (focusKey) list.querySelector(`li[data-id="${CSS.escape(focusKey[0] ?? "")}"] [data-role="${focusKey[1]}"]`)?.focus();
  }

  _item(item) {
    const goes = item.goesAt && item.goesAt !== item.sendAt ? ` (quiet hours: goes ${whenText(item.goesAt)})` : "";
    const li = el("li", { class: "msg outbound scheduled", dataset: { id: item.id } },
      el("div", { class: "bubble" }, el("p", { class: "body", text: item.body ?? "" })),
      el("p", { class: "meta" },
        el("span", { class: "when", text: `Scheduled for ${whenText(item.sendAt)}${goes}` }),
        item.by?.name ? el("span", { class: "by", text: ` · by ${item.by.name}` }) : null,
        item.confirm ? el("span", { class: "by", text: " · reminder" }) : null,
      ),
    );
    if (this.editing === item.id) li.append(this._editor(item));
    else if (this.confirming === item.id) li.append(this._confirm(item));
    else {
      li.append(el("p", { class: "scheduled-actions" },
        el("button", { type: "button", class: "link", "data-role": "edit", text: "Edit", onclick: () => this.edit(item.id) }),
        el("button", { type: "button", class: "link", "data-role": "cancel", text: "Cancel", onclick: () => this.askCancel(item.id) }),
      ));
    }
    li.append(el("p", { class: "form-error", role: "alert", "data-role": "error" }));
    return li;
  }

  _confirm(item) {
    return el("p", { class: "scheduled-actions confirm", role: "group", "aria-label": "Cancel this scheduled message?" },
      el("span", { class: "confirm-text", text: "Cancel this message?" }),
      el("button", { type: "button", class: "danger", "data-role": "yes", text: "Cancel message", onclick: () => this.cancel(item.id) }),
      el("button", { type: "button", class: "secondary", "data-role": "keep", text: "Keep it", onclick: () => this.stop(item.id, "cancel") }),
    );
  }

  _editor(item) {
    const bodyId = `sched-body-${item.id}`;
    const whenId = `sched-when-${item.id}`;
    const counter = el("p", { class: "counter", text: describeSegments(item.body ?? "") });
    const body = el("textarea", { id: bodyId, rows: 3, "data-role": "body" });
    body.value = item.body ?? "";
    const when = el("input", { id: whenId, type: "datetime-local", step: "1", "data-role": "when" });
    when.value = localInputValue(new Date(item.sendAt));
    body.addEventListener("input", () => { counter.textContent = describeSegments(body.value); });
    const form = el("form", { class: "scheduled-editor", novalidate: true },
      el("label", { for: bodyId, text: "Text" }), body, counter,
      el("label", { for: whenId, text: "Send at" }), when,
      el("p", { class: "scheduled-actions" },
        el("button", { type: "submit", class: "primary", "data-role": "save", text: "Save" }),
        el("button", { type: "button", class: "secondary", "data-role": "close", text: "Close", onclick: () => this.stop(item.id, "edit") }),
      ),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save(item, body.value, when.value, form);
    });
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        this.stop(item.id, "edit");
      }
    });
    return form;
  }

  _node(id) {
    return $("scheduled-list").querySelector(`li[data-id="${CSS.escape(id)}"]`);
  }

  edit(id) {
    this.editing = id;
    this.confirming = null;
    this.render();
    this._node(id)?.querySelector("[data-role=body]")?.focus();
  }

  askCancel(id) {
    this.confirming = id;
    this.editing = null;
    this.render();
    this._node(id)?.querySelector("[data-role=keep]")?.focus();
  }

  stop(id, what) {
    this.editing = null;
    this.confirming = null;
    this.render();
    this._node(id)?.querySelector(`[data-role=${what}]`)?.focus();
  }

  showError(id, err) {
    const box = this._node(id)?.querySelector("[data-role=error]");
    if (box) box.textContent = explainApiError(err);
  }

  async save(item, text, whenValue, form) {
    const change = {};
    if (text !== item.body) change.body = text;
    const t = whenValue ? new Date(whenValue) : null;
    if (t && !Number.isNaN(t.getTime()) && t.getTime() !== Date.parse(item.sendAt)) change.sendAt = t.toISOString();
    if (countSegments(text).tooLong || text.trim() === "") {
      form.parentElement.querySelector("[data-role=error]").textContent = "The text must be 1 to 1600 characters.";
      return;
    }
    if (!Object.keys(change).length) {
      this.stop(item.id, "edit");
      return;
    }
    try {
      const saved = await this.api.editScheduled(item.id, change);
      this.editing = null;
      this.upsert(saved);
      this.render();
      this._node(item.id)?.querySelector("[data-role=edit]")?.focus();
      $("scheduled-status").textContent = `Scheduled for ${whenText(saved.sendAt)}.`;
    } catch (err) {
      this.showError(item.id, err);
    }
  }

  async cancel(id) {
    try {
      const item = await this.api.cancelScheduled(id);
      this.confirming = null;
      this.upsert(item ?? { id, status: "cancelled" });
      $("scheduled-status").textContent = "The scheduled message was cancelled.";
      $("compose-text").focus();
    } catch (err) {
      this.confirming = null;
      this.render();
      this.showError(id, err);
    }
  }
}
