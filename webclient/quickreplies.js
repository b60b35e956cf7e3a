// Quick replies: the desk's saved texts in a picker over the compose box
// (Ctrl+/ there, or the "Quick replies" button). Type to narrow, arrows to
// choose, Enter to insert, Escape to go back. The text goes in at the cursor
// with {name}, {desk} and {clinic} filled for this conversation; {date},
// {time}, and {name} for a number with no name, stay as they are, and the
// first of them is selected so staff type over it. Names and bodies are
// untrusted text (textContent only).
import { $, el } from "./render.js";

const PLACEHOLDER = /\{(name|date|time|desk|clinic)\}/g;

/** The body with the values given; `gap` is where the first placeholder left unfilled sits, or null. */
export function fillPlaceholders(body, values) {
  let text = "";
  let gap = null;
  let last = 0;
  for (const m of (body ?? "").matchAll(PLACEHOLDER)) {
    text += body.slice(last, m.index);
    const value = values[m[1]];
    if (value) {
      text += value;
    } else {
      if (!gap) gap = { start: text.length, end: text.length + m[0].length };
      text += m[0];
    }
    last = m.index + m[0].length;
  }
  return { text: text + (body ?? "").slice(last), gap };
}

export class QuickReplies {
  constructor({ store }) {
    this.store = store;
    this.shown = []; // the templates listed, in order
    this.active = 0;
    this.selection = null; // where the compose box's cursor was when the picker opened

    $("compose-quick").addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    $("compose-text").addEventListener("keydown", (ev) => {
      if (ev.key === "/" && (ev.ctrlKey || ev.metaKey) && !ev.altKey) {
        ev.preventDefault();
        this.open();
      }
    });
    const filter = $("quick-filter");
    filter.addEventListener("input", () => {
      this.active = 0;
      this.render();
    });
    filter.addEventListener("keydown", (ev) => this.key(ev));
    const list = $("quick-list");
    list.addEventListener("mousedown", (ev) => ev.preventDefault()); // keep the focus in the filter
    list.addEventListener("click", (ev) => {
      const option = ev.target instanceof Element ? ev.target.closest("[role=option]") : null;
      if (option) this.choose(Number(option.dataset.index));
    });
    $("quick-replies").addEventListener("focusout", (ev) => {
      if (this.isOpen && !$("quick-replies").contains(ev.relatedTarget) && ev.relatedTarget !== $("compose-quick")) {
        this.close(false);
      }
    });
  }

  get isOpen() {
    return !$("quick-replies").hidden;
  }

  /** The values this conversation fills: its contact's name, this desk, the clinic. */
  values() {
    const phone = this.store.current;
    return {
      name: (phone && this.store.nameOf(phone)) || "",
      desk: this.store.session?.desk?.name ?? "",
      clinic: this.store.session?.clinic ?? "",
    };
  }

  open() {
    const box = $("compose-text");
    if (box.disabled || !this.store.current) return;
    this.selection = { start: box.selectionStart, end: box.selectionEnd };
    $("quick-filter").value = "";
    this.active = 0;
    $("quick-replies").hidden = false;
    $("compose-quick").setAttribute("aria-expanded", "true");
    this.render();
    $("quick-filter").focus();
  }

  /** refocus: back to the compose box (Escape, a choice); not when the focus already went elsewhere. */
  close(refocus = true) {
    if (!this.isOpen) return;
    $("quick-replies").hidden = true;
    $("compose-quick").setAttribute("aria-expanded", "false");
    $("quick-filter").removeAttribute("aria-activedescendant");
    if (refocus) {
      const box = $("compose-text");
      box.focus({ preventScroll: true });
      if (this.selection) box.setSelectionRange(this.selection.start, this.selection.end);
    }
  }

  key(ev) {
    const n = this.shown.length;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (n) this.active = (this.active + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.render();
    } else if (ev.key === "Home" || ev.key === "End") {
      if (!n) return;
      ev.preventDefault();
      this.active = ev.key === "Home" ? 0 : n - 1;
      this.render();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      if (n) this.choose(this.active);
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      this.close();
    }
  }

  /** The saved texts whose name or body has what is typed in the filter; kept up to date while open. */
  render() {
    if (!this.isOpen) return;
    const q = $("quick-filter").value.trim().toLowerCase();
    const saved = [...this.store.templates.values()].sort((a, b) => a.name.localeCompare(b.name));
    this.shown = q ? saved.filter((t) => `${t.name}\n${t.body}`.toLowerCase().includes(q)) : saved;
    this.active = Math.min(this.active, Math.max(0, this.shown.length - 1));
    const values = this.values();
    const list = $("quick-list");
    list.replaceChildren(...this.shown.map((t, i) => el("li", {
      role: "option",
      id: `quick-option-${i}`,
      class: "quick-option",
      "aria-selected": String(i === this.active),
      dataset: { index: String(i) },
    }, el("span", { class: "quick-name", text: t.name }), el("span", { class: "quick-body", text: fillPlaceholders(t.body, values).text }))));
    list.hidden = this.shown.length === 0;
    const empty = $("quick-empty");
    empty.hidden = this.shown.length > 0;
    empty.textContent = saved.length
      ? "No saved text matches."
      : "No saved texts yet. Save one in Reminders (“Save this text as”).";
    const filter = $("quick-filter");
    if (this.shown.length) {
      filter.setAttribute("aria-activedescendant", `quick-option-${this.active}`);
      $(`quick-option-${this.active}`).scrollIntoView({ block: "nearest" });
    } else {
      filter.removeAttribute("aria-activedescendant");
    }
  }

  /** Put the chosen text in at the cursor, and select its first placeholder left to fill. */
  choose(index) {
    const t = this.shown[index];
    if (!t) return;
    const { text, gap } = fillPlaceholders(t.body, this.values());
    const box = $("compose-text");
    const { start, end } = this.selection ?? { start: box.value.length, end: box.value.length };
    box.setRangeText(text, start, end, "end");
    this.selection = gap
      ? { start: start + gap.start, end: start + gap.end }
      : { start: start + text.length, end: start + text.length };
    this.close();
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
}
