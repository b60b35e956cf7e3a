// Wiring: session, state, live updates, and the UI event handlers.
import { Api, ApiError, explainApiError } from "./api.js";
import { Connection } from "./connection.js";
import { COUNTRIES, formatPhone, normalizePhone } from "./phone.js";
import { countSegments, describeSegments, MAX_CHARS } from "./segments.js";
import {
  MessageView,
  refreshRelativeTimes,
  renderConversations,
  renderUnrouted,
} from "./render.js";

const APP_TITLE = "SMS Relay";
const KEY_CODE = "smsrelay.accessCode";
const KEY_SESSION = "smsrelay.session";
const KEY_COUNTRY = "smsrelay.country";
const cursorKey = (id) => `smsrelay.cursor.${id}`;
const PAGE = 30;

const $ = (id) => document.getElementById(id);

const api = new Api("/api");

const STATUS_RANK = {
  pending: 0, accepted: 1, queued: 1, sending: 2, sent: 3, delivered: 4, read: 5, failed: 9, undelivered: 9,
};
const rank = (s) => STATUS_RANK[s] ?? 0;

const store = {
  session: null,
  convs: new Map(), // phone -> {phone, lastMessage, unread, lastAt}
  unrouted: new Map(), // phone -> {phone, lastMessage, unread, lastAt}
  threads: new Map(), // phone -> {sids: Set, next, loaded, loading, complete}
  bySid: new Map(), // sid -> Message
  pendingStatus: new Map(), // sid -> status update that arrived before its message
  pendingReminder: new Map(),
  cursor: null,
  current: null,
  claiming: new Set(),
  drafts: new Map(),
};

let conn = null;
let renewTimer = null;
let reauthPromise = null;
let view = null;
let composeKey = null;
let newKey = null;
let lastTemplate = null;
let catchingUp = false;
let catchUpAgain = false;

// ---- small utilities -----------------------------------------------------

function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function ts(iso) {
  const t = Date.parse(iso ?? "");
  return Number.isNaN(t) ? 0 : t;
}

function readJSON(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? "null");
  } catch {
    return null;
  }
}

let renderQueued = false;
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    renderLists();
  }, 0);
}

// ---- session -------------------------------------------------------------

function takeCodeFromUrl() {
  const url = new URL(location.href);
  const code = url.searchParams.get("code");
  if (code === null) return;
  if (code.trim()) localStorage.setItem(KEY_CODE, code.trim());
  url.searchParams.delete("code");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

function saveSession(s) {
  store.session = s;
  api.token = s.token;
  localStorage.setItem(
    KEY_SESSION,
    JSON.stringify({ webAppId: s.webAppId, alias: s.alias, token: s.token, expiresAt: s.expiresAt }),
  );
}

async function createSession(code) {
  const prev = readJSON(KEY_SESSION);
  try {
    return await api.createSession({ accessCode: code, webAppId: prev?.webAppId, token: prev?.token });
  } catch (err) {
    // A stale identity must not lock the desk out: try once more as a new desk.
    if (prev && err instanceof ApiError && err.status >= 400 && err.status < 500 && err.code !== "invalid_access_code") {
      localStorage.removeItem(KEY_SESSION);
      return api.createSession({ accessCode: code });
    }
    throw err;
  }
}

async function signIn(code) {
  const s = await createSession(code);
  localStorage.setItem(KEY_CODE, code);
  if (store.session && store.session.webAppId !== s.webAppId) resetState();
  saveSession(s);
  store.cursor = localStorage.getItem(cursorKey(s.webAppId));
  showApp();
  scheduleRenewal();
  await refreshLists().catch((err) => showNotice(explainApiError(err)));
  startConnection();
}

function scheduleRenewal() {
  clearTimeout(renewTimer);
  const s = store.session;
  if (!s) return;
  const left = ts(s.expiresAt) - Date.now();
  if (!s.expiresAt || Number.isNaN(left)) return;
  const lead = Math.min(5 * 60_000, Math.max(10_000, left * 0.2));
  renewTimer = setTimeout(renew, Math.max(1000, left - lead));
}

async function renew() {
  const s = store.session;
  if (!s) return;
  try {
    const code = localStorage.getItem(KEY_CODE);
    const fresh = await api.renewSession(code ? { accessCode: code, webAppId: s.webAppId, token: s.token } : {});
    adoptRenewed(fresh);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      if (!(await reauthenticate())) return;
    } else {
      clearTimeout(renewTimer);
      renewTimer = setTimeout(renew, 30_000);
    }
  }
}

function adoptRenewed(fresh) {
  if (!store.session) return;
  if (fresh.webAppId && fresh.webAppId !== store.session.webAppId) {
    // The server gave us a different desk: start over cleanly.
    resetState();
    saveSession(fresh);
    showApp();
    scheduleRenewal();
    refreshLists().catch(() => {});
    startConnection();
    return;
  }
  saveSession({ ...store.session, ...fresh, mqtt: store.session.mqtt });
  if (fresh.mqtt) conn?.updateCredentials(fresh.mqtt.username, fresh.mqtt.password);
  scheduleRenewal();
}

/** The token was refused: get a new one with the stored code (same desk). */
function reauthenticate() {
  if (reauthPromise) return reauthPromise;
  reauthPromise = (async () => {
    const code = localStorage.getItem(KEY_CODE);
    const s = store.session;
    if (!code || !s) {
      signOutLocally("Your session ended. Sign in again.");
      return false;
    }
    try {
      const fresh = await api.createSession({ accessCode: code, webAppId: s.webAppId, token: s.token });
      adoptRenewed(fresh);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === "invalid_access_code") {
        localStorage.removeItem(KEY_CODE);
        signOutLocally("The access code has changed. Enter the new one.");
      }
      return false;
    } finally {
      setTimeout(() => { reauthPromise = null; }, 0);
    }
  })();
  return reauthPromise;
}
api.onUnauthorized = () => (store.session ? reauthenticate() : Promise.resolve(false));

async function signOut() {
  try {
    if (store.session) await api.deleteSession();
  } catch {
    /* signing out locally is what matters */
  }
  localStorage.removeItem(KEY_CODE);
  signOutLocally("");
}

function signOutLocally(message) {
  const id = store.session?.webAppId;
  localStorage.removeItem(KEY_SESSION);
  if (id) localStorage.removeItem(cursorKey(id));
  resetState();
  store.session = null;
  api.token = null;
  showSignIn(message);
}

function resetState() {
  clearTimeout(renewTimer);
  conn?.stop();
  conn = null;
  store.convs.clear();
  store.unrouted.clear();
  store.threads.clear();
  store.bySid.clear();
  store.pendingStatus.clear();
  store.pendingReminder.clear();
  store.claiming.clear();
  store.drafts.clear();
  store.cursor = null;
  store.current = null;
  for (const p of mediaCache.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  mediaCache.clear();
  view?.clear();
  renderLists();
  closeConversation();
}

// ---- screens -------------------------------------------------------------

function showSignIn(message = "") {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  const input = $("access-code");
  input.value = localStorage.getItem(KEY_CODE) ?? "";
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.focus();
  document.title = APP_TITLE;
}

function showApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  const alias = store.session.alias ?? "";
  $("desk-alias").textContent = alias;
  $("desk-hint").textContent = alias ? `patients can start a reply with #${alias.replace(/^#/, "")} to reach you` : "";
  updateNotifyButton();
  updateTitle();
}

// ---- connection ----------------------------------------------------------

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

function startConnection() {
  conn?.stop();
  const info = store.session?.mqtt;
  if (!info) return;
  conn = new Connection({
    onState: (state) => {
      const box = $("conn-state");
      box.dataset.state = state;
      $("conn-text").textContent = STATE_TEXT[state] ?? state;
    },
    onMessage: (topic, payload) => handleEvent(topic, null, payload, true),
    onConnect: () => catchUp(),
    onAuthError: () => reauthenticate(),
  });
  conn.start(info);
}

async function catchUp() {
  if (!store.session) return;
  if (catchingUp) {
    catchUpAgain = true;
    return;
  }
  catchingUp = true;
  try {
    let pages = 0;
    do {
      catchUpAgain = false;
      const id = store.session.webAppId;
      let res;
      try {
        res = await api.events(store.cursor);
      } catch (err) {
        if (err instanceof ApiError && err.code === "invalid_cursor" && store.cursor != null) {
          store.cursor = null; // a cursor from another data set: start from the beginning
          localStorage.removeItem(cursorKey(id));
          catchUpAgain = true;
          continue;
        }
        throw err;
      }
      if (!store.session || store.session.webAppId !== id) return;
      const events = res?.events ?? [];
      for (const ev of events) handleEvent(ev.topic, ev.kind, ev.payload);
      const moved = res?.cursor != null && String(res.cursor) !== store.cursor;
      if (moved) {
        store.cursor = String(res.cursor);
        localStorage.setItem(cursorKey(id), store.cursor);
      }
      // The feed is paged: keep going until a page comes back empty.
      if (events.length > 0 && moved) catchUpAgain = true;
    } while (catchUpAgain && ++pages < 100);
  } catch (err) {
    console.warn("catch-up failed", err);
    setTimeout(() => { if (conn?.state === "connected") catchUp(); }, 5000);
  } finally {
    catchingUp = false;
  }
}

async function refreshLists() {
  const [c, u] = await Promise.all([api.conversations(), api.unrouted()]);
  for (const item of c?.conversations ?? []) {
    const local = store.convs.get(item.phone);
    if (local && ts(local.lastAt) > ts(item.lastAt)) {
      local.unread = Math.max(local.unread, item.unread ?? 0);
    } else {
      store.convs.set(item.phone, { ...item, unread: item.unread ?? 0, lastAt: item.lastAt ?? item.lastMessage?.at });
    }
  }
  store.unrouted.clear();
  for (const item of u?.conversations ?? []) {
    if (!store.convs.has(item.phone)) {
      store.unrouted.set(item.phone, { ...item, lastAt: item.lastAt ?? item.lastMessage?.at });
    }
  }
  renderLists();
}

// ---- events (MQTT and catch-up share this path) --------------------------

function handleEvent(topic, kind, p, live = false) {
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
      if (audience === "unrouted" || p.webAppId === "unrouted") onUnroutedInbound(msg);
      else if (audience === mine || p.webAppId === mine) onInbound(msg, live);
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
        reminder: p.reminder ?? null,
      };
      const conv = store.convs.get(msg.to);
      const isNew = !store.bySid.has(msg.sid);
      addMessage(msg.to, msg);
      if (isNew || !conv) touchConversation(msg.to, store.bySid.get(msg.sid), false);
      break;
    }
    case "status":
      applyStatus(p.MessageSid, p.MessageStatus, p.ErrorCode, p.ErrorMessage);
      break;
    case "claimed":
      onClaimed(p.phone, p.webAppId);
      break;
    case "reminder":
      applyReminder(p.MessageSid, p.state);
      break;
    default:
      break;
  }
}

function isViewing(phone) {
  return store.current === phone && !document.hidden && $("layout").dataset.view === "conversation";
}

function onInbound(msg, live) {
  const phone = msg.from;
  const conv = store.convs.get(phone);
  const isNew = !store.bySid.has(msg.sid) && conv?.lastMessage?.sid !== msg.sid;
  // A replayed (catch-up) message older than what the list already shows is
  // already counted in the server's unread figure.
  const newer = live || !conv || ts(msg.at) > ts(conv.lastAt);
  addMessage(phone, msg);
  if (store.unrouted.delete(phone)) renderSoon();
  if (isNew && newer) {
    const viewing = isViewing(phone);
    touchConversation(phone, msg, !viewing);
    if (viewing) markRead(phone);
    else notify(phone, msg);
  }
}

function onUnroutedInbound(msg) {
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
    renderSoon();
    if (isNew) notify(phone, msg);
  }
}

function onClaimed(phone, webAppId) {
  if (!phone) return;
  const entry = store.unrouted.get(phone);
  store.unrouted.delete(phone);
  if (webAppId && webAppId === store.session?.webAppId && !store.convs.has(phone)) {
    store.convs.set(phone, {
      phone,
      lastMessage: entry?.lastMessage ?? null,
      unread: entry?.unread ?? 0,
      lastAt: entry?.lastAt ?? new Date().toISOString(),
    });
  }
  renderSoon();
}

function touchConversation(phone, msg, countUnread) {
  const conv = store.convs.get(phone) ?? { phone, lastMessage: null, unread: 0, lastAt: null };
  if (!conv.lastAt || ts(msg.at) >= ts(conv.lastAt)) {
    conv.lastMessage = { sid: msg.sid, direction: msg.direction, body: msg.displayBody ?? msg.body, at: msg.at, media: msg.media };
    conv.lastAt = msg.at;
  }
  if (countUnread) conv.unread = (conv.unread ?? 0) + 1;
  store.convs.set(phone, conv);
  renderSoon();
}

function thread(phone) {
  let t = store.threads.get(phone);
  if (!t) {
    t = { sids: new Set(), next: null, loaded: false, loading: false, complete: false };
    store.threads.set(phone, t);
  }
  return t;
}

function mergeMessage(old, msg) {
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

/** Upsert a message by sid and show it if its conversation is open. */
function addMessage(phone, msg) {
  let merged = mergeMessage(store.bySid.get(msg.sid), msg);
  const pending = store.pendingStatus.get(msg.sid);
  if (pending) {
    store.pendingStatus.delete(msg.sid);
    merged = mergeMessage(merged, { status: pending.status, errorCode: pending.errorCode, errorMessage: pending.errorMessage });
  }
  const reminder = store.pendingReminder.get(msg.sid);
  if (reminder) {
    store.pendingReminder.delete(msg.sid);
    merged.reminder = reminder;
  }
  store.bySid.set(msg.sid, merged);
  const t = thread(phone);
  if (t.loaded || t.loading) t.sids.add(msg.sid);
  if (store.current === phone && t.loaded) showMessage(merged);
  return merged;
}

function applyStatus(sid, status, errorCode, errorMessage) {
  if (!sid || !status) return;
  const msg = store.bySid.get(sid);
  if (!msg) {
    const prev = store.pendingStatus.get(sid);
    if (!prev || rank(status) > rank(prev.status)) store.pendingStatus.set(sid, { status, errorCode, errorMessage });
    if (store.pendingStatus.size > 500) store.pendingStatus.delete(store.pendingStatus.keys().next().value);
    return;
  }
  if (rank(status) <= rank(msg.status)) return; // never backwards; failed/undelivered are final
  msg.status = status;
  msg.errorCode = errorCode || null;
  msg.errorMessage = errorMessage || null;
  const phone = msg.direction === "outbound" ? msg.to : msg.from;
  if (store.current === phone) view?.nodes.has(sid) && view.upsert(msg);
}

function applyReminder(sid, state) {
  if (!sid || !state) return;
  const msg = store.bySid.get(sid);
  if (!msg) {
    store.pendingReminder.set(sid, state);
    return;
  }
  msg.reminder = state;
  const phone = msg.direction === "outbound" ? msg.to : msg.from;
  if (store.current === phone && view?.nodes.has(sid)) view.upsert(msg);
}

// ---- notifications and title ---------------------------------------------

function totalUnread() {
  let n = 0;
  for (const c of store.convs.values()) n += c.unread > 0 ? c.unread : 0;
  for (const c of store.unrouted.values()) n += c.unread > 0 ? c.unread : 0;
  return n;
}

function updateTitle() {
  const n = totalUnread();
  document.title = document.hidden && n > 0 ? `(${n}) ${APP_TITLE}` : APP_TITLE;
}

function notify(phone, msg) {
  updateTitle();
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(`Text from ${formatPhone(phone)}`, {
      body: (msg.displayBody ?? msg.body ?? "").slice(0, 140) || "[image]",
      tag: msg.sid,
    });
    n.onclick = () => {
      window.focus();
      if (store.convs.has(phone)) openConversation(phone);
      n.close();
    };
  } catch {
    /* some browsers only allow notifications from a service worker */
  }
}

function updateNotifyButton() {
  const btn = $("notify-btn");
  btn.hidden = !("Notification" in window) || Notification.permission !== "default";
}

// ---- lists ---------------------------------------------------------------

function renderLists() {
  const convs = [...store.convs.values()].sort((a, b) => ts(b.lastAt) - ts(a.lastAt));
  renderConversations($("conv-list"), convs, { current: store.current, onOpen: openConversation });
  $("conv-empty").hidden = convs.length > 0;
  const unrouted = [...store.unrouted.values()].sort((a, b) => ts(b.lastAt) - ts(a.lastAt));
  renderUnrouted($("unrouted-list"), unrouted, { onClaim: claim, busy: store.claiming });
  $("unrouted-section").hidden = unrouted.length === 0;
  updateTitle();
}

let noticeTimer = null;
function showNotice(text) {
  const box = $("list-notice");
  box.textContent = text;
  box.hidden = !text;
  clearTimeout(noticeTimer);
  if (text) noticeTimer = setTimeout(() => { box.hidden = true; box.textContent = ""; }, 8000);
}

async function claim(phone) {
  if (store.claiming.has(phone)) return;
  store.claiming.add(phone);
  renderLists();
  try {
    await api.claim(phone);
    onClaimed(phone, store.session.webAppId);
    store.claiming.delete(phone);
    renderLists();
    openConversation(phone);
  } catch (err) {
    store.claiming.delete(phone);
    if (err instanceof ApiError && err.code === "already_claimed") store.unrouted.delete(phone);
    renderLists();
    showNotice(explainApiError(err));
  }
}

// ---- conversation pane ---------------------------------------------------

const mediaCache = new Map();
function loadMedia(url) {
  let p = mediaCache.get(url);
  if (!p) {
    p = api.media(url).then((blob) => URL.createObjectURL(blob));
    p.catch(() => mediaCache.delete(url));
    mediaCache.set(url, p);
  }
  return p;
}

function scroller() {
  return $("message-scroller");
}

function nearBottom() {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = scroller();
  s.scrollTop = s.scrollHeight;
}

function showMessage(msg) {
  const wasNew = !view.nodes.has(msg.sid);
  const stick = nearBottom();
  view.upsert(msg);
  if (wasNew && (stick || msg.direction === "outbound")) scrollToBottom();
}

function saveDraft() {
  if (store.current) store.drafts.set(store.current, $("compose-text").value);
}

async function openConversation(phone) {
  if (store.current !== phone) {
    saveDraft();
    store.current = phone;
    view.clear();
    composeKey = null;
    $("compose-text").value = store.drafts.get(phone) ?? "";
    $("compose-error").textContent = "";
    updateCompose();
  }
  $("pane-empty").hidden = true;
  $("conversation").hidden = false;
  $("layout").dataset.view = "conversation";
  $("conv-title").textContent = formatPhone(phone);
  $("conversation").dataset.phone = phone;
  renderLists();

  const t = thread(phone);
  if (!t.loaded && !t.loading) {
    t.loading = true;
    setHistoryStatus("Loading messages…");
    try {
      const res = await api.messages(phone, { limit: PAGE });
      for (const m of res?.messages ?? []) addMessage(phone, m);
      t.next = res?.next ?? null;
      t.complete = t.next == null;
      t.loaded = true;
    } catch (err) {
      setHistoryStatus(explainApiError(err));
      t.loading = false;
      return;
    }
    t.loading = false;
  }
  if (store.current !== phone) return;
  const msgs = [...t.sids].map((sid) => store.bySid.get(sid)).filter(Boolean).sort((a, b) => ts(a.at) - ts(b.at));
  for (const m of msgs) view.upsert(m);
  updateHistoryStatus();
  scrollToBottom();
  markRead(phone);
  if (window.matchMedia("(min-width: 701px)").matches) $("compose-text").focus({ preventScroll: true });
  else $("conv-title").focus({ preventScroll: true });
  // A short first page might not fill the pane: load more so scrolling works.
  if (t.next && scroller().scrollHeight <= scroller().clientHeight) loadOlder();
}

function closeConversation() {
  saveDraft();
  $("layout").dataset.view = "list";
  const phone = store.current;
  if (!phone) {
    $("conversation").hidden = true;
    $("pane-empty").hidden = false;
    return;
  }
  // On a narrow screen "back" just shows the list; the pane keeps its state.
  const item = $("conv-list").querySelector(`[data-phone="${CSS.escape(phone)}"] button`);
  item?.focus();
}

function setHistoryStatus(text) {
  const box = $("history-status");
  box.replaceChildren(text);
}

function updateHistoryStatus() {
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
    btn.addEventListener("click", () => loadOlder());
    box.replaceChildren(btn);
  } else {
    box.replaceChildren(t.sids.size ? "Beginning of the conversation" : "No messages yet");
  }
}

async function loadOlder() {
  const phone = store.current;
  const t = phone ? store.threads.get(phone) : null;
  if (!t || !t.next || t.loading) return;
  t.loading = true;
  updateHistoryStatus();
  const s = scroller();
  try {
    const res = await api.messages(phone, { before: t.next, limit: PAGE });
    if (store.current !== phone) return;
    const before = s.scrollHeight - s.scrollTop;
    for (const m of res?.messages ?? []) addMessage(phone, m);
    s.scrollTop = s.scrollHeight - before;
    t.next = res?.next ?? null;
  } catch (err) {
    setHistoryStatus(explainApiError(err));
    t.loading = false;
    return;
  } finally {
    t.loading = false;
  }
  updateHistoryStatus();
}

const readTimers = new Map();
/** Zero the unread count here and (debounced) on the server. */
function markRead(phone) {
  const conv = store.convs.get(phone);
  if (!conv) return;
  conv.unread = 0;
  renderSoon();
  clearTimeout(readTimers.get(phone));
  readTimers.set(phone, setTimeout(() => {
    readTimers.delete(phone);
    api.markRead(phone).catch(() => {});
  }, 250));
}

// ---- compose -------------------------------------------------------------

function describeLimit(text) {
  const c = countSegments(text);
  return c.tooLong ? `Too long: ${c.chars} characters. The limit is ${MAX_CHARS}; shorten the message to send it.` : "";
}

let composeSending = false;
function updateCompose() {
  const text = $("compose-text").value;
  const c = countSegments(text);
  const counter = $("compose-counter");
  counter.textContent = describeSegments(text);
  counter.classList.toggle("over", c.tooLong);
  $("compose-send").disabled = composeSending || c.tooLong || text.trim() === "";
  const limit = describeLimit(text);
  const err = $("compose-error");
  if (limit) {
    err.textContent = limit;
    err.dataset.kind = "limit";
  } else if (err.dataset.kind === "limit") {
    err.textContent = "";
    err.dataset.kind = "";
  }
  $("compose-text").setAttribute("aria-invalid", c.tooLong ? "true" : "false");
}

async function sendCompose() {
  const phone = store.current;
  const box = $("compose-text");
  const text = box.value;
  const c = countSegments(text);
  if (!phone || composeSending || c.tooLong || text.trim() === "") return;
  composeSending = true;
  composeKey = composeKey ?? uuid();
  const err = $("compose-error");
  err.textContent = "";
  err.dataset.kind = "";
  updateCompose();
  $("compose-send").textContent = "Sending…";
  try {
    const res = await api.sendSms({ to: phone, body: text }, composeKey);
    composeKey = null;
    recordSent(phone, res, text);
    if (box.value === text && store.current === phone) box.value = "";
    store.drafts.delete(phone);
  } catch (e) {
    err.textContent = explainApiError(e);
    err.dataset.kind = "api";
    if (!(e instanceof ApiError) || e.status === 0 || e.status >= 500) {
      /* keep the key: a retry of the same text must not send twice */
    } else {
      composeKey = null;
    }
  } finally {
    composeSending = false;
    $("compose-send").textContent = "Send";
    updateCompose();
  }
}

function recordSent(phone, res, text) {
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
    media: [],
    reminder: res.reminder ?? null,
  };
  const target = res.to ?? phone;
  const merged = addMessage(target, msg);
  touchConversation(target, merged, false);
  if (store.current === target && view.nodes.has(msg.sid)) scrollToBottom();
}

// ---- new message / reminder dialog ---------------------------------------

function defaultCountry() {
  const saved = localStorage.getItem(KEY_COUNTRY);
  if (saved && COUNTRIES.some((c) => c.code === saved)) return saved;
  const region = (navigator.language ?? "").split("-")[1]?.toUpperCase();
  return COUNTRIES.some((c) => c.code === region) ? region : "US";
}

function phoneCheck() {
  return normalizePhone($("new-phone").value, $("new-country").value);
}

let phoneTouched = false;
function updateNewForm() {
  const check = phoneCheck();
  const status = $("new-phone-status");
  const input = $("new-phone");
  if (check.ok) {
    status.textContent = `✓ Will text ${formatPhone(check.e164)}`;
    status.dataset.kind = "ok";
    input.setAttribute("aria-invalid", "false");
  } else if (check.empty && !phoneTouched) {
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
  const err = $("new-error");
  const limit = describeLimit(text);
  if (limit) {
    err.textContent = limit;
    err.dataset.kind = "limit";
  } else if (err.dataset.kind === "limit") {
    err.textContent = "";
    err.dataset.kind = "";
  }
  $("new-send").disabled = newSending || !check.ok || c.tooLong || text.trim() === "";
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

function fillTemplate(force) {
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
  if (force || box.value === "" || box.value === lastTemplate) {
    box.value = text;
    lastTemplate = text;
    if ($("new-error").dataset.kind === "template") $("new-error").textContent = "";
  }
  updateNewForm();
}

function openNewDialog() {
  const dlg = $("new-dialog");
  $("new-error").textContent = "";
  $("new-error").dataset.kind = "";
  phoneTouched = false;
  updateNewForm();
  dlg.showModal();
  $("new-phone").focus();
}

let newSending = false;
async function sendNew() {
  const check = phoneCheck();
  phoneTouched = true;
  const text = $("new-text").value;
  const c = countSegments(text);
  updateNewForm();
  if (!check.ok) {
    $("new-phone").focus();
    return;
  }
  if (c.tooLong || text.trim() === "" || newSending) return;
  newSending = true;
  newKey = newKey ?? uuid();
  $("new-error").textContent = "";
  $("new-error").dataset.kind = "";
  $("new-send").textContent = "Sending…";
  updateNewForm();
  try {
    const res = await api.sendSms({ to: check.e164, body: text, confirm: $("new-confirm").checked }, newKey);
    newKey = null;
    const sent = { ...res, to: res.to ?? check.e164, reminder: $("new-confirm").checked ? "pending" : null };
    recordSent(check.e164, sent, text);
    $("new-form").reset();
    $("new-country").value = defaultCountry();
    lastTemplate = null;
    $("new-dialog").close();
    openConversation(sent.to);
  } catch (e) {
    $("new-error").textContent = explainApiError(e);
    $("new-error").dataset.kind = "api";
    if (e instanceof ApiError && e.status > 0 && e.status < 500) newKey = null;
  } finally {
    newSending = false;
    $("new-send").textContent = "Send";
    updateNewForm();
  }
}

// ---- wiring --------------------------------------------------------------

function wire() {
  view = new MessageView($("message-list"), { loadMedia });

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const code = $("access-code").value.trim();
    if (!code) {
      $("signin-error").textContent = "Enter the access code.";
      return;
    }
    const btn = $("signin-submit");
    btn.disabled = true;
    $("signin-error").textContent = "";
    try {
      await signIn(code);
    } catch (err) {
      showSignIn(explainApiError(err));
    } finally {
      btn.disabled = false;
    }
  });

  $("signout-btn").addEventListener("click", () => signOut());
  $("notify-btn").addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      updateNotifyButton();
    }
  });
  $("new-message-btn").addEventListener("click", openNewDialog);
  $("back-btn").addEventListener("click", closeConversation);

  // compose
  const box = $("compose-text");
  box.addEventListener("input", () => {
    composeKey = null;
    const err = $("compose-error");
    if (err.dataset.kind === "api") {
      err.textContent = "";
      err.dataset.kind = "";
    }
    updateCompose();
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      sendCompose();
    }
  });
  $("compose").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendCompose();
  });
  scroller().addEventListener("scroll", () => {
    if (scroller().scrollTop < 60) loadOlder();
  }, { passive: true });

  // new message dialog
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
    updateNewForm();
  });
  $("new-phone").addEventListener("input", () => { newKey = null; updateNewForm(); });
  $("new-phone").addEventListener("blur", () => {
    if ($("new-phone").value.trim()) phoneTouched = true;
    updateNewForm();
  });
  $("new-text").addEventListener("input", () => {
    newKey = null;
    if ($("new-error").dataset.kind === "api") $("new-error").textContent = "";
    updateNewForm();
  });
  $("new-date").addEventListener("change", () => fillTemplate(false));
  $("new-time").addEventListener("change", () => fillTemplate(false));
  $("new-template").addEventListener("click", () => fillTemplate(true));
  $("new-cancel").addEventListener("click", () => $("new-dialog").close());
  $("new-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendNew();
  });
  $("new-text").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      sendNew();
    }
  });

  // tab visibility, other tabs, clocks
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      if (store.current && $("layout").dataset.view === "conversation") markRead(store.current);
      conn?.nudge();
      const s = store.session;
      if (s && ts(s.expiresAt) - Date.now() < 60_000) renew();
    }
    updateTitle();
  });
  window.addEventListener("storage", (ev) => {
    if (ev.key === KEY_SESSION && ev.newValue === null && store.session) {
      signOutLocally("This desk was signed out in another tab.");
    } else if (ev.key === KEY_SESSION && ev.newValue && store.session) {
      const other = readJSON(KEY_SESSION);
      if (other?.webAppId === store.session.webAppId && ts(other.expiresAt) > ts(store.session.expiresAt)) {
        store.session = { ...store.session, token: other.token, expiresAt: other.expiresAt };
        api.token = other.token;
        scheduleRenewal();
      }
    }
  });
  setInterval(() => refreshRelativeTimes($("sidebar")), 30_000);
}

async function boot() {
  wire();
  takeCodeFromUrl();
  const code = localStorage.getItem(KEY_CODE);
  if (!code) {
    showSignIn();
    return;
  }
  try {
    await signIn(code);
  } catch (err) {
    if (err instanceof ApiError && err.code === "invalid_access_code") localStorage.removeItem(KEY_CODE);
    showSignIn(explainApiError(err));
  }
}

boot();
