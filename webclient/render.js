// DOM rendering. Text goes in through textContent only, never parsed as HTML.
import { formatPhone } from "./phone.js";
import { twilioErrorText } from "./api.js";

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- time --------------------------------------------------------------

export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.round((now - t) / 1000);
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d === 1) return "yesterday";
  if (d < 7) return `${d} days ago`;
  return new Date(t).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function clockTime(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  const sameDay = t.toDateString() === new Date().toDateString();
  const time = t.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" });
  return sameDay ? time : `${t.toLocaleDateString(undefined, { month: "short", day: "numeric" })}, ${time}`;
}

function fullTime(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : t.toLocaleString();
}

/** Refresh every <time data-relative> under root. */
export function refreshRelativeTimes(root) {
  for (const node of root.querySelectorAll("time[data-relative]")) {
    node.textContent = relativeTime(node.dateTime);
  }
}

// ---- conversation lists ------------------------------------------------

function snippetOf(conv) {
  const m = conv.lastMessage;
  if (!m) return "";
  const text = (m.displayBody ?? m.body ?? "").replace(/\s+/g, " ").trim();
  const pictures = m.media?.length || m.mediaCount || 0; // live: the media; from the server's list: a count
  const shown = text || (pictures > 1 ? `📷 ${pictures} photos` : pictures ? "📷 Photo" : "");
  if (m.direction === "note") return `Note from ${m.sentBy?.name ?? "staff"}: ${shown}`;
  if (m.direction !== "outbound") return shown; // inbound, or an event line ("Now with Billing (Maria)")
  return `${m.sentBy?.name ?? "You"}: ${shown}`;
}

function keepFocus(list, rebuild) {
  const active = document.activeElement;
  const inside = active && list.contains(active);
  const key = inside ? { phone: active.closest("[data-phone]")?.dataset.phone, role: active.dataset.role } : null;
  rebuild();
  if (key && key.phone) {
    const again = list.querySelector(`[data-phone="${CSS.escape(key.phone)}"] [data-role="${key.role}"]`);
    again?.focus();
  }
}

/** The top line of a list item: the patient's name (with the number beside it), else the number. */
function whoLine(phone, nameOf) {
  const name = nameOf(phone);
  if (!name) return [el("span", { class: "conv-phone", text: formatPhone(phone) })];
  return [
    el("span", { class: "conv-who-line" },
      el("span", { class: "conv-phone conv-name", text: name }),
      el("span", { class: "conv-number", text: formatPhone(phone) }),
    ),
  ];
}

export function renderConversations(list, conversations, { current, onOpen, nameOf }) {
  keepFocus(list, () => {
    list.replaceChildren(
      ...conversations.map((conv) => {
        const unread = conv.unread > 0;
        const button = el(
          "button",
          {
            type: "button",
            class: "conv-open",
            "data-role": "open",
            "aria-current": conv.phone === current ? "true" : null,
            onclick: () => onOpen(conv.phone),
          },
          el("span", { class: "conv-top" },
            ...whoLine(conv.phone, nameOf),
            el("time", { class: "conv-time", dateTime: conv.lastAt ?? "", "data-relative": "", text: relativeTime(conv.lastAt) }),
          ),
          el("span", { class: "conv-bottom" },
            el("span", { class: "conv-snippet", text: snippetOf(conv) }),
            unread ? el("span", { class: "badge", "aria-hidden": "true", text: String(conv.unread) }) : null,
            unread ? el("span", { class: "visually-hidden", text: `, ${conv.unread} unread` }) : null,
          ),
        );
        return el("li", { class: `conv-item${unread ? " unread" : ""}`, dataset: { phone: conv.phone } }, button);
      }),
    );
  });
}

export function renderUnrouted(list, items, { onClaim, busy, nameOf }) {
  keepFocus(list, () => {
    list.replaceChildren(
      ...items.map((conv) =>
        el("li", { class: "conv-item unrouted", dataset: { phone: conv.phone } },
          el("div", { class: "conv-static" },
            el("span", { class: "conv-top" },
              ...whoLine(conv.phone, nameOf),
              el("time", { class: "conv-time", dateTime: conv.lastAt ?? "", "data-relative": "", text: relativeTime(conv.lastAt) }),
            ),
            el("span", { class: "conv-bottom" }, el("span", { class: "conv-snippet full", text: snippetOf(conv) })),
          ),
          el("button", {
            type: "button",
            class: "claim secondary",
            "data-role": "claim",
            "aria-label": `Claim conversation with ${nameOf(conv.phone) ?? formatPhone(conv.phone)}`,
            disabled: busy.has(conv.phone),
            onclick: () => onClaim(conv.phone),
            text: busy.has(conv.phone) ? "Claiming…" : "Claim",
          }),
        ),
      ),
    );
  });
}

// ---- messages ----------------------------------------------------------

const STATUS_WORDS = {
  accepted: "queued",
  queued: "queued",
  sending: "sending…",
  sent: "sent",
  delivered: "delivered ✓",
  read: "read ✓✓",
  failed: "failed",
  undelivered: "not delivered",
  pending: "sending…",
};

export const REMINDER_WORDS = {
  scheduled: "Reminder: scheduled",
  pending: "Reminder: awaiting confirmation",
  sent: "Reminder: awaiting confirmation",
  confirmed: "Reminder confirmed ✓",
  declined: "Reminder declined ✗",
  no_answer: "Reminder: no answer",
  opted_out: "Reminder: opted out (STOP)",
  failed: "Reminder not delivered",
  cancelled: "Reminder cancelled",
};

/** The states staff may set by hand, as the menu words them. */
export const STAFF_STATES = [
  ["confirmed", "Confirmed"],
  ["declined", "Declined"],
  ["no_answer", "No answer"],
  ["cancelled", "Cancelled"],
  ["sent", "Awaiting an answer"],
];

export function statusLine(msg) {
  return STATUS_WORDS[msg.status] ?? msg.status ?? "";
}

export function errorLine(msg) {
  if (msg.status !== "failed" && msg.status !== "undelivered") return "";
  const words = twilioErrorText(msg.errorCode) ?? msg.errorMessage ?? null;
  if (words && msg.errorCode) return `Not delivered: ${words} (error ${msg.errorCode}).`;
  if (words) return `Not delivered: ${words}.`;
  return "Not delivered. The carrier gave no reason.";
}

/**
 * Keeps the <ol> in sync with a conversation's messages, one <li> per sid,
 * ordered by time; updates in place when a status or reminder changes.
 */
export class MessageView {
  /** onSetState(msg, state, note) sets a reminder's state by hand (a Promise); loadReminder(msg) fetches its note. */
  constructor(list, { loadMedia, onSetState, loadReminder }) {
    this.list = list;
    this.loadMedia = loadMedia;
    this.onSetState = onSetState;
    this.loadReminder = loadReminder;
    this.nodes = new Map();
    this.msgs = new Map(); // sid -> the message last shown
  }

  clear() {
    this.nodes.clear();
    this.msgs.clear();
    this.list.replaceChildren();
  }

  upsert(msg) {
    let node = this.nodes.get(msg.sid);
    if (!node) {
      node = this._create(msg);
      this.nodes.set(msg.sid, node);
      this._place(node, msg);
    }
    this._update(node, msg);
    return node;
  }

  _place(node, msg) {
    const t = Date.parse(msg.at) || 0;
    node.dataset.t = String(t);
    // walk back from the end: new messages usually go last
    let after = this.list.lastElementChild;
    while (after && Number(after.dataset.t) > t) after = after.previousElementSibling;
    if (after) after.after(node);
    else this.list.prepend(node);
  }

  _create(msg) {
    if (msg.direction === "event") return this._createEvent(msg);
    if (msg.direction === "note") return this._createNote(msg);
    const outbound = msg.direction === "outbound";
    const body = el("p", { class: "body" });
    const media = el("div", { class: "media" });
    const bubble = el("div", { class: "bubble" }, body, media);
    const time = el("time", { class: "msg-time", dateTime: msg.at ?? "", title: fullTime(msg.at), text: clockTime(msg.at) });
    const meta = el("p", { class: "meta" }, el("span", { class: "visually-hidden how", text: outbound ? "Sent " : "Received " }));
    if (outbound) meta.append(el("span", { class: "sender", hidden: true }), el("span", { class: "sep sender-sep", "aria-hidden": "true", text: " · ", hidden: true }));
    meta.append(time);
    if (outbound) meta.append(el("span", { class: "sep", "aria-hidden": "true", text: " · " }), el("span", { class: "status" }));
    const error = el("p", { class: "msg-error", hidden: true });
    const reminder = el("p", { class: "reminder-row", hidden: true },
      el("span", { class: "reminder-badge" }),
      el("button", {
        type: "button", class: "link set-state", "data-role": "set-state", text: "Set state…",
        onclick: () => this._openStateForm(li, msg.sid),
      }),
    );
    const note = el("p", { class: "reminder-note", hidden: true });
    const li = el("li", { class: `msg ${outbound ? "outbound" : "inbound"}`, dataset: { sid: msg.sid, direction: msg.direction } },
      bubble, meta, reminder, note, error);
    for (const m of msg.media ?? []) media.append(this._image(m, msg));
    media.hidden = !(msg.media && msg.media.length);
    return li;
  }

  /** A change of owner: a centred line in the thread, with the transfer note under it. */
  _createEvent(msg) {
    const time = el("time", { class: "msg-time", dateTime: msg.at ?? "", title: fullTime(msg.at), text: clockTime(msg.at) });
    return el("li", { class: "msg event", dataset: { sid: msg.sid, direction: "event" } },
      el("p", { class: "event-line" },
        el("span", { class: "event-text" }),
        el("span", { class: "sep", "aria-hidden": "true", text: " · " }),
        time,
      ),
      el("p", { class: "event-note", hidden: true },
        el("span", { class: "note-label" }),
        el("span", { class: "note-text" }),
      ),
    );
  }

  _updateEvent(node, msg) {
    node.querySelector(".event-text").textContent = msg.body ?? "";
    const line = msg.line ?? {};
    const note = typeof line.note === "string" ? line.note.trim() : "";
    const box = node.querySelector(".event-note");
    box.hidden = note === "";
    node.querySelector(".note-label").textContent = line.by?.name ? `Note from ${line.by.name}: ` : "Note: ";
    node.querySelector(".note-text").textContent = note;
  }

  /** An internal note: across the thread, unlike any SMS, with who wrote it; the patient never sees it. */
  _createNote(msg) {
    const time = el("time", { class: "msg-time", dateTime: msg.at ?? "", title: fullTime(msg.at), text: clockTime(msg.at) });
    return el("li", { class: "msg note", dataset: { sid: msg.sid, direction: "note" } },
      el("div", { class: "note-card" },
        el("p", { class: "note-head" },
          el("span", { class: "note-tag", text: "Internal note" }),
          el("span", { class: "visually-hidden", text: ", not sent to the patient, " }),
          el("span", { class: "sep", "aria-hidden": "true", text: " · " }),
          el("span", { class: "note-by" }),
          el("span", { class: "sep", "aria-hidden": "true", text: " · " }),
          time,
        ),
        el("p", { class: "note-body" }),
      ),
    );
  }

  _updateNote(node, msg) {
    node.querySelector(".note-by").textContent = msg.sentBy?.name ?? "Staff";
    const body = node.querySelector(".note-body");
    if (body.textContent !== (msg.body ?? "")) body.textContent = msg.body ?? "";
  }

  _image(m, msg) {
    const alt = msg.direction === "outbound" ? "Picture sent" : `Image from ${formatPhone(msg.from)}`;
    const img = el("img", { alt, class: "mms", loading: "lazy" });
    const frame = el("figure", { class: "mms-frame" }, img);
    this.loadMedia(m.url)
      .then((src) => { img.src = src; })
      .catch(() => {
        frame.replaceChildren(el("figcaption", { class: "mms-missing", text: "Image could not be loaded." }));
      });
    return frame;
  }

  /** The "set state" form under a reminder: a state, an optional note ("moved to 3 pm"), Save. */
  _openStateForm(li, sid) {
    const msg = this.msgs.get(sid);
    if (!msg || li.querySelector(".state-form")) {
      li.querySelector(".state-form select")?.focus();
      return;
    }
    const selId = `state-${sid}`;
    const noteId = `state-note-${sid}`;
    const select = el("select", { id: selId },
      ...STAFF_STATES.map(([value, label]) => el("option", { value, text: label })));
    select.value = STAFF_STATES.some(([v]) => v === msg.reminder) ? msg.reminder : "confirmed";
    const note = el("input", { id: noteId, type: "text", maxlength: "500", placeholder: "e.g. moved to 3 pm" });
    const error = el("p", { class: "form-error", role: "alert" });
    const close = () => {
      form.remove();
      li.querySelector(".set-state")?.focus();
    };
    const form = el("form", { class: "state-form", novalidate: true, "aria-label": "Set the reminder's state" },
      el("div", { class: "field" }, el("label", { for: selId, text: "State" }), select),
      el("div", { class: "field grow" }, el("label", { for: noteId, text: "Note (optional)" }), note),
      el("div", { class: "state-actions" },
        el("button", { type: "submit", class: "primary", text: "Save state" }),
        el("button", { type: "button", class: "secondary", text: "Close", onclick: close }),
      ),
      error,
    );
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        close();
      }
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        await this.onSetState(this.msgs.get(sid), select.value, note.value.trim());
        close();
      } catch (err) {
        error.textContent = err.userText ?? err.message;
      }
    });
    li.querySelector(".reminder-note").after(form);
    select.focus();
  }

  _update(node, msg) {
    if (msg.direction === "event") {
      this._updateEvent(node, msg);
      return;
    }
    if (msg.direction === "note") {
      this._updateNote(node, msg);
      return;
    }
    this.msgs.set(msg.sid, msg);
    const text = msg.direction === "inbound" ? (msg.displayBody ?? msg.body ?? "") : (msg.body ?? "");
    const body = node.querySelector(".body");
    if (body.textContent !== text) body.textContent = text;
    body.hidden = text === "";
    const sender = node.querySelector(".sender");
    if (sender) {
      const name = msg.sentBy?.name ?? (msg.automatic ? "Automatic reply" : "");
      sender.textContent = name;
      sender.hidden = name === "";
      node.querySelector(".sender-sep").hidden = name === "";
      node.querySelector(".how").textContent = msg.sentBy?.name ? "Sent by " : "Sent ";
      node.classList.toggle("automatic", !!msg.automatic);
    }
    const status = node.querySelector(".status");
    if (status) {
      status.textContent = statusLine(msg);
      status.dataset.status = msg.status ?? "";
      node.dataset.status = msg.status ?? "";
    }
    const error = node.querySelector(".msg-error");
    const errText = errorLine(msg);
    error.textContent = errText;
    error.hidden = !errText;
    const reminder = node.querySelector(".reminder-badge");
    reminder.textContent = msg.reminder ? REMINDER_WORDS[msg.reminder] ?? msg.reminder : "";
    reminder.dataset.state = msg.reminder ?? "";
    node.querySelector(".reminder-row").hidden = !msg.reminder;
    node.querySelector(".set-state").hidden = msg.direction !== "outbound" || msg.reminder === "scheduled";
    const info = msg.reminderInfo;
    const note = node.querySelector(".reminder-note");
    const noteText = info?.note ? `${info.by?.name ? `${info.by.name}: ` : ""}${info.note}` : "";
    note.textContent = noteText;
    note.hidden = !noteText;
    if (msg.reminder && !info && msg.direction === "outbound" && !node.dataset.askedReminder) {
      node.dataset.askedReminder = "1";
      this.loadReminder(msg);
    }
  }
}
