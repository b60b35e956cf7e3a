// The clinic's desks: the list with who is online (refreshed now and then),
// the "Switch desk" menu in the header that moves this browser to another
// desk, and the presence call that counts this browser as someone at its desk.
import { explainApiError } from "./api.js";
import { $, el } from "./render.js";

const EVERY_MS = 60_000;
const REFRESH_AFTER_MS = 1_000; // pointer and focus come together when the menu opens: one request

export const onlineText = (desk) => `${desk.online ?? 0} online`;
const aliasText = (desk) => `#${String(desk.alias ?? "").replace(/^#/, "")}`;

export class Desks {
  /** onSwitch(deskId) moves this browser to another desk (a promise); showNotice(text) tells of a failure. */
  constructor({ api, store, onSwitch, showNotice }) {
    this.api = api;
    this.store = store;
    this.onSwitch = onSwitch;
    this.showNotice = showNotice;
    this.list = [];
    this.loadedAt = 0;
    this.timer = null;
    this.loading = null;
    this.switching = null; // id of the desk being switched to

    const toggle = $("desk-picker");
    toggle.addEventListener("pointerdown", () => this.refreshIfOld());
    toggle.addEventListener("focus", () => this.refreshIfOld());
    toggle.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
    const box = $("desk-switch");
    box.addEventListener("keydown", (ev) => this.onKey(ev));
    box.addEventListener("focusout", () => {
      // Next turn: a refreshed list puts the focus back on the desk it was on.
      setTimeout(() => {
        if (this.isOpen() && !box.contains(document.activeElement)) this.close(false);
      }, 0);
    });
    document.addEventListener("pointerdown", (ev) => {
      if (this.isOpen() && !box.contains(ev.target)) this.close(false);
    });
  }

  /** Signed in: say we are here, and keep saying it (any visibility) while the page is open. */
  start() {
    this.stop();
    this.tick();
    this.timer = setInterval(() => this.tick(), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.list = [];
    this.loadedAt = 0;
    this.close(false);
    this.render();
  }

  async tick() {
    if (!this.store.session) return;
    await this.api.presence().catch(() => {});
    await this.refresh().catch(() => {});
  }

  refreshIfOld() {
    if (Date.now() - this.loadedAt > REFRESH_AFTER_MS) this.refresh().catch(() => {});
  }

  /** GET /api/desks; one request at a time. */
  refresh() {
    if (!this.loading) {
      const id = this.store.session?.webAppId;
      this.loading = this.api.desks()
        .then((res) => {
          if (this.store.session?.webAppId !== id) return this.list;
          this.list = Array.isArray(res?.desks) ? res.desks : [];
          this.loadedAt = Date.now();
          this.render();
          return this.list;
        })
        .finally(() => { this.loading = null; });
    }
    return this.loading;
  }

  /** The live desks other than this one (for a transfer). */
  others() {
    const mine = this.store.session?.webAppId;
    return this.list.filter((d) => d.id !== mine);
  }

  isOpen() {
    return !$("desk-menu").hidden;
  }

  open() {
    $("desk-menu").hidden = false;
    $("desk-picker").setAttribute("aria-expanded", "true");
    $("desk-menu-status").textContent = this.list.length ? "" : "Loading the desks…";
    this.render();
    this.items()[0]?.focus();
  }

  /** refocus: put the focus back on the toggle (Escape, a choice); not when it went elsewhere. */
  close(refocus = true) {
    if (!this.isOpen()) return;
    $("desk-menu").hidden = true;
    $("desk-picker").setAttribute("aria-expanded", "false");
    if (refocus) $("desk-picker").focus();
  }

  items() {
    return [...$("desk-list").querySelectorAll("button:not(:disabled)")];
  }

  /** Escape closes; the arrow keys, Home and End move between the desks. */
  onKey(ev) {
    if (!this.isOpen()) return;
    if (ev.key === "Escape") {
      ev.preventDefault();
      this.close();
      return;
    }
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    const next = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[ev.key];
    if (next === undefined || !items.length) return;
    ev.preventDefault();
    items[(next + items.length) % items.length].focus();
  }

  render() {
    const mine = this.store.session?.webAppId ?? "";
    const desks = this.list.length ? this.list : this.store.session?.desk ? [{ ...this.store.session.desk, online: null }] : [];
    const hadFocus = $("desk-list").contains(document.activeElement) ? document.activeElement.dataset.desk : null;
    $("desk-list").replaceChildren(
      ...desks.map((d) => {
        const here = d.id === mine;
        const online = d.online == null ? "" : onlineText(d);
        return el("li", {},
          el("button", {
            type: "button",
            class: "desk-item",
            dataset: { desk: d.id },
            "aria-current": here ? "true" : null,
            disabled: here || this.switching !== null,
            onclick: () => this.switchTo(d.id),
          },
          el("span", { class: "desk-item-name", text: `${d.name} · ${aliasText(d)}` }),
          el("span", { class: `desk-item-online${d.online ? " some" : ""}`, text: here ? `${online}${online ? " · " : ""}this desk` : online }),
          el("span", { class: "visually-hidden", text: this.switching === d.id ? ", switching…" : "" }),
          ),
        );
      }),
    );
    if (this.list.length) $("desk-menu-status").textContent = this.list.length < 2 ? "There is no other desk." : "";
    if (hadFocus) $("desk-list").querySelector(`[data-desk="${CSS.escape(hadFocus)}"]`)?.focus();
  }

  async switchTo(deskId) {
    if (this.switching !== null || !deskId) return;
    const target = this.list.find((d) => d.id === deskId);
    this.switching = deskId;
    $("desk-menu-status").textContent = target ? `Switching to ${target.name}…` : "Switching…";
    this.render();
    try {
      await this.onSwitch(deskId);
      $("desk-status").textContent = target ? `Now at ${target.name}.` : "";
      this.close(false);
      $("desk-picker").focus(); // the menu it was chosen in has gone with the old desk
    } catch (err) {
      this.close();
      this.showNotice(`Could not switch desk: ${explainApiError(err)}`);
    } finally {
      this.switching = null;
      this.render();
    }
  }
}
