// The staff session: the access code, the person's name and the desk they
// were last at, kept in localStorage; signing in, switching desk and signing
// out; renewing the token before it expires and signing in again when it is
// refused; following what other tabs of this browser do (they share one
// session); and the two screens (sign-in, inbox) that follow from it.
import { ApiError, explainApiError, SESSION_OVER } from "./api.js";
import { APP_TITLE, updateNotifyButton, updateTitle } from "./notifications.js";
import { $ } from "./render.js";
import { ts } from "./state.js";

const KEY_CODE = "smsrelay.accessCode";
const KEY_NAME = "smsrelay.staffName";
const KEY_DESK = "smsrelay.desk";
const KEY_SESSION = "smsrelay.session";
/** Why the last session ended (an operator ended it, its desk was archived): no automatic sign-in then. */
const KEY_ENDED = "smsrelay.ended";
/** Where the catch-up cursor of a desk is kept. */
export const cursorKey = (id) => `smsrelay.cursor.${id}`;

const MAX_NAME = 40;

const ENDED_TEXT = {
  signed_out: "Your session was ended. Sign in again to continue.",
  desk_archived: "Your desk has been archived. Sign in to continue at another desk.",
};

function readJSON(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? "null");
  } catch {
    return null;
  }
}

/** An invite link carries ?code=…: keep the code and take it out of the address bar. */
function takeCodeFromUrl() {
  const url = new URL(location.href);
  const code = url.searchParams.get("code");
  if (code === null) return;
  if (code.trim()) localStorage.setItem(KEY_CODE, code.trim());
  url.searchParams.delete("code");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

/** "Maria" is fine; "" and 41 characters are not (the server also refuses control and bidi characters). */
function nameProblem(name) {
  const n = [...name].length;
  if (n === 0) return "Enter your name. Colleagues see it on the messages you send.";
  if (n > MAX_NAME) return `Your name is ${n} characters; ${MAX_NAME} at most.`;
  return "";
}

export class Session {
  /**
   * lists: the sidebar (loaded after sign-in); events: the live connection;
   * desks: the desk picker and presence; onReset(): forget everything shown
   * (after sign-out or a change of desk); onEnter(): the desk is shown, load what else it has.
   */
  constructor({ api, store, lists, events, desks, onReset, onEnter = () => {} }) {
    this.api = api;
    this.store = store;
    this.lists = lists;
    this.events = events;
    this.desks = desks;
    this.onReset = onReset;
    this.onEnter = onEnter;
    this.renewTimer = null;
    this.recovering = null;

    api.onUnauthorized = (err) => (store.session ? this.recover(err.code) : Promise.resolve(false));

    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submitSignIn();
    });
    $("signout-btn").addEventListener("click", () => this.signOut());
    window.addEventListener("storage", (ev) => this.onStorage(ev));
  }

  /** On page load: carry on with this browser's session, or sign in with what it remembers, or ask. */
  async start() {
    takeCodeFromUrl();
    const ended = localStorage.getItem(KEY_ENDED);
    if (ended) {
      this.showSignIn(ended);
      return;
    }
    const stored = readJSON(KEY_SESSION);
    if (stored?.token && ts(stored.expiresAt) > Date.now() + 30_000) {
      try {
        await this.enter(await this.api.renewSession(stored.token));
        return;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401) {
          this.showSignIn(explainApiError(err));
          return;
        }
        if (SESSION_OVER.has(err.code)) {
          this.endedLocally(err.code);
          return;
        }
        // An expired or unknown token: sign in afresh below.
      }
    }
    const code = localStorage.getItem(KEY_CODE);
    const name = localStorage.getItem(KEY_NAME);
    if (!code || !name) {
      this.showSignIn();
      return;
    }
    try {
      await this.signIn(code, name);
    } catch (err) {
      if (err instanceof ApiError && err.code === "invalid_access_code") localStorage.removeItem(KEY_CODE);
      this.showSignIn(explainApiError(err));
    }
  }

  async submitSignIn() {
    const code = $("access-code").value.trim();
    const name = $("staff-name-input").value.trim();
    const codeError = code ? "" : "Enter the access code.";
    const problem = codeError || nameProblem(name);
    $("access-code").setAttribute("aria-invalid", codeError ? "true" : "false");
    $("staff-name-input").setAttribute("aria-invalid", !codeError && problem ? "true" : "false");
    if (problem) {
      $("signin-error").textContent = problem;
      (codeError ? $("access-code") : $("staff-name-input")).focus();
      return;
    }
    const btn = $("signin-submit");
    btn.disabled = true;
    $("signin-error").textContent = "";
    try {
      localStorage.removeItem(KEY_ENDED);
      await this.signIn(code, name);
    } catch (err) {
      this.showSignIn(explainApiError(err), err instanceof ApiError && err.code === "invalid_staff_name" ? "name" : "code");
    } finally {
      btn.disabled = false;
    }
  }

  /** A new session at the remembered desk (or the default desk if it is gone). */
  async signIn(code, name) {
    let grant;
    let notice = "";
    try {
      grant = await this.api.createSession({ accessCode: code, staffName: name, desk: localStorage.getItem(KEY_DESK) });
    } catch (err) {
      if (!(err instanceof ApiError) || !["desk_not_found", "desk_archived", "desk_not_allowed"].includes(err.code)) throw err;
      localStorage.removeItem(KEY_DESK);
      grant = await this.api.createSession({ accessCode: code, staffName: name });
      notice = `${explainApiError(err).replace(/ Choose another one\.$/, "")} You are now at ${grant.desk?.name ?? "the default desk"}.`;
    }
    localStorage.setItem(KEY_CODE, code);
    localStorage.setItem(KEY_NAME, name);
    await this.enter(grant);
    if (notice) this.lists.showNotice(notice);
  }

  /** Show the inbox of a session's desk; a different desk than the one shown starts from nothing. */
  async enter(grant) {
    const store = this.store;
    if (store.session && store.session.webAppId !== grant.webAppId) this.reset();
    this.save(grant);
    localStorage.setItem(KEY_DESK, grant.webAppId);
    store.cursor = localStorage.getItem(cursorKey(grant.webAppId));
    this.showApp();
    this.scheduleRenewal();
    this.desks.start();
    await this.lists.refresh().catch((err) => this.lists.showNotice(explainApiError(err)));
    this.events.start();
    this.onEnter();
  }

  /** Open the same person's session at another desk, then end the one at this desk. */
  async switchDesk(deskId) {
    const old = this.store.session;
    if (!old || deskId === old.webAppId) return;
    const grant = await this.api.createSession({
      accessCode: localStorage.getItem(KEY_CODE),
      staffName: old.staff?.name ?? localStorage.getItem(KEY_NAME),
      desk: deskId,
    });
    await this.enter(grant);
    this.api.deleteSession(old.token).catch(() => {});
  }

  save(s) {
    const store = this.store;
    store.session = s;
    this.api.token = s.token;
    localStorage.setItem(
      KEY_SESSION,
      JSON.stringify({ webAppId: s.webAppId, desk: s.desk, staff: s.staff, token: s.token, expiresAt: s.expiresAt }),
    );
  }

  scheduleRenewal() {
    clearTimeout(this.renewTimer);
    const s = this.store.session;
    if (!s) return;
    const left = ts(s.expiresAt) - Date.now();
    if (!s.expiresAt || Number.isNaN(left)) return;
    const lead = Math.min(5 * 60_000, Math.max(10_000, left * 0.2));
    this.renewTimer = setTimeout(() => this.renew(), Math.max(1000, left - lead));
  }

  /** Renew now if the token is about to expire (timers sleep in background tabs). */
  renewIfDue() {
    const s = this.store.session;
    if (s && ts(s.expiresAt) - Date.now() < 60_000) this.renew();
  }

  async renew() {
    const s = this.store.session;
    if (!s) return;
    try {
      await this.adopt(await this.api.renewSession(s.token));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        await this.recover(err.code);
      } else {
        clearTimeout(this.renewTimer);
        this.renewTimer = setTimeout(() => this.renew(), 30_000);
      }
    }
  }

  /** A fresh grant for the desk shown keeps what is on screen; one for another desk starts over. */
  async adopt(fresh) {
    const store = this.store;
    if (!store.session) return;
    if (fresh.webAppId !== store.session.webAppId) {
      await this.enter(fresh);
      return;
    }
    this.save({ ...store.session, ...fresh, mqtt: store.session.mqtt });
    if (fresh.mqtt) this.events.updateCredentials(fresh.mqtt);
    this.scheduleRenewal();
  }

  /**
   * The server or the broker refused our token. code is the API's reason, or
   * null when the broker refused (then the API is asked). Returns true when
   * there is a new token to retry with.
   */
  recover(code = null) {
    if (this.recovering) return this.recovering;
    this.recovering = this.recoverOnce(code).finally(() => {
      setTimeout(() => { this.recovering = null; }, 0);
    });
    return this.recovering;
  }

  async recoverOnce(code) {
    const s = this.store.session;
    if (!s) return false;
    // Another tab may have moved on already (renewed, signed in again, switched desk).
    const stored = readJSON(KEY_SESSION);
    const tokens = [stored?.token !== s.token ? stored?.token : null, code === null ? s.token : null];
    for (const token of tokens.filter(Boolean)) {
      try {
        await this.adopt(await this.api.renewSession(token));
        return true;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401) return false;
        code = err.code;
      }
    }
    if (SESSION_OVER.has(code)) {
      this.endedLocally(code);
      return false;
    }
    // The token expired or is not valid any more: sign in again as the same person at the same desk.
    const accessCode = localStorage.getItem(KEY_CODE);
    try {
      await this.adopt(await this.api.createSession({ accessCode, staffName: s.staff?.name, desk: s.webAppId }));
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === "invalid_access_code") {
        localStorage.removeItem(KEY_CODE);
        $("access-code").value = "";
        this.signOutLocally("The access code has changed. Enter the new one.");
      } else if (err instanceof ApiError && SESSION_OVER.has(err.code)) {
        this.endedLocally(err.code);
      }
      return false;
    }
  }

  async signOut() {
    const token = this.store.session?.token;
    localStorage.removeItem(KEY_CODE);
    $("access-code").value = "";
    this.signOutLocally("");
    if (token) await this.api.deleteSession(token).catch(() => {});
  }

  /** The session was ended elsewhere (an operator, an archived desk): ask before signing in again. */
  endedLocally(code) {
    const message = ENDED_TEXT[code] ?? ENDED_TEXT.signed_out;
    if (code === "desk_archived") localStorage.removeItem(KEY_DESK);
    localStorage.setItem(KEY_ENDED, message);
    this.signOutLocally(message);
  }

  signOutLocally(message) {
    const s = this.store.session;
    // Only our own session: another tab may already have stored a newer one.
    if (!s || readJSON(KEY_SESSION)?.token === s.token) localStorage.removeItem(KEY_SESSION);
    this.reset();
    this.store.session = null;
    this.api.token = null;
    this.showSignIn(message);
  }

  reset() {
    clearTimeout(this.renewTimer);
    this.desks.stop();
    this.onReset();
  }

  /** Tabs of one browser share its session: follow a sign-out, a sign-in, a renewal or a change of desk. */
  onStorage(ev) {
    if (ev.key !== KEY_SESSION) return;
    const store = this.store;
    const other = readJSON(KEY_SESSION);
    if (!other?.token) {
      if (store.session) {
        this.signOutLocally(localStorage.getItem(KEY_ENDED) ?? "This browser was signed out in another tab.");
      }
      return;
    }
    const mine = store.session;
    if (!mine || other.webAppId !== mine.webAppId || (other.staff?.id ?? null) !== (mine.staff?.id ?? null)) {
      // Signed in, as someone else, or at another desk, in another tab: this tab follows with its own connection.
      let notice = "";
      if (mine && other.webAppId !== mine.webAppId) notice = `Switched to ${other.desk?.name ?? "another desk"} in another tab.`;
      else if (mine) notice = `Signed in as ${other.staff?.name ?? "someone else"} in another tab.`;
      this.api.renewSession(other.token)
        .then((fresh) => this.enter(fresh))
        .then(() => { if (notice) this.lists.showNotice(notice); })
        .catch(() => {});
    } else if (other.token !== store.session.token && ts(other.expiresAt) > ts(store.session.expiresAt)) {
      store.session = { ...store.session, token: other.token, expiresAt: other.expiresAt };
      this.api.token = other.token;
      this.scheduleRenewal();
    }
  }

  /** focusOn: which field has the problem ("code" or "name"); by default the first empty one. */
  showSignIn(message = "", focusOn = null) {
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message;
    const code = $("access-code");
    const name = $("staff-name-input");
    // What was typed stays (to correct it); otherwise what this browser remembers.
    code.value = code.value || (localStorage.getItem(KEY_CODE) ?? "");
    name.value = name.value || (localStorage.getItem(KEY_NAME) ?? "");
    const target = focusOn === "name" || (!focusOn && code.value && !name.value) ? name : code;
    code.setAttribute("aria-invalid", message && target === code ? "true" : "false");
    name.setAttribute("aria-invalid", message && target === name ? "true" : "false");
    target.focus();
    document.title = APP_TITLE;
  }

  showApp() {
    const s = this.store.session;
    $("signin").hidden = true;
    $("app").hidden = false;
    const desk = s.desk ?? { id: s.webAppId, name: s.webAppId, alias: s.alias };
    const alias = `#${String(desk.alias ?? s.alias ?? "").replace(/^#/, "")}`;
    $("desk-name").textContent = desk.name;
    $("desk-alias").textContent = alias;
    $("desk-hint").textContent = `patients start a reply with ${alias} to reach you`;
    $("staff-name").textContent = s.staff?.name ?? "";
    updateNotifyButton();
    updateTitle(this.store);
  }
}
