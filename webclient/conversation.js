// The conversation pane: the open conversation's messages and whose they are,
// paging back through its history, loading it again when it comes to this
// desk, marking it done or open, read receipts to the server, and images
// fetched as blob URLs.
import { explainApiError } from "./api.js";
import { displayName } from "./contacts.js";
import { $, MessageView } from "./render.js";
import { ts } from "./state.js";

const PAGE = 30;

/** The time of a page's oldest message (ms), or null for an empty page. */
const oldestOf = (page) => (page.length ? Math.min(...page.map((m) => ts(m.at))) : null);

/** A reminder's id: a scheduled one keeps its item's id, any other is its message's sid. */
const reminderIdOf = (msg) => msg.reminderInfo?.id ?? msg.reminderId ?? msg.sid;

export class ConversationPane {
  /** lists: the sidebar (re-rendered on open); composer: the compose box under the pane. */
  /** contactEditor: the name and note in the header; scheduled: the messages waiting to go, under the thread. */
  constructor({ api, store, lists, composer, contactEditor, scheduled }) {
    this.api = api;
    this.scheduled = scheduled;
    this.contactEditor = contactEditor;
    this.store = store;
    this.lists = lists;
    this.composer = composer;
    this.view = new MessageView($("message-list"), {
      loadMedia: (url) => this.loadMedia(url),
      onSetState: (msg, state, note) => this.setReminderState(msg, state, note),
      loadReminder: (msg) => this.loadReminder(msg),
    });
    /** Staff opened a conversation (phone) or went back to the list (null); the address follows. */
    this.onNavigate = () => {};
    this.mediaCache = new Map(); // url -> Promise<blob URL>
    this.readTimers = new Map(); // phone -> debounce timer for the server's read mark

    $("back-btn").addEventListener("click", () => this.close());
    $("done-btn").addEventListener("click", () => this.toggleDone());
    const s = this.scroller();
    s.addEventListener("scroll", () => {
      if (s.scrollTop < 60) this.loadOlder();
    }, { passive: true });
  }

  loadMedia(url) {
    let p = this.mediaCache.get(url);
    if (!p) {
      p = this.api.media(url).then((blob) => URL.createObjectURL(blob));
      p.catch(() => this.mediaCache.delete(url));
      this.mediaCache.set(url, p);
    }
    return p;
  }

  /** Staff set a reminder's state by hand, with an optional note; the error comes back in words. */
  async setReminderState(msg, state, note) {
    try {
      const res = await this.api.setReminderState(reminderIdOf(msg), state, note);
      this.store.applyReminder(msg.sid, res.state, res);
    } catch (err) {
      err.userText = explainApiError(err);
      throw err;
    }
  }

  /** A reminder shown from history: fetch its note and who set it (quietly; nothing to show is fine). */
  loadReminder(msg) {
    this.api
      .request("GET", `/reminders/${encodeURIComponent(reminderIdOf(msg))}`)
      .then((res) => { if (res?.state) this.store.applyReminder(msg.sid, res.state, res); })
      .catch(() => {});
  }

  scroller() {
    return $("message-scroller");
  }

  nearBottom() {
    const s = this.scroller();
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    const s = this.scroller();
    s.scrollTop = s.scrollHeight;
  }

  /** Add or update a message of the open conversation, following it down if we were at the bottom. */
  showMessage(msg) {
    const wasNew = !this.view.nodes.has(msg.sid);
    const stick = this.nearBottom();
    this.view.upsert(msg);
    if (wasNew && (stick || msg.direction === "outbound")) this.scrollToBottom();
  }

  /** Refresh a message's status or reminder line if it is on screen. */
  updateMessage(msg) {
    if (this.view.nodes.has(msg.sid)) this.view.upsert(msg);
  }

  /** After sending: keep the new message in view if its conversation is open. */
  revealSent(phone, sid) {
    if (this.store.current === phone && this.view.nodes.has(sid)) this.scrollToBottom();
  }

  /** Is the desk looking at this conversation right now? */
  isViewing(phone) {
    return this.store.current === phone && !document.hidden && $("layout").dataset.view === "conversation";
  }

  /** quiet: loading it again in place (keep the focus where it is); fromLink: the address asked for it. */
  async open(phone, { quiet = false, fromLink = false } = {}) {
    const store = this.store;
    if (!quiet && !fromLink) this.onNavigate(phone);
    if (store.current !== phone) {
      this.composer.saveDraft();
      store.current = phone;
      this.view.clear();
      this.composer.load(phone);
    }
    $("pane-empty").hidden = true;
    $("conversation").hidden = false;
    if (!quiet) $("layout").dataset.view = "conversation";
    $("conversation").dataset.phone = phone;
    this.contactEditor.show(phone);
    this.scheduled.render();
    this.showOwner();
    this.showOptOut();
    this.lists.render();

    const t = store.thread(phone);
    if (!t.loaded && !t.loading) {
      t.loading = true;
      this.setHistoryStatus("Loading messages…");
      try {
        const res = await this.api.messages(phone, { limit: PAGE });
        for (const m of res?.messages ?? []) store.addMessage(phone, m);
        const first = res?.messages?.[0];
        if (first && "contact" in first) store.learnContact(phone, first.contact);
        if (res && "optedOut" in res) store.setOptedOut(phone, res.optedOut);
        if (res && "owner" in res) {
          const latest = (res.messages ?? []).reduce((a, m) => (ts(m.at) > ts(a) ? m.at : a), null);
          store.setOwner(phone, res.owner, latest);
        }
        t.next = res?.next ?? null;
        t.floor = t.next ? oldestOf(res.messages ?? []) : null;
        if (t.next) this.dropOlderThanPage(t, res.messages ?? []);
        t.loaded = true;
      } catch (err) {
        this.setHistoryStatus(explainApiError(err));
        t.loading = false;
        return;
      }
      t.loading = false;
      if (t.stale) {
        // It changed desk while the first page was on its way: that page may lack the earlier history.
        t.stale = false;
        t.loaded = false;
        return this.open(phone, { quiet });
      }
    }
    if (store.current !== phone) return;
    this.showOwner();
    const msgs = [...t.sids].map((sid) => store.bySid.get(sid)).filter(Boolean).sort((a, b) => ts(a.at) - ts(b.at));
    for (const m of msgs) this.view.upsert(m);
    this.updateHistoryStatus();
    this.scrollToBottom();
    if (!quiet || this.isViewing(phone)) this.markRead(phone);
    if (!quiet) {
      if (window.matchMedia("(min-width: 701px)").matches) this.composer.focus();
      else $("conv-title").focus({ preventScroll: true });
    }
    // A short first page might not fill the pane: load more so scrolling works.
    const s = this.scroller();
    if (t.next && s.scrollHeight <= s.clientHeight) this.loadOlder();
  }

  /** The conversation came to this desk: load it again, now with the history from before. */
  reloadThread(phone) {
    const t = this.store.threads.get(phone);
    if (!t) return;
    if (t.loading) {
      t.stale = true;
      return;
    }
    if (!t.loaded) return;
    t.loaded = false;
    t.next = null;
    t.floor = null;
    if (this.store.current === phone) this.open(phone, { quiet: true });
  }

  /** The header says whose conversation it is when it is not this desk's; only the owner may transfer it. */
  showOwner() {
    const phone = this.store.current;
    const info = phone ? this.store.owners.get(phone) : null;
    const badge = $("conv-owner");
    const elsewhere = info && !info.yours && info.owner;
    badge.textContent = elsewhere ? `With ${info.owner.name}` : "";
    badge.hidden = !elsewhere;
    $("transfer-btn").hidden = !(info && info.yours);
    this.showDone();
  }

  /** After STOP: the banner says why, and the composer takes no texts (notes still go) until START. */
  showOptOut() {
    const phone = this.store.current;
    const out = !!phone && this.store.optedOut.get(phone) === true;
    $("optout-banner").hidden = !out;
    this.composer.setBlocked(out ? $("optout-banner").textContent : null);
  }

  /** Done (or Reopen) for a conversation on this desk's list. */
  showDone() {
    const conv = this.store.current ? this.store.convs.get(this.store.current) : null;
    const btn = $("done-btn");
    btn.hidden = !conv;
    btn.textContent = conv?.done ? "Reopen" : "Done";
    btn.setAttribute("aria-label", conv?.done ? "Reopen this conversation" : "Mark this conversation done");
  }

  async toggleDone() {
    const store = this.store;
    const phone = store.current;
    const conv = phone ? store.convs.get(phone) : null;
    if (!conv) return;
    const btn = $("done-btn");
    btn.disabled = true;
    try {
      const res = await this.api.setDone(phone, !conv.done);
      store.setDone(phone, res.done);
      this.lists.showNotice(res.done
        ? `${displayName(store, phone)} is done. A reply from them opens it again.`
        : `${displayName(store, phone)} is open again.`);
    } catch (err) {
      this.lists.showNotice(explainApiError(err));
    } finally {
      btn.disabled = false;
      this.showDone();
    }
  }

  close() {
    this.composer.saveDraft();
    this.onNavigate(null);
    $("layout").dataset.view = "list";
    const phone = this.store.current;
    if (!phone) {
      $("conversation").hidden = true;
      $("pane-empty").hidden = false;
      return;
    }
    // On a narrow screen "back" just shows the list; the pane keeps its state.
    const item = $("conv-list").querySelector(`[data-phone="${CSS.escape(phone)}"] button`);
    item?.focus();
  }

  /** Back to the list with no conversation open (Back past the first conversation, or a link for another desk). */
  showList() {
    this.composer.saveDraft();
    this.store.current = null;
    this.view.clear();
    $("layout").dataset.view = "list";
    $("conversation").hidden = true;
    delete $("conversation").dataset.phone;
    $("pane-empty").hidden = false;
    $("optout-banner").hidden = true;
    this.lists.render();
  }

  /** Drop the shown messages and the fetched images (the store was cleared). */
  reset() {
    for (const p of this.mediaCache.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => {});
    this.mediaCache.clear();
    this.view.clear();
  }

  setHistoryStatus(text) {
    const box = $("history-status");
    box.replaceChildren(text);
  }

  updateHistoryStatus() {
    const store = this.store;
    const t = store.current ? store.threads.get(store.current) : null;
    const box = $("history-status");
    if (!t || !t.loaded) return;
    if (t.loading) {
      box.replaceChildren("Loading older messages…");
    } else if (t.next) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "link";
      btn.textContent = "Load older messages";
      btn.addEventListener("click", () => this.loadOlder());
      box.replaceChildren(btn);
    } else {
      box.replaceChildren(t.sids.size ? "Beginning of the conversation" : "No messages yet");
    }
  }

  /** Catch-up may replay messages while the first page loads: those older than the page come back by paging, in order. */
  dropOlderThanPage(t, page) {
    if (!page.length) return;
    const oldest = Math.min(...page.map((m) => ts(m.at)));
    for (const sid of [...t.sids]) {
      if (ts(this.store.bySid.get(sid)?.at) < oldest) t.sids.delete(sid);
    }
  }

  async loadOlder() {
    const store = this.store;
    const phone = store.current;
    const t = phone ? store.threads.get(phone) : null;
    if (!t || !t.next || t.loading) return;
    t.loading = true;
    this.updateHistoryStatus();
    const s = this.scroller();
    try {
      const res = await this.api.messages(phone, { before: t.next, limit: PAGE });
      if (store.current !== phone) return;
      const before = s.scrollHeight - s.scrollTop;
      t.floor = res?.next ? oldestOf(res.messages ?? []) : null;
      for (const m of res?.messages ?? []) store.addMessage(phone, m);
      s.scrollTop = s.scrollHeight - before;
      t.next = res?.next ?? null;
    } catch (err) {
      this.setHistoryStatus(explainApiError(err));
      t.loading = false;
      return;
    } finally {
      t.loading = false;
    }
    this.updateHistoryStatus();
  }

  /** Zero the unread count here and (debounced) on the server. */
  markRead(phone) {
    if (!this.store.markRead(phone)) return;
    clearTimeout(this.readTimers.get(phone));
    this.readTimers.set(phone, setTimeout(() => {
      this.readTimers.delete(phone);
      this.api.markRead(phone).catch(() => {});
    }, 250));
  }

  /** The tab came back: the open conversation has now been seen. */
  markOpenRead() {
    const phone = this.store.current;
    if (phone && $("layout").dataset.view === "conversation") this.markRead(phone);
  }
}
