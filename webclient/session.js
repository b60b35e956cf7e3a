// The desk's session: the access code and session in localStorage, signing in
// and out, renewing the token before it expires, getting a new one when it is
// refused, following sign-outs and renewals in other tabs, and the two screens
// (sign-in, inbox) that follow from it.
import { ApiError, explainApiError } from "./api.js";
import { APP_TITLE, updateNotifyButton, updateTitle } from "./notifications.js";
import { $ } from "./render.js";
import { ts } from "./state.js";

const KEY_CODE = "smsrelay.accessCode";
const KEY_SESSION = "smsrelay.session";
/** Where the catch-up cursor of a desk is kept. */
export const cursorKey = (id) => `smsrelay.cursor.${id}`;

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

export class Session {
  /**
   * lists: the sidebar (loaded after sign-in); events: the live connection;
   * onReset(): forget everything shown (after sign-out or a change of desk).
   */
  constructor({ api, store, lists, events, onReset }) {
    this.api = api;
    this.store = store;
    this.lists = lists;
    this.events = events;
    this.onReset = onReset;
    this.renewTimer = null;
    this.reauthPromise = null;

    api.onUnauthorized = () => (store.session ? this.reauthenticate() : Promise.resolve(false));

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
        await this.signIn(code);
      } catch (err) {
        this.showSignIn(explainApiError(err));
      } finally {
        btn.disabled = false;
      }
    });
    $("signout-btn").addEventListener("click", () => this.signOut());
    window.addEventListener("storage", (ev) => this.onStorage(ev));
  }

  /** On page load: sign in with the stored (or linked) code, or ask for one. */
  async start() {
    takeCodeFromUrl();
    const code = localStorage.getItem(KEY_CODE);
    if (!code) {
      this.showSignIn();
      return;
    }
    try {
      await this.signIn(code);
    } catch (err) {
      if (err instanceof ApiError && err.code === "invalid_access_code") localStorage.removeItem(KEY_CODE);
      this.showSignIn(explainApiError(err));
    }
  }

  save(s) {
    this.store.session = s;
    this.api.token = s.token;
    localStorage.setItem(
      KEY_SESSION,
      JSON.stringify({ webAppId: s.webAppId, alias: s.alias, token: s.token, expiresAt: s.expiresAt }),
    );
  }

  async create(code) {
    const prev = readJSON(KEY_SESSION);
    try {
      return await this.api.createSession({ accessCode: code, webAppId: prev?.webAppId, token: prev?.token });
    } catch (err) {
      // A stale identity must not lock the desk out: try once more as a new desk.
      if (prev && err instanceof ApiError && err.status >= 400 && err.status < 500 && err.code !== "invalid_access_code") {
        localStorage.removeItem(KEY_SESSION);
        return this.api.createSession({ accessCode: code });
      }
      throw err;
    }
  }

  async signIn(code) {
    const store = this.store;
    const s = await this.create(code);
    localStorage.setItem(KEY_CODE, code);
    if (store.session && store.session.webAppId !== s.webAppId) this.reset();
    this.save(s);
    store.cursor = localStorage.getItem(cursorKey(s.webAppId));
    this.showApp();
    this.scheduleRenewal();
    await this.lists.refresh().catch((err) => this.lists.showNotice(explainApiError(err)));
    this.events.start();
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
      const code = localStorage.getItem(KEY_CODE);
      const fresh = await this.api.renewSession(code ? { accessCode: code, webAppId: s.webAppId, token: s.token } : {});
      this.adoptRenewed(fresh);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        if (!(await this.reauthenticate())) return;
      } else {
        clearTimeout(this.renewTimer);
        this.renewTimer = setTimeout(() => this.renew(), 30_000);
      }
    }
  }

  adoptRenewed(fresh) {
    const store = this.store;
    if (!store.session) return;
    if (fresh.webAppId && fresh.webAppId !== store.session.webAppId) {
      // The server gave us a different desk: start over cleanly.
      this.reset();
      this.save(fresh);
      this.showApp();
      this.scheduleRenewal();
      this.lists.refresh().catch(() => {});
      this.events.start();
      return;
    }
    this.save({ ...store.session, ...fresh, mqtt: store.session.mqtt });
    if (fresh.mqtt) this.events.updateCredentials(fresh.mqtt);
    this.scheduleRenewal();
  }

  /** The token was refused: get a new one with the stored code (same desk). */
  reauthenticate() {
    if (this.reauthPromise) return this.reauthPromise;
    this.reauthPromise = (async () => {
      const code = localStorage.getItem(KEY_CODE);
      const s = this.store.session;
      if (!code || !s) {
        this.signOutLocally("Your session ended. Sign in again.");
        return false;
      }
      try {
        const fresh = await this.api.createSession({ accessCode: code, webAppId: s.webAppId, token: s.token });
        this.adoptRenewed(fresh);
        return true;
      } catch (err) {
        if (err instanceof ApiError && err.code === "invalid_access_code") {
          localStorage.removeItem(KEY_CODE);
          this.signOutLocally("The access code has changed. Enter the new one.");
        }
        return false;
      } finally {
        setTimeout(() => { this.reauthPromise = null; }, 0);
      }
    })();
    return this.reauthPromise;
  }

  async signOut() {
    try {
      if (this.store.session) await this.api.deleteSession();
    } catch {
      /* signing out locally is what matters */
    }
    localStorage.removeItem(KEY_CODE);
    this.signOutLocally("");
  }

  signOutLocally(message) {
    const id = this.store.session?.webAppId;
    localStorage.removeItem(KEY_SESSION);
    if (id) localStorage.removeItem(cursorKey(id));
    this.reset();
    this.store.session = null;
    this.api.token = null;
    this.showSignIn(message);
  }

  reset() {
    clearTimeout(this.renewTimer);
    this.onReset();
  }

  /** Another tab signed this desk out, or renewed its token. */
  onStorage(ev) {
    const store = this.store;
    if (ev.key === KEY_SESSION && ev.newValue === null && store.session) {
      this.signOutLocally("This desk was signed out in another tab.");
    } else if (ev.key === KEY_SESSION && ev.newValue && store.session) {
      const other = readJSON(KEY_SESSION);
      if (other?.webAppId === store.session.webAppId && ts(other.expiresAt) > ts(store.session.expiresAt)) {
        store.session = { ...store.session, token: other.token, expiresAt: other.expiresAt };
        this.api.token = other.token;
        this.scheduleRenewal();
      }
    }
  }

  showSignIn(message = "") {
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message;
    const input = $("access-code");
    input.value = localStorage.getItem(KEY_CODE) ?? "";
    input.setAttribute("aria-invalid", message ? "true" : "false");
    input.focus();
    document.title = APP_TITLE;
  }

  showApp() {
    $("signin").hidden = true;
    $("app").hidden = false;
    const alias = this.store.session.alias ?? "";
    $("desk-alias").textContent = alias;
    $("desk-hint").textContent = alias ? `patients can start a reply with #${alias.replace(/^#/, "")} to reach you` : "";
    updateNotifyButton();
    updateTitle(this.store);
  }
}
