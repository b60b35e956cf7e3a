// The clinic's address book as this desk sees it: names for numbers (learnt from
// the lists, the threads and live contact events, else looked up once), and the
// inline editor of a patient's name and note in the conversation header.
// Names are untrusted text: they only ever go into textContent.
import { explainApiError } from "./api.js";
import { formatPhone } from "./phone.js";
import { $ } from "./render.js";

export const MAX_NAME = 80;
export const MAX_CONTACT_NOTE = 500;

/** The name a person reads for a number: the contact's, else the number itself. */
export function displayName(store, phone) {
  return store.nameOf(phone) ?? formatPhone(phone);
}

export class ContactBook {
  constructor({ api, store }) {
    this.api = api;
    this.store = store;
    this.lookups = new Map(); // phone -> Promise of the lookup in flight
  }

  /** Ask the book about a number once (the search matches digits; keep the exact number). */
  ensure(phone) {
    if (!phone || this.store.contacts.has(phone)) return Promise.resolve(this.store.contacts.get(phone) ?? null);
    return this.lookup(phone);
  }

  lookup(phone) {
    let p = this.lookups.get(phone);
    if (!p) {
      p = this.api
        .contacts(phone.replace(/\D/g, ""))
        .then((res) => {
          const found = (res?.contacts ?? []).find((c) => c.phone === phone) ?? null;
          this.store.learnContact(phone, found);
          return found;
        })
        .catch(() => null)
        .finally(() => this.lookups.delete(phone));
      this.lookups.set(phone, p);
    }
    return p;
  }

  /** Save a name and note (an empty name removes the contact); returns the contact or null. */
  async save(phone, name, note) {
    const cleanName = name.trim();
    if (cleanName === "") {
      if (this.store.nameOf(phone) != null) {
        try {
          await this.api.deleteContact(phone);
        } catch (err) {
          if (err.code !== "contact_not_found") throw err;
        }
      }
      this.store.learnContact(phone, null);
      return null;
    }
    const saved = await this.api.putContact(phone, { name: cleanName, note: note.trim() || null });
    this.store.learnContact(phone, saved);
    return saved;
  }

  /** A live `contact` event: one number changed, or a whole file was imported ("*"). */
  onEvent(p) {
    if (!p || typeof p.phone !== "string") return;
    if (p.phone !== "*") {
      this.store.learnContact(p.phone, p.contact ?? null);
      return;
    }
    const known = [...this.store.contacts.keys()];
    this.store.contacts.clear();
    for (const phone of known) this.lookup(phone);
    this.store.onContact("*");
  }
}

/** The name and note of the open conversation's patient, edited in place in its header. */
export class ContactEditor {
  constructor({ store, book }) {
    this.store = store;
    this.book = book;
    this.phone = null;
    this.saving = false;

    $("contact-edit-btn").addEventListener("click", () => this.edit());
    $("contact-cancel").addEventListener("click", () => this.stop(true));
    $("contact-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    $("contact-form").addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        ev.stopPropagation();
        this.stop(true);
      }
    });
    for (const id of ["contact-name", "contact-note"]) $(id).addEventListener("input", () => this.check());
  }

  /** Show the header of a conversation (again): its name, number and note. */
  show(phone) {
    if (phone !== this.phone) this.stop(false);
    this.phone = phone;
    const name = this.store.nameOf(phone);
    const contact = this.store.contacts.get(phone);
    $("conv-title").textContent = name ?? formatPhone(phone);
    $("conv-number").textContent = name ? formatPhone(phone) : "";
    $("conv-number").hidden = !name;
    const note = contact?.note ?? "";
    $("conv-note").textContent = note;
    $("conv-note").hidden = !note;
    const btn = $("contact-edit-btn");
    btn.textContent = name ? "Edit name" : "Add name";
    btn.setAttribute("aria-label", name ? `Edit name and note of ${formatPhone(phone)}` : `Add name for ${formatPhone(phone)}`);
    if (!this.store.contacts.has(phone)) this.book.ensure(phone);
  }

  async edit() {
    const phone = this.phone;
    if (!phone) return;
    await this.book.ensure(phone);
    if (this.phone !== phone) return;
    const contact = this.store.contacts.get(phone);
    $("contact-name").value = contact?.name ?? "";
    $("contact-note").value = contact?.note ?? "";
    $("contact-error").textContent = "";
    $("contact-form").hidden = false;
    $("contact-edit-btn").hidden = true;
    $("contact-name").focus();
    this.check();
  }

  check() {
    const name = $("contact-name").value.trim();
    const note = $("contact-note").value.trim();
    let problem = "";
    if ([...name].length > MAX_NAME) problem = `The name is ${[...name].length} characters; ${MAX_NAME} at most.`;
    else if ([...note].length > MAX_CONTACT_NOTE) problem = `The note is too long (${MAX_CONTACT_NOTE} characters at most).`;
    $("contact-error").textContent = problem;
    $("contact-name").setAttribute("aria-invalid", problem.startsWith("The name") ? "true" : "false");
    $("contact-save").disabled = this.saving || problem !== "";
    return problem === "";
  }

  async submit() {
    const phone = this.phone;
    if (!phone || this.saving || !this.check()) return;
    this.saving = true;
    $("contact-save").disabled = true;
    try {
      await this.book.save(phone, $("contact-name").value, $("contact-note").value);
      this.stop(true);
    } catch (err) {
      $("contact-error").textContent = explainApiError(err);
      $("contact-name").focus();
    } finally {
      this.saving = false;
      this.check();
    }
  }

  stop(refocus) {
    const wasOpen = !$("contact-form").hidden;
    $("contact-form").hidden = true;
    $("contact-edit-btn").hidden = false;
    if (this.phone) this.show(this.phone);
    if (wasOpen && refocus) $("contact-edit-btn").focus();
  }
}
