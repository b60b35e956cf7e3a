// The desk's data: the session, the conversation lists, every message known
// so far (merged by MessageSid), and which desk each conversation is with.
// Nothing here touches the DOM; the screen hears about changes through the
// callbacks set in app.js.

const STATUS_RANK = {
  pending: 0, accepted: 1, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5, failed: 9, undelivered: 9,
};
export const rank = (s) => STATUS_RANK[s] ?? 0;

/** Milliseconds since the epoch for an ISO time; 0 when missing or invalid. */
export function ts(iso) {
  const t = Date.parse(iso ?? "");
  return Number.isNaN(t) ? 0 : t;
}

/** Merge what we learnt about a message into what we knew; status never goes backwards. */
export function mergeMessage(old, msg) {
  if (!old) return { ...msg };
  const out = { ...old };
  for (const [k, v] of Object.entries(msg)) {
    if (v === undefined || v === null) continue;
    if (k === "status" || k === "errorCode" || k === "errorMessage" || k === "at") continue;
    if (k === "media" && (!v.length && old.media?.length)) continue;
    out[k] = v;
  }
  if (!old.at) out.at = msg.at;
  if (rank(msg.status) > rank(old.status) || !old.status) {
    out.status = msg.status;
    out.errorCode = msg.errorCode ?? null;
    out.errorMessage = msg.errorMessage ?? null;
  }
  return out;
}

const noop = () => {};

export class Store {
  constructor() {
    this.session = null;
    this.convs = new Map(); // phone -> {phone, lastMessage, unread, lastAt, done}
    this.unrouted = new Map(); // phone -> {phone, lastMessage, unread, lastAt}
    this.threads = new Map(); // phone -> {sids: Set, next, loaded, loading, floor}
    this.bySid = new Map(); // sid -> Message
    this.pendingStatus = new Map(); // sid -> status update that arrived before its message
    this.pendingReminder = new Map();
    this.cursor = null;
    this.current = null; // phone of the open conversation
    this.claiming = new Set();
    this.drafts = new Map();
    this.owners = new Map(); // phone -> {owner: desk | null, yours: boolean, at: ISO time}
    this.optedOut = new Map(); // phone -> true once the number texted STOP (false after START)
    this.contacts = new Map(); // phone -> {name, note?} from the address book, or null: known to have none
    this.scheduled = new Map(); // id -> Scheduled item of this desk still to go
    this.templates = new Map(); // id -> saved template of this desk

    /** A message of the open, loaded conversation was added or merged. */
    this.onShow = noop;
    /** A message of the open conversation changed status or reminder state. */
    this.onChange = noop;
    /** The conversation lists changed. */
    this.onLists = noop;
    /** The desk a conversation is with changed (phone). */
    this.onOwner = noop;
    /** A number opted out or back in (phone). */
    this.onOptOut = noop;
    /** A name in the address book changed (phone, or "*" for many). */
    this.onContact = noop;
    /** A scheduled message of this desk was added, changed or went (item). */
    this.onScheduled = noop;
    /** The desk's saved templates changed. */
    this.onTemplates = noop;
  }

  /** Forget everything but the session. */
  clear() {
    this.convs.clear();
    this.unrouted.clear();
    this.threads.clear();
    this.bySid.clear();
    this.pendingStatus.clear();
    this.pendingReminder.clear();
    this.claiming.clear();
    this.drafts.clear();
    this.owners.clear();
    this.optedOut.clear();
    this.contacts.clear();
    this.scheduled.clear();
    this.templates.clear();
    this.cursor = null;
    this.current = null;
  }

  /** The patient's name in the address book, or null. */
  nameOf(phone) {
    return this.contacts.get(phone)?.name ?? null;
  }

  /** What the server said about a number's contact (`{"name"}`, a whole Contact, or null for none). */
  learnContact(phone, contact) {
    if (!phone || contact === undefined) return;
    const prev = this.contacts.get(phone);
    const next = contact && typeof contact.name === "string" ? { ...(prev ?? {}), ...contact } : null;
    this.contacts.set(phone, next);
    if (prev?.name !== next?.name || prev?.note !== next?.note) this.onContact(phone);
  }

  thread(phone) {
    let t = this.threads.get(phone);
    if (!t) {
      // floor: the oldest time shown while older pages remain; anything older comes back by paging, in order.
      t = { sids: new Set(), next: null, loaded: false, loading: false, floor: null };
      this.threads.set(phone, t);
    }
    return t;
  }

  /** Upsert a message by sid and show it if its conversation is open. */
  addMessage(phone, msg) {
    let merged = mergeMessage(this.bySid.get(msg.sid), msg);
    const pending = this.pendingStatus.get(msg.sid);
    if (pending) {
      this.pendingStatus.delete(msg.sid);
      merged = mergeMessage(merged, { status: pending.status, errorCode: pending.errorCode, errorMessage: pending.errorMessage });
    }
    const reminder = this.pendingReminder.get(msg.sid);
    if (reminder) {
      this.pendingReminder.delete(msg.sid);
      merged.reminder = reminder.state;
      if (reminder.info) merged.reminderInfo = { id: reminder.info.id ?? null, note: reminder.info.note ?? null, by: reminder.info.by ?? null };
    }
    this.bySid.set(msg.sid, merged);
    const t = this.thread(phone);
    if (t.loaded && t.floor != null && ts(merged.at) < t.floor) return merged;
    if (t.loaded || t.loading) t.sids.add(msg.sid);
    if (this.current === phone && t.loaded) this.onShow(merged);
    return merged;
  }

  applyStatus(sid, status, errorCode, errorMessage) {
    if (!sid || !status) return;
    const msg = this.bySid.get(sid);
    if (!msg) {
      const prev = this.pendingStatus.get(sid);
      if (!prev || rank(status) > rank(prev.status)) this.pendingStatus.set(sid, { status, errorCode, errorMessage });
      if (this.pendingStatus.size > 500) this.pendingStatus.delete(this.pendingStatus.keys().next().value);
      return;
    }
    if (rank(status) <= rank(msg.status)) return; // never backwards; failed/undelivered are final
    msg.status = status;
    msg.errorCode = errorCode || null;
    msg.errorMessage = errorMessage || null;
    const phone = msg.direction === "outbound" ? msg.to : msg.from;
    if (this.current === phone) this.onChange(msg);
  }

  /** A reminder's state changed; info: the Reminder (id, note, by) when the event carried it. */
  applyReminder(sid, state, info = null) {
    if (!sid || !state) return;
    const msg = this.bySid.get(sid);
    if (!msg) {
      this.pendingReminder.set(sid, { state, info });
      return;
    }
    msg.reminder = state;
    if (info) msg.reminderInfo = { id: info.id ?? null, note: info.note ?? null, by: info.by ?? null };
    const phone = msg.direction === "outbound" ? msg.to : msg.from;
    if (this.current === phone) this.onChange(msg);
  }

  /** Make msg the conversation's last message if it is the newest; optionally count it unread. */
  touchConversation(phone, msg, countUnread) {
    const conv = this.convs.get(phone) ?? { phone, lastMessage: null, unread: 0, lastAt: null };
    if (!conv.lastAt || ts(msg.at) >= ts(conv.lastAt)) {
      conv.lastMessage = {
        sid: msg.sid, direction: msg.direction, body: msg.displayBody ?? msg.body, at: msg.at, media: msg.media, sentBy: msg.sentBy,
      };
      conv.lastAt = msg.at;
    }
    if (countUnread) conv.unread = (conv.unread ?? 0) + 1;
    if (msg.direction === "inbound") conv.done = false; // the patient's reply reopens it, as on the server
    this.convs.set(phone, conv);
    this.onLists();
  }

  /** A new conversation was claimed (by webAppId): it leaves the unrouted list. */
  claimed(phone, webAppId) {
    if (!phone) return;
    const entry = this.unrouted.get(phone);
    this.unrouted.delete(phone);
    if (webAppId && webAppId === this.session?.webAppId && !this.convs.has(phone)) {
      this.convs.set(phone, {
        phone,
        lastMessage: entry?.lastMessage ?? null,
        unread: entry?.unread ?? 0,
        lastAt: entry?.lastAt ?? new Date().toISOString(),
      });
    }
    this.onLists();
  }

  /**
   * Which desk the conversation is with (null: none, it is unrouted) and whether that is this desk;
   * at: the server's time of what says so (the latest message seen, or the change itself).
   */
  setOwner(phone, owner, at) {
    if (!phone) return;
    const yours = !!owner && owner.id === this.session?.webAppId;
    const prev = this.owners.get(phone);
    this.owners.set(phone, { owner: owner ?? null, yours, at: at ?? prev?.at ?? null });
    if (prev?.owner?.id !== owner?.id || prev?.owner?.name !== owner?.name) this.onOwner(phone);
  }

  /** Whether a number has opted out (STOP), as the server last said. */
  setOptedOut(phone, value) {
    if (!phone || typeof value !== "boolean") return;
    const prev = this.optedOut.get(phone) ?? false;
    this.optedOut.set(phone, value);
    if (prev !== value) this.onOptOut(phone);
  }

  /** The desk marked a conversation done (true) or open again (false), at the server's time `at`. */
  setDone(phone, done, at = null) {
    const conv = this.convs.get(phone);
    if (!conv) return;
    // A replayed "done" older than a reply the list already shows was undone by that reply.
    if (done && at && conv.lastMessage?.direction === "inbound" && ts(conv.lastAt) > ts(at)) return;
    if (at) conv.doneAt = at;
    if (conv.done === done) return;
    conv.done = done;
    this.onLists();
  }

  /** Zero a conversation's unread count; false if there is no such conversation. */
  markRead(phone) {
    const conv = this.convs.get(phone);
    if (!conv) return false;
    conv.unread = 0;
    this.onLists();
    return true;
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread > 0 && !c.done ? c.unread : 0;
    for (const c of this.unrouted.values()) n += c.unread > 0 ? c.unread : 0;
    return n;
  }
}
