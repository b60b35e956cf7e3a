// Writing texts: the compose box under the open conversation (with a draft
// per conversation, a picture to attach, quick replies, and an internal-note
// mode that never texts anyone) and the
// "New message" dialog with its appointment reminder; both ask before taking
// a patient over from another desk.
import { ApiError, explainApiError, firstSentence } from "./api.js";
import { PictureAttachment } from "./attachments.js";
import { COUNTRIES, formatPhone, normalizePhone } from "./phone.js";
import { QuickReplies } from "./quickreplies.js";
import { $ } from "./render.js";
import { countSegments, describeSegments, MAX_CHARS } from "./segments.js";
import { cancelTakeOver, sendOrTakeOver } from "./takeover.js";

const NOT_TAKEN = "Not sent. The conversation stays with the other desk.";

const KEY_COUNTRY = "smsrelay.country";

/** An internal note's limit, in characters as the server counts them (code points). */
const MAX_NOTE = 2000;
const SMS_PLACEHOLDER = "Type a message. Enter sends, Shift+Enter adds a line.";
const NOTE_PLACEHOLDER = "Internal note for this desk. Never sent to the patient. Enter adds it.";

function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function describeLimit(text) {
  const c = countSegments(text);
  return c.tooLong ? `Too long: ${c.chars} characters. The limit is ${MAX_CHARS}; shorten the message to send it.` : "";
}

/** Put a message the API accepted into the store (media: the pictures it carried); returns the phone it went to. */
function recordSent(store, phone, res, text, media = []) {
  const msg = {
    sid: res.sid,
    direction: "outbound",
    from: res.from ?? "",
    to: res.to ?? phone,
    body: text,
    displayBody: text,
    at: new Date().toISOString(),
    status: res.status ?? "queued",
    errorCode: null,
    errorMessage: null,
    media,
    reminder: res.reminder ?? null,
    sentBy: res.sentBy ?? store.session?.staff ?? null,
  };
  const target = res.to ?? phone;
  const merged = store.addMessage(target, msg);
  store.touchConversation(target, merged, false);
  return target;
}

function isPlainEnter(ev) {
  return ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey;
}

/** The compose box of the open conversation. */
export class Composer {
  /** onSent(phone, sid) runs right after a sent message is recorded; onScheduled(item) after one is scheduled. */
  constructor({ api, store, onSent, onScheduled }) {
    this.api = api;
    this.store = store;
    this.onSent = onSent;
    this.onScheduled = onScheduled;
    this.key = null; // idempotency key, kept across retries of the same text
    this.sending = false;
    this.noteMode = false;
    this.blocked = null; // why texts cannot go to this number now (it opted out), or null
    // A different picture is a different message: a retry must not reuse the key of the last one.
    this.picture = new PictureAttachment({ api, store, onChange: () => { this.key = null; this.update(); } });
    this.quick = new QuickReplies({ store });

    const box = $("compose-text");
    box.addEventListener("input", () => {
      this.key = null;
      const err = $("compose-error");
      if (err.dataset.kind === "api") {
        err.textContent = "";
        err.dataset.kind = "";
      }
      this.update();
    });
    box.addEventListener("keydown", (ev) => {
      if (isPlainEnter(ev)) {
        ev.preventDefault();
        this.send();
      }
    });
    $("compose").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send();
    });
    $("compose-later").addEventListener("click", () => this.toggleLater());
    $("compose-note").addEventListener("click", () => this.setNoteMode(!this.noteMode));
    $("compose-when").addEventListener("input", () => { this.key = null; this.update(); });
    $("compose-when").addEventListener("keydown", (ev) => {
      if (isPlainEnter(ev)) {
        ev.preventDefault();
        this.send();
      }
    });
  }

  /** No texts to this conversation (reason), or texts again (null); internal notes are still allowed. */
  setBlocked(reason) {
    this.blocked = reason;
    this.update();
  }

  /** Write an internal note instead of a text (and back); the box says which, unmistakably. */
  setNoteMode(on) {
    this.noteMode = on;
    if (on && !$("compose-later-row").hidden) this.toggleLater(false);
    $("compose").classList.toggle("note-mode", on);
    $("compose-note").setAttribute("aria-pressed", String(on));
    $("compose-later").hidden = on;
    $("compose-attach").hidden = on;
    $("compose-text").placeholder = on ? NOTE_PLACEHOLDER : SMS_PLACEHOLDER;
    $("compose-text").setAttribute("aria-label", on ? "Internal note" : "Message");
    this.key = null;
    this.picture.render();
    $("compose-text").focus({ preventScroll: true });
  }

  /** Show or hide the "Send at" time; shown, Send schedules the text instead. */
  toggleLater(show = $("compose-later-row").hidden) {
    const row = $("compose-later-row");
    row.hidden = !show;
    $("compose-later").setAttribute("aria-expanded", String(show));
    $("compose-later").textContent = show ? "Send now instead" : "Send later…";
    if (show) {
      if (!$("compose-when").value) $("compose-when").value = localInputValue(new Date(Date.now() + 3600_000), false);
      $("compose-when").focus();
    } else {
      $("compose-when").value = "";
    }
    this.key = null;
    this.update();
  }

  /** The time to send at (an ISO string), null to send now, or undefined when the time given is not usable. */
  sendAt() {
    if ($("compose-later-row").hidden) return null;
    const when = $("compose-when").value;
    const t = when ? new Date(when) : null;
    return t && !Number.isNaN(t.getTime()) ? t.toISOString() : undefined;
  }

  /** Keep what was typed for the open conversation. */
  saveDraft() {
    if (this.store.current) this.store.drafts.set(this.store.current, $("compose-text").value);
  }

  /** Show the draft of the conversation just opened. */
  load(phone) {
    cancelTakeOver("compose-takeover");
    if (!$("compose-later-row").hidden) this.toggleLater(false);
    if (this.noteMode) this.setNoteMode(false);
    this.key = null;
    this.quick.close(false);
    $("compose-text").value = this.store.drafts.get(phone) ?? "";
    $("compose-error").textContent = "";
    $("compose-error").dataset.kind = "";
    this.picture.render();
  }

  focus() {
    $("compose-text").focus({ preventScroll: true });
  }

  /** Signed out or at another desk: no picture or picker of the last desk stays behind. */
  reset() {
    this.quick.close(false);
    this.picture.reset();
  }

  update() {
    if (this.noteMode) {
      this.updateNote();
      return;
    }
    const box = $("compose-text");
    const blocked = !!this.blocked;
    box.disabled = blocked;
    $("compose-later").disabled = blocked;
    $("compose-attach").disabled = blocked;
    $("compose-quick").disabled = blocked;
    box.placeholder = blocked ? `${this.blocked}. You can still add an internal note.` : SMS_PLACEHOLDER;
    box.setAttribute("aria-describedby", blocked ? "optout-banner compose-counter compose-error" : "compose-counter compose-error");
    const text = box.value;
    const c = countSegments(text);
    const picture = this.picture.mediaIds.length > 0;
    const counter = $("compose-counter");
    counter.textContent = picture ? `${describeSegments(text)} · 1 picture (MMS)` : describeSegments(text);
    counter.classList.toggle("over", c.tooLong);
    const later = this.sendAt();
    const empty = text.trim() === "" && !picture;
    $("compose-send").disabled =
      blocked || this.sending || c.tooLong || empty || this.picture.uploading || later === undefined;
    if (!this.sending) $("compose-send").textContent = later ? "Schedule" : "Send";
    showLimit($("compose-error"), text);
    $("compose-text").setAttribute("aria-invalid", c.tooLong ? "true" : "false");
  }

  updateNote() {
    $("compose-text").disabled = false;
    $("compose-later").disabled = false;
    $("compose-quick").disabled = false;
    const text = $("compose-text").value;
    const n = [...text].length;
    const over = n > MAX_NOTE;
    const counter = $("compose-counter");
    counter.textContent = `${n} / ${MAX_NOTE} characters · internal note`;
    counter.classList.toggle("over", over);
    const err = $("compose-error");
    if (over) {
      err.textContent = `Too long: ${n} characters. A note is at most ${MAX_NOTE}.`;
      err.dataset.kind = "limit";
    } else if (err.dataset.kind === "limit") {
      err.textContent = "";
      err.dataset.kind = "";
    }
    $("compose-send").disabled = this.sending || over || text.trim() === "";
    if (!this.sending) $("compose-send").textContent = "Add note";
    $("compose-text").setAttribute("aria-invalid", over ? "true" : "false");
  }

  /** Store the note in the thread; the desk's other browsers get it live. */
  async addNote() {
    const store = this.store;
    const phone = store.current;
    const box = $("compose-text");
    const text = box.value;
    if (!phone || this.sending || text.trim() === "" || [...text].length > MAX_NOTE) return;
    this.sending = true;
    const err = $("compose-error");
    err.textContent = "";
    err.dataset.kind = "";
    this.update();
    $("compose-send").textContent = "Adding…";
    try {
      const note = await this.api.addNote(phone, text);
      const merged = store.addMessage(phone, { ...note, displayBody: note.body });
      store.touchConversation(phone, merged, false);
      this.onSent(phone, note.sid);
      if (box.value === text && store.current === phone) box.value = "";
      store.drafts.delete(phone);
    } catch (e) {
      // The server's own words fit a note's refusals (too long, not this desk's) better than a text's.
      const ours = e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 401;
      err.textContent = ours ? firstSentence(e.message) : explainApiError(e);
      err.dataset.kind = "api";
    } finally {
      this.sending = false;
      this.update();
    }
  }

  async send() {
    if (this.noteMode) {
      await this.addNote();
      return;
    }
    const store = this.store;
    const phone = store.current;
    const box = $("compose-text");
    const text = box.value;
    const c = countSegments(text);
    const sendAt = this.sendAt();
    const mediaIds = this.picture.mediaIds;
    const media = this.picture.media;
    const empty = text.trim() === "" && !mediaIds.length;
    if (!phone || this.blocked || this.sending || c.tooLong || empty || this.picture.uploading || sendAt === undefined) return;
    const body = text.trim() === "" ? "" : text; // a picture may go without a caption
    this.sending = true;
    this.key = this.key ?? uuid();
    const err = $("compose-error");
    err.textContent = "";
    err.dataset.kind = "";
    this.update();
    const button = $("compose-send");
    button.textContent = "Sending…";
    try {
      const res = await sendOrTakeOver(
        (takeOver) => {
          if (takeOver) this.key = uuid(); // the refused attempt sent nothing
          button.textContent = "Sending…";
          return this.api.sendSms({ to: phone, body, mediaIds, takeOver, sendAt }, this.key);
        },
        { promptId: "compose-takeover", deskName: store.session?.desk?.name, returnFocus: box },
      ).finally(() => { button.textContent = "Send"; });
      if (res === null) {
        this.key = null;
        err.textContent = NOT_TAKEN;
        err.dataset.kind = "api";
        return;
      }
      this.key = null;
      if (sendAt) {
        this.onScheduled(res);
        if (store.current === phone) this.toggleLater(false);
      } else {
        this.onSent(recordSent(store, phone, res, body, media), res.sid);
      }
      this.picture.clear(phone);
      if (box.value === text && store.current === phone) box.value = "";
      store.drafts.delete(phone);
    } catch (e) {
      err.textContent = explainApiError(e);
      err.dataset.kind = "api";
      if (!(e instanceof ApiError) || e.status === 0 || e.status >= 500) {
        /* keep the key: a retry of the same text must not send twice */
      } else {
        this.key = null;
      }
    } finally {
      this.sending = false;
      this.update();
    }
  }
}

/** A time as a datetime-local input shows it, in this computer's time zone. */
export function localInputValue(t, seconds = true) {
  const pad = (n) => String(n).padStart(2, "0");
  const base = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
  return seconds ? `${base}:${pad(t.getSeconds())}` : base;
}

function defaultCountry() {
  const saved = localStorage.getItem(KEY_COUNTRY);
  if (saved && COUNTRIES.some((c) => c.code === saved)) return saved;
  const region = (navigator.language ?? "").split("-")[1]?.toUpperCase();
  return COUNTRIES.some((c) => c.code === region) ? region : "US";
}

function phoneCheck() {
  return normalizePhone($("new-phone").value, $("new-country").value);
}

function reminderText() {
  const d = $("new-date").value;
  const t = $("new-time").value;
  if (!d || !t) return null;
  const [y, m, day] = d.split("-").map(Number);
  const [hh, mm] = t.split(":").map(Number);
  const when = new Date(y, m - 1, day, hh, mm);
  const date = when.toLocaleDateString("en-US", { weekday: "long", month: "long", day: "numeric" });
  const time = when.toLocaleTimeString("en-US", { hour: "numeric", minute: "2-digit" });
  return `Your appointment is on ${date} at ${time}. Reply C to confirm.`;
}

/** The "New message" dialog: a number, an optional appointment reminder, and the text. */
export class NewMessageForm {
  /** onSent(phone, sid) runs right after a sent message is recorded; onOpen(phone) opens its conversation. */
  constructor({ api, store, book, onSent, onOpen }) {
    this.api = api;
    this.store = store;
    this.book = book;
    this.onSent = onSent;
    this.onOpen = onOpen;
    this.nameFor = null; // the number whose book entry fills the name fields
    this.nameTouched = false;
    this.key = null; // idempotency key, kept across retries of the same text
    this.sending = false;
    this.phoneTouched = false;
    this.lastTemplate = null;

    const sel = $("new-country");
    for (const c of COUNTRIES) {
      const opt = document.createElement("option");
      opt.value = c.code;
      opt.textContent = c.label;
      sel.append(opt);
    }
    sel.value = defaultCountry();
    sel.addEventListener("change", () => {
      localStorage.setItem(KEY_COUNTRY, sel.value);
      this.update();
    });
    $("new-phone").addEventListener("input", () => { this.key = null; this.update(); this.fillContact(); });
    for (const id of ["new-name", "new-note"]) {
      $(id).addEventListener("input", () => { this.nameTouched = true; this.update(); });
    }
    $("new-phone").addEventListener("blur", () => {
      if ($("new-phone").value.trim()) this.phoneTouched = true;
      this.update();
    });
    $("new-text").addEventListener("input", () => {
      this.key = null;
      if ($("new-error").dataset.kind === "api") $("new-error").textContent = "";
      this.update();
    });
    $("new-date").addEventListener("change", () => this.fillTemplate(false));
    $("new-time").addEventListener("change", () => this.fillTemplate(false));
    $("new-template").addEventListener("click", () => this.fillTemplate(true));
    $("new-cancel").addEventListener("click", () => $("new-dialog").close());
    $("new-dialog").addEventListener("close", () => cancelTakeOver("new-takeover"));
    $("new-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.send();
    });
    $("new-text").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        this.send();
      }
    });
  }

  update() {
    const check = phoneCheck();
    const status = $("new-phone-status");
    const input = $("new-phone");
    if (check.ok) {
      status.textContent = `✓ Will text ${formatPhone(check.e164)}`;
      status.dataset.kind = "ok";
      input.setAttribute("aria-invalid", "false");
    } else if (check.empty && !this.phoneTouched) {
      status.textContent = "";
      status.dataset.kind = "";
      input.setAttribute("aria-invalid", "false");
    } else {
      status.textContent = check.error;
      status.dataset.kind = "error";
      input.setAttribute("aria-invalid", "true");
    }
    const text = $("new-text").value;
    const c = countSegments(text);
    $("new-counter").textContent = describeSegments(text);
    $("new-counter").classList.toggle("over", c.tooLong);
    showLimit($("new-error"), text);
    $("new-send").disabled = this.sending || !check.ok || c.tooLong || text.trim() === "";
  }

  /** A valid number that is in the address book fills in its name and note (unless typed already). */
  async fillContact() {
    const check = phoneCheck();
    if (!check.ok || check.e164 === this.nameFor) return;
    this.nameFor = check.e164;
    const phone = check.e164;
    const found = await this.book.ensure(phone);
    if (phoneCheck().e164 !== phone) return;
    const status = $("new-name-status");
    status.textContent = found ? "In the address book." : "";
    if (!this.nameTouched) {
      $("new-name").value = found?.name ?? "";
      $("new-note").value = found?.note ?? "";
    }
  }

  /** Save the name and note typed for this number, if they differ from the book's. */
  async saveContact(phone) {
    const name = $("new-name").value.trim();
    const note = $("new-note").value.trim();
    const known = await this.book.ensure(phone);
    if ((known?.name ?? "") === name && (known?.note ?? "") === note) return;
    if (name === "" && !known) return;
    await this.book.save(phone, name, note);
  }

  fillTemplate(force) {
    const text = reminderText();
    const box = $("new-text");
    if (!text) {
      if (force) {
        $("new-error").textContent = "Pick the appointment date and time first.";
        $("new-error").dataset.kind = "template";
        ($("new-date").value ? $("new-time") : $("new-date")).focus();
      }
      return;
    }
    if (force || box.value === "" || box.value === this.lastTemplate) {
      box.value = text;
      this.lastTemplate = text;
      if ($("new-error").dataset.kind === "template") $("new-error").textContent = "";
    }
    this.update();
  }

  open() {
    const dlg = $("new-dialog");
    this.nameFor = null;
    this.nameTouched = false;
    $("new-name-status").textContent = "";
    this.fillContact();
    $("new-error").textContent = "";
    $("new-error").dataset.kind = "";
    this.phoneTouched = false;
    this.update();
    dlg.showModal();
    $("new-phone").focus();
  }

  async send() {
    const check = phoneCheck();
    this.phoneTouched = true;
    const text = $("new-text").value;
    const c = countSegments(text);
    this.update();
    if (!check.ok) {
      $("new-phone").focus();
      return;
    }
    if (c.tooLong || text.trim() === "" || this.sending) return;
    this.sending = true;
    this.key = this.key ?? uuid();
    $("new-error").textContent = "";
    $("new-error").dataset.kind = "";
    const button = $("new-send");
    button.textContent = "Sending…";
    this.update();
    try {
      await this.saveContact(check.e164);
      const confirm = $("new-confirm").checked;
      const res = await sendOrTakeOver(
        (takeOver) => {
          if (takeOver) this.key = uuid(); // the refused attempt sent nothing
          button.textContent = "Sending…";
          return this.api.sendSms({ to: check.e164, body: text, confirm, takeOver }, this.key);
        },
        { promptId: "new-takeover", deskName: this.store.session?.desk?.name, returnFocus: $("new-text") },
      ).finally(() => { button.textContent = "Send"; });
      if (res === null) {
        this.key = null;
        $("new-error").textContent = NOT_TAKEN;
        $("new-error").dataset.kind = "api";
        return;
      }
      this.key = null;
      const sent = { ...res, to: res.to ?? check.e164, reminder: $("new-confirm").checked ? "sent" : null };
      this.onSent(recordSent(this.store, check.e164, sent, text), sent.sid);
      $("new-form").reset();
      $("new-country").value = defaultCountry();
      this.nameFor = null;
      this.nameTouched = false;
      this.lastTemplate = null;
      $("new-dialog").close();
      this.onOpen(sent.to);
    } catch (e) {
      $("new-error").textContent = explainApiError(e);
      $("new-error").dataset.kind = "api";
      if (e instanceof ApiError && e.status > 0 && e.status < 500) this.key = null;
    } finally {
      this.sending = false;
      $("new-send").textContent = "Send";
      this.update();
    }
  }
}

// The length warning shares its box with API errors: clear it only if it is the one showing.
function showLimit(err, text) {
  const limit = describeLimit(text);
  if (limit) {
    err.textContent = limit;
    err.dataset.kind = "limit";
  } else if (err.dataset.kind === "limit") {
    err.textContent = "";
    err.dataset.kind = "";
  }
}
