// The desk's saved texts: loaded with the desk, kept up to date by live
// `template` events, offered in the compose box ("Insert a saved template") and
// in the New message dialog and in the Reminders view. Names and bodies are
// untrusted text (textContent only).
import { dayText, renderTemplate } from "./reminders.js";
import { $, el } from "./render.js";

export class SavedTemplates {
  constructor({ api, store }) {
    this.api = api;
    this.store = store;
    $("compose-template").addEventListener("change", () => this.insert());
    $("new-template-pick").addEventListener("change", () => this.insertNew());
  }

  async load() {
    const desk = this.store.session?.webAppId;
    const res = await this.api.templates();
    if (this.store.session?.webAppId !== desk) return;
    this.store.templates.clear();
    for (const t of res?.templates ?? []) this.store.templates.set(t.id, t);
    this.store.onTemplates();
  }

  /** A live `template` event: one saved text changed or went. */
  onEvent(p) {
    if (!p || typeof p.id !== "string") return;
    if (p.template) this.store.templates.set(p.id, p.template);
    else this.store.templates.delete(p.id);
    this.store.onTemplates();
  }

  render() {
    const saved = [...this.store.templates.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const id of ["compose-template", "new-template-pick"]) {
      const pick = $(id);
      pick.replaceChildren(
        el("option", { value: "", text: "Saved texts…" }),
        ...saved.map((t) => el("option", { value: t.id, text: t.name })),
      );
      pick.hidden = saved.length === 0;
    }
  }

  /** In the New message dialog: the name, date and time typed there fill the placeholders they have. */
  insertNew() {
    const pick = $("new-template-pick");
    const t = this.store.templates.get(pick.value);
    pick.value = "";
    if (!t) return;
    const values = { desk: this.store.session?.desk?.name ?? "" };
    const name = $("new-name").value.trim();
    if (name) values.name = name;
    if ($("new-date").value) values.date = dayText($("new-date").value);
    if ($("new-time").value) values.time = $("new-time").value;
    const box = $("new-text");
    box.value = renderTemplate(t.body, values);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }

  /** The chosen text into the compose box, with the patient's name and the desk filled in. */
  insert() {
    const pick = $("compose-template");
    const t = this.store.templates.get(pick.value);
    pick.value = "";
    if (!t) return;
    const phone = this.store.current;
    const values = { desk: this.store.session?.desk?.name ?? "" };
    const name = phone ? this.store.nameOf(phone) : null;
    if (name) values.name = name;
    const box = $("compose-text");
    box.value = renderTemplate(t.body, values);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }
}
