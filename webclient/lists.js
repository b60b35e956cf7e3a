// The sidebar: this desk's conversations (open, done or all of them), the
// unrouted "new conversations" waiting to be claimed, and the notice line above them.
import { ApiError, explainApiError } from "./api.js";
import { updateTitle } from "./notifications.js";
import { $, renderConversations, renderUnrouted } from "./render.js";
import { ts } from "./state.js";

/** Which conversations each filter shows, and what the list says when there are none. */
const FILTERS = {
  open: { keep: (c) => !c.done, empty: "No open conversations. Start one with “New message”." },
  done: { keep: (c) => !!c.done, empty: "No conversations marked done." },
  all: { keep: () => true, empty: "No conversations yet. Start one with “New message”." },
};

export class ConversationLists {
  /** onOpen(phone) opens a conversation in the pane. */
  /** book: the address book, asked about numbers the lists show without a known name. */
  constructor({ api, store, book, onOpen }) {
    this.api = api;
    this.book = book;
    this.store = store;
    this.onOpen = onOpen;
    this.renderQueued = false;
    this.noticeTimer = null;
    this.refreshTimer = null;
    this.filter = "open";
    for (const btn of document.querySelectorAll("#list-filters [data-filter]")) {
      btn.addEventListener("click", () => this.setFilter(btn.dataset.filter));
    }
  }

  /** Open, Done or All. */
  setFilter(name) {
    if (!FILTERS[name]) return;
    this.filter = name;
    for (const btn of document.querySelectorAll("#list-filters [data-filter]")) {
      btn.setAttribute("aria-pressed", String(btn.dataset.filter === name));
    }
    this.render();
  }

  render() {
    const store = this.store;
    const filter = FILTERS[this.filter];
    const all = [...store.convs.values()].sort((a, b) => ts(b.lastAt) - ts(a.lastAt));
    const convs = all.filter(filter.keep);
    const nameOf = (phone) => store.nameOf(phone);
    renderConversations($("conv-list"), convs, { current: store.current, onOpen: this.onOpen, nameOf });
    $("conv-empty").textContent = filter.empty;
    $("conv-empty").hidden = convs.length > 0;
    const unrouted = [...store.unrouted.values()].sort((a, b) => ts(b.lastAt) - ts(a.lastAt));
    renderUnrouted($("unrouted-list"), unrouted, {
      onClaim: (phone) => this.claim(phone), busy: store.claiming, nameOf,
    });
    $("unrouted-section").hidden = unrouted.length === 0;
    for (const c of [...all, ...unrouted]) if (!store.contacts.has(c.phone)) this.book.ensure(c.phone);
    updateTitle(store);
  }

  /** Render once after the current burst of changes. */
  renderSoon() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    setTimeout(() => {
      this.renderQueued = false;
      this.render();
    }, 0);
  }

  /** Load the lists again shortly (once for a burst of changes of owner). */
  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      if (this.store.session) this.refresh().catch(() => {});
    }, 250);
  }

  showNotice(text) {
    const box = $("list-notice");
    box.textContent = text;
    box.hidden = !text;
    clearTimeout(this.noticeTimer);
    if (text) this.noticeTimer = setTimeout(() => { box.hidden = true; box.textContent = ""; }, 8000);
  }

  /** Load both lists from the server, keeping anything newer we already know. */
  async refresh() {
    const store = this.store;
    const desk = store.session?.webAppId;
    const [c, u] = await Promise.all([this.api.conversations(), this.api.unrouted()]);
    if (store.session?.webAppId !== desk) return; // switched desk meanwhile
    for (const item of [...(c?.conversations ?? []), ...(u?.conversations ?? [])]) {
      if ("contact" in item) store.learnContact(item.phone, item.contact);
      store.setOptedOut(item.phone, item.optedOut);
    }
    for (const item of c?.conversations ?? []) {
      const local = store.convs.get(item.phone);
      if (local && ts(local.lastAt) > ts(item.lastAt)) {
        local.unread = Math.max(local.unread, item.unread ?? 0);
      } else {
        store.convs.set(item.phone, {
          ...item, unread: item.unread ?? 0, lastAt: item.lastAt ?? item.lastMessage?.at, done: !!item.done,
        });
      }
    }
    store.unrouted.clear();
    for (const item of u?.conversations ?? []) {
      if (!store.convs.has(item.phone)) {
        store.unrouted.set(item.phone, { ...item, lastAt: item.lastAt ?? item.lastMessage?.at });
      }
    }
    this.render();
  }

  async claim(phone) {
    const store = this.store;
    if (store.claiming.has(phone)) return;
    store.claiming.add(phone);
    this.render();
    try {
      await this.api.claim(phone);
      store.claimed(phone, store.session.webAppId);
      store.claiming.delete(phone);
      this.render();
      this.onOpen(phone);
    } catch (err) {
      store.claiming.delete(phone);
      if (err instanceof ApiError && err.code === "already_claimed") store.unrouted.delete(phone);
      this.render();
      this.showNotice(explainApiError(err));
    }
  }
}
