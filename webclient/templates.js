// The desk's saved texts: loaded with the desk, kept up to date by live
// `template` events, offered in the New message dialog and the Reminders view
// (and as quick replies in the compose box: quickreplies.js). Names and bodies
// are untrusted text (textContent only).
import { dayText, renderTemplate } from "./reminders.js";
import { $, el } from "./render.js";

export class SavedTemplates {
  constructor({ api, store }) {
    this.api = api;
    this.store = store;
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
    const pick = $("new-template-pick");
    pick.replaceChildren(
      el("option", { value: "", text: "Saved texts…" }),
      ...saved.map((t) => el("option", { value: t.id, text: t.name })),
    );
    pick.hidden = saved.length === 0;
  }

  /** In the New message dialog: the name, date and time typed there fill the placeholders they have. */
  insertNew() {
    const pick = $("new-template-pick");
    const t = this.store.templates.get(pick.value);
    pick.value = "";
    if (!t) return;
    const values = { desk: this.store.session?.desk?.name ?? "" };
    if (this.store.session?.clinic) values.clinic = this.store.session.clinic;
    const name = $("new-name").value.trim();
    if (name) values.name = name;
    if ($("new-date").value) values.date = dayText($("new-date").value);
    if ($("new-time").value) values.time = $("new-time").value;
    const box = $("new-text");
    box.value = renderTemplate(t.body, values);
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }
}
