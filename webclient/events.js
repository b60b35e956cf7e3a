// Live events: the MQTT connection and its status line, catching up over HTTP
// after every (re)connect, and what each event (inbound, outbound, status,
// claimed, reminder, owner, note, done, optout) does to the store. MQTT and catch-up share one path.
import { ApiError } from "./api.js";
import { Connection } from "./connection.js";
import { notify } from "./notifications.js";
import { displayName } from "./contacts.js";
import { $ } from "./render.js";
import { cursorKey } from "./session.js";
import { ts } from "./state.js";

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

export class LiveEvents {
  /** onAuthError() runs when the broker refuses our credentials. */
  /** book: the address book (contact events); onScheduled(item), onBatch(progress), onTemplate(change) and
   * onReminder(reminder): their live events; onSearchable(): a message or a name that search may find changed. */
  constructor({ api, store, lists, pane, book, onScheduled, onBatch, onTemplate, onReminder, onSearchable, onAuthError }) {
    this.api = api;
    this.onSearchable = onSearchable ?? (() => {});
    this.onReminder = onReminder ?? (() => {});
    this.book = book;
    this.onScheduled = onScheduled;
    this.onBatch = onBatch;
    this.onTemplate = onTemplate;
    this.store = store;
    this.lists = lists;
    this.pane = pane;
    this.onAuthError = onAuthError;
    this.conn = null;
    this.catchingUp = false;
    this.catchUpAgain = false;
  }

  start() {
    this.conn?.stop();
    const info = this.store.session?.mqtt;
    if (!info) return;
    this.conn = new Connection({
      onState: (state) => {
        const box = $("conn-state");
        box.dataset.state = state;
        $("conn-text").textContent = STATE_TEXT[state] ?? state;
      },
      onMessage: (topic, payload) => this.handle(topic, null, payload, true),
      onConnect: () => this.catchUp(),
      onAuthError: () => this.onAuthError(),
    });
    this.conn.start(info);
  }

  stop() {
    this.conn?.stop();
    this.conn = null;
  }

  /** The tab is visible again: check the connection now rather than at the next retry. */
  nudge() {
    this.conn?.nudge();
  }

  updateCredentials(mqtt) {
    this.conn?.updateCredentials(mqtt);
  }

  async catchUp() {
    const store = this.store;
    if (!store.session) return;
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return;
    }
    this.catchingUp = true;
    try {
      let pages = 0;
      do {
        this.catchUpAgain = false;
        const id = store.session.webAppId;
        let res;
        try {
          res = await this.api.events(store.cursor);
        } catch (err) {
          if (err instanceof ApiError && err.code === "invalid_cursor" && store.cursor != null) {
            store.cursor = null; // a cursor from another data set: start from the beginning
            localStorage.removeItem(cursorKey(id));
            this.catchUpAgain = true;
            continue;
          }
          throw err;
        }
        if (!store.session || store.session.webAppId !== id) return;
        const events = res?.events ?? [];
        for (const ev of events) this.handle(ev.topic, ev.kind, ev.payload);
        const moved = res?.cursor != null && String(res.cursor) !== store.cursor;
        if (moved) {
          store.cursor = String(res.cursor);
          localStorage.setItem(cursorKey(id), store.cursor);
        }
        // The feed is paged: keep going until a page comes back empty.
        if (events.length > 0 && moved) this.catchUpAgain = true;
      } while (this.catchUpAgain && ++pages < 100);
    } catch (err) {
      console.warn("catch-up failed", err);
      setTimeout(() => { if (this.conn?.state === "connected") this.catchUp(); }, 5000);
    } finally {
      this.catchingUp = false;
    }
  }

  handle(topic, kind, p, live = false) {
    const store = this.store;
    if (!p || typeof p !== "object" || !store.session) return;
    const parts = String(topic ?? "").split("/");
    const audience = parts.length >= 2 ? parts[parts.length - 2] : "";
    kind = kind ?? parts[parts.length - 1];
    const mine = store.session.webAppId;
    switch (kind) {
      case "inbound": {
        const msg = {
          sid: p.MessageSid,
          direction: "inbound",
          from: p.From,
          to: p.To,
          body: p.Body ?? "",
          displayBody: p.displayBody ?? p.Body ?? "",
          at: p.receivedAt ?? new Date().toISOString(),
          status: "received",
          errorCode: null,
          errorMessage: null,
          media: Array.isArray(p.media) ? p.media : [],
          reminder: null,
        };
        if (!msg.sid || !msg.from) return;
        if (audience === "unrouted" || p.webAppId === "unrouted") this.onUnroutedInbound(msg);
        else if (audience === mine || p.webAppId === mine) this.onInbound(msg, live);
        this.onSearchable();
        break;
      }
      case "outbound": {
        if (!p.MessageSid || !p.To) return;
        const msg = {
          sid: p.MessageSid,
          direction: "outbound",
          from: p.From,
          to: p.To,
          body: p.Body ?? "",
          displayBody: p.Body ?? "",
          at: p.sentAt ?? new Date().toISOString(),
          status: p.Status ?? "queued",
          errorCode: null,
          errorMessage: null,
          media: Array.isArray(p.media) ? p.media : [],
          reminder: p.reminder === "pending" ? "sent" : (p.reminder ?? null),
          reminderId: p.reminderId ?? null,
          automatic: p.automatic ?? null,
          sentBy: p.sentBy ?? null,
        };
        const conv = store.convs.get(msg.to);
        const isNew = !store.bySid.has(msg.sid);
        store.addMessage(msg.to, msg);
        if (isNew || !conv) store.touchConversation(msg.to, store.bySid.get(msg.sid), false);
        this.onSearchable();
        break;
      }
      case "status":
        store.applyStatus(p.MessageSid, p.MessageStatus, p.ErrorCode, p.ErrorMessage);
        break;
      case "claimed":
        store.claimed(p.phone, p.webAppId);
        break;
      case "reminder":
        store.applyReminder(p.MessageSid, p.state, p);
        this.onReminder(p);
        break;
      case "contact":
        this.book.onEvent(p);
        this.onSearchable();
        break;
      case "scheduled":
        this.onScheduled(p);
        break;
      case "batch":
        this.onBatch(p);
        break;
      case "template":
        this.onTemplate(p);
        break;
      case "owner":
        this.onOwner(p, live);
        break;
      case "note":
        this.onNote(p);
        break;
      case "optout":
        store.setOptedOut(p.phone, p.optedOut);
        break;
      case "done":
        if (p.phone && typeof p.done === "boolean") store.setDone(p.phone, p.done, p.at ?? null);
        break;
      default:
        break;
    }
  }

  onInbound(msg, live) {
    const store = this.store;
    const phone = msg.from;
    const conv = store.convs.get(phone);
    const isNew = !store.bySid.has(msg.sid) && conv?.lastMessage?.sid !== msg.sid;
    // A replayed (catch-up) message older than what the list already shows is
    // already counted in the server's unread figure.
    const newer = live || !conv || ts(msg.at) > ts(conv.lastAt);
    store.addMessage(phone, msg);
    if (conv?.done && conv.doneAt && ts(msg.at) > ts(conv.doneAt)) store.setDone(phone, false, msg.at);
    if (store.unrouted.delete(phone)) this.lists.renderSoon();
    if (isNew && newer) {
      const viewing = this.pane.isViewing(phone);
      store.touchConversation(phone, msg, !viewing);
      if (viewing) this.pane.markRead(phone);
      else this.notify(phone, msg);
    }
  }

  /** A conversation changed desk (transfer, takeover, alias reply, archive): both desks hear of it. */
  onOwner(p, live) {
    const store = this.store;
    const phone = p.phone;
    if (!p.MessageSid || !phone) return;
    const msg = {
      sid: p.MessageSid,
      direction: "event",
      from: null,
      to: phone,
      body: p.Body ?? "",
      displayBody: p.Body ?? "",
      at: p.at ?? new Date().toISOString(),
      status: null,
      errorCode: null,
      errorMessage: null,
      media: [],
      reminder: null,
      line: { reason: p.reason ?? null, from: p.from ?? null, to: p.to ?? null, by: p.by ?? null, note: p.note ?? null },
    };
    const isNew = !store.bySid.has(msg.sid);
    // A live event is the latest change; a replayed one counts only if nothing newer is known.
    const newest = live || ts(msg.at) >= ts(store.owners.get(phone)?.at);
    store.addMessage(phone, msg);
    if (newest) store.setOwner(phone, p.to ?? null, msg.at);
    const mine = store.session.webAppId;
    store.touchConversation(phone, store.bySid.get(msg.sid), false);
    if (p.to?.id === mine && newest) {
      // Now ours: the history from before (the other desk's) is there to load.
      this.pane.reloadThread(phone);
      if (isNew && live && p.from?.id !== mine) {
        const who = p.by?.name ? ` (${p.by.name})` : "";
        this.lists.showNotice(`${displayName(store, phone)} is now with this desk${who}.`);
      }
    }
    this.lists.refreshSoon();
  }

  /** An internal note at this desk: in the thread, and the list's latest line, but never unread. */
  onNote(p) {
    const store = this.store;
    if (!p.MessageSid || !p.phone) return;
    const msg = {
      sid: p.MessageSid,
      direction: "note",
      from: p.From ?? null,
      to: p.phone,
      body: p.Body ?? "",
      displayBody: p.Body ?? "",
      at: p.at ?? new Date().toISOString(),
      status: null,
      errorCode: null,
      errorMessage: null,
      media: [],
      reminder: null,
      sentBy: p.sentBy ?? null,
    };
    const isNew = !store.bySid.has(msg.sid);
    store.addMessage(msg.to, msg);
    if (isNew) store.touchConversation(msg.to, store.bySid.get(msg.sid), false);
  }

  onUnroutedInbound(msg) {
    const store = this.store;
    const phone = msg.from;
    const isNew = !store.bySid.has(msg.sid);
    store.bySid.set(msg.sid, { ...(store.bySid.get(msg.sid) ?? {}), ...msg });
    const entry = store.unrouted.get(phone);
    if (!entry || ts(msg.at) >= ts(entry.lastAt)) {
      store.unrouted.set(phone, {
        phone,
        lastMessage: { sid: msg.sid, direction: "inbound", body: msg.displayBody, at: msg.at },
        unread: (entry?.unread ?? 0) + (isNew ? 1 : 0),
        lastAt: msg.at,
      });
      this.lists.renderSoon();
      if (isNew) this.notify(phone, msg);
    }
  }

  notify(phone, msg) {
    notify(this.store, phone, msg, () => {
      if (this.store.convs.has(phone)) this.pane.open(phone);
    });
  }
}
