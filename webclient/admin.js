// The operator page: the desks (add, rename, change the patient code,
// archive) and the signed-in sessions (end one, or all of one person's).
// Guarded by the operator code, sent as X-Admin-Code and kept in this tab's
// sessionStorage only; never the staff access code.
import { Api, ApiError } from "./api.js";
import { $, el } from "./render.js";

const KEY_CODE = "smsrelay.adminCode";

class AdminApi extends Api {
  call(method, path, body) {
    const code = sessionStorage.getItem(KEY_CODE) ?? "";
    return this.request(method, `/admin${path}`, { body, auth: false, headers: { "X-Admin-Code": code } });
  }
  desks() {
    return this.call("GET", "/desks");
  }
  addDesk(name, alias) {
    return this.call("POST", "/desks", alias ? { name, alias } : { name });
  }
  changeDesk(id, change) {
    return this.call("PATCH", `/desks/${encodeURIComponent(id)}`, change);
  }
  archiveDesk(id) {
    return this.call("POST", `/desks/${encodeURIComponent(id)}/archive`);
  }
  sessions() {
    return this.call("GET", "/sessions");
  }
  endSession(desk, id) {
    return this.call("DELETE", `/sessions/${encodeURIComponent(desk)}/${encodeURIComponent(id)}`);
  }
  endStaff(staffId) {
    return this.call("DELETE", `/staff/${encodeURIComponent(staffId)}/sessions`);
  }
}

const api = new AdminApi("/api");
const state = { desks: [], sessions: [], editing: null, archiving: null };

/** The API's own words, which name the rule that was broken. */
function explain(err) {
  if (!(err instanceof ApiError)) return "Something went wrong.";
  if (err.code === "network_error") return err.message;
  if (err.code === "rate_limited") {
    return err.retryAfter ? `Too many wrong codes. Try again in ${err.retryAfter} s.` : "Too many wrong codes. Wait a little.";
  }
  return err.message || `The server answered ${err.status}.`;
}

const aliasText = (alias) => (alias ? `#${String(alias).replace(/^#/, "")}` : "");

function when(iso) {
  const t = new Date(iso ?? "");
  return Number.isNaN(t.getTime()) ? "" : t.toLocaleString(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

function notice(text) {
  const box = $("admin-notice");
  box.textContent = text;
  box.hidden = !text;
}

function showError(text) {
  $("admin-error").textContent = text;
}

/** A refused code (or none configured) goes back to the code screen; other errors are shown in words. */
function failed(err) {
  if (err instanceof ApiError && ["invalid_admin_code", "admin_disabled", "rate_limited"].includes(err.code)) {
    sessionStorage.removeItem(KEY_CODE);
    showSignIn(explain(err));
    return;
  }
  showError(explain(err));
}

// ---- screens ---------------------------------------------------------

function showSignIn(message = "") {
  $("admin").hidden = true;
  $("admin-signin").hidden = false;
  $("admin-signin-error").textContent = message;
  $("admin-code").setAttribute("aria-invalid", message ? "true" : "false");
  $("admin-code").focus();
}

async function open() {
  await load();
  if (!sessionStorage.getItem(KEY_CODE)) return;
  $("admin-signin").hidden = true;
  $("admin").hidden = false;
}

async function load() {
  try {
    const [d, s] = await Promise.all([api.desks(), api.sessions()]);
    state.desks = d?.desks ?? [];
    state.sessions = s?.sessions ?? [];
    showError("");
    renderDesks();
    renderSessions();
  } catch (err) {
    failed(err);
  }
}

// ---- desks -------------------------------------------------------------

function renderDesks() {
  const rows = state.desks.map((d) => {
    if (state.editing === d.id) return editRow(d);
    const actions = el("td", { class: "actions" });
    if (state.archiving === d.id) {
      actions.append(
        el("span", { class: "confirm-text", id: `archive-q-${d.id}`, text: `Archive ${d.name}? Its staff are signed out.` }),
        el("button", { type: "button", class: "danger", "data-role": "archive-yes", "aria-describedby": `archive-q-${d.id}`, text: "Archive desk", onclick: () => archive(d) }),
        el("button", { type: "button", class: "secondary", "data-role": "archive-no", text: "Keep it", onclick: () => { state.archiving = null; renderDesks(); focusRow(d.id, "archive"); } }),
      );
    } else if (!d.archived) {
      actions.append(
        el("button", { type: "button", class: "secondary", "data-role": "edit", "aria-label": `Edit ${d.name}`, text: "Edit", onclick: () => { state.editing = d.id; state.archiving = null; renderDesks(); focusRow(d.id, "name"); } }),
        el("button", { type: "button", class: "secondary", "data-role": "archive", "aria-label": `Archive ${d.name}`, text: "Archive…", onclick: () => { state.archiving = d.id; state.editing = null; renderDesks(); focusRow(d.id, "archive-no"); } }),
      );
    }
    return el("tr", { dataset: { desk: d.id }, class: d.archived ? "archived" : null },
      el("th", { scope: "row", text: d.name }),
      el("td", { text: aliasText(d.alias) }),
      el("td", {}, el("code", { text: d.id })),
      el("td", { class: "num", text: String(d.online ?? 0) }),
      el("td", {}, el("span", { class: `state ${d.archived ? "off" : "on"}`, text: d.archived ? "Archived" : "Live" })),
      actions,
    );
  });
  $("desk-rows").replaceChildren(...rows);
}

function editRow(d) {
  const name = el("input", { type: "text", value: d.name, "data-role": "name", "aria-label": `Name of ${d.name}`, autocomplete: "off" });
  const alias = el("input", { type: "text", value: d.alias ?? "", "data-role": "alias", "aria-label": `Patient code of ${d.name}`, autocomplete: "off", class: "short" });
  const error = el("p", { class: "form-error", role: "alert", "data-role": "error" });
  const cancel = () => { state.editing = null; renderDesks(); focusRow(d.id, "edit"); };
  const save = () => saveDesk(d, name.value.trim(), alias.value.trim().replace(/^#/, ""), error);
  const keys = (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); save(); }
    if (ev.key === "Escape") { ev.preventDefault(); cancel(); }
  };
  name.addEventListener("keydown", keys);
  alias.addEventListener("keydown", keys);
  return el("tr", { dataset: { desk: d.id }, class: "editing" },
    el("th", { scope: "row" }, name),
    el("td", {}, alias),
    el("td", {}, el("code", { text: d.id })),
    el("td", { class: "num", text: String(d.online ?? 0) }),
    el("td", {}, el("span", { class: "state on", text: "Live" })),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "primary", "data-role": "save", text: "Save", onclick: save }),
      el("button", { type: "button", class: "secondary", "data-role": "cancel", text: "Cancel", onclick: cancel }),
      error,
    ),
  );
}

function focusRow(id, role) {
  $("desk-rows").querySelector(`tr[data-desk="${CSS.escape(id)}"] [data-role="${role}"]`)?.focus();
}

async function saveDesk(d, name, alias, error) {
  const change = {};
  if (name !== d.name) change.name = name;
  if (alias.toUpperCase() !== String(d.alias ?? "").toUpperCase()) change.alias = alias;
  if (!Object.keys(change).length) {
    state.editing = null;
    renderDesks();
    focusRow(d.id, "edit");
    return;
  }
  try {
    const desk = await api.changeDesk(d.id, change);
    state.editing = null;
    notice(`Saved ${desk.name} (${aliasText(desk.alias)}).`);
    await load();
    focusRow(d.id, "edit");
  } catch (err) {
    if (err instanceof ApiError && ["invalid_admin_code", "admin_disabled"].includes(err.code)) return failed(err);
    error.textContent = explain(err);
  }
}

async function archive(d) {
  try {
    const res = await api.archiveDesk(d.id);
    state.archiving = null;
    const ended = res?.sessionsEnded ?? 0;
    const moved = res?.conversationsUnrouted ?? 0;
    notice(`${d.name} is archived: ${ended} session${ended === 1 ? "" : "s"} ended, ${moved} conversation${moved === 1 ? "" : "s"} sent to New conversations.`);
    await load();
    $("desks-heading").focus();
  } catch (err) {
    state.archiving = null;
    failed(err);
    renderDesks();
  }
}

async function addDesk() {
  const name = $("add-name").value.trim();
  const alias = $("add-alias").value.trim().replace(/^#/, "");
  const error = $("add-error");
  if (!name) {
    error.textContent = "Enter the desk's name.";
    $("add-name").setAttribute("aria-invalid", "true");
    $("add-name").focus();
    return;
  }
  $("add-name").setAttribute("aria-invalid", "false");
  error.textContent = "";
  $("add-submit").disabled = true;
  try {
    const desk = await api.addDesk(name, alias);
    $("add-desk-form").reset();
    notice(`Added ${desk.name} (${aliasText(desk.alias)}, id ${desk.id}).`);
    await load();
    $("add-name").focus();
  } catch (err) {
    if (err instanceof ApiError && ["invalid_admin_code", "admin_disabled"].includes(err.code)) failed(err);
    else error.textContent = explain(err);
  } finally {
    $("add-submit").disabled = false;
  }
}

// ---- sessions ----------------------------------------------------------

function renderSessions() {
  const names = new Map(state.desks.map((d) => [d.id, d.name]));
  const rows = state.sessions.map((s) => {
    const who = s.staff?.name ?? "";
    const desk = names.get(s.desk) ?? s.desk;
    return el("tr", { dataset: { session: s.id, staff: s.staff?.id ?? "" } },
      el("th", { scope: "row", text: who }),
      el("td", { text: desk }),
      el("td", { text: when(s.startedAt) }),
      el("td", { text: when(s.expiresAt) }),
      el("td", { text: s.online ? "Yes" : "No" }),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "secondary", "data-role": "end", "aria-label": `End session of ${who} at ${desk}`, text: "End session", onclick: () => endSession(s, who, desk) }),
        el("button", { type: "button", class: "secondary", "data-role": "end-staff", "aria-label": `End all sessions of this person: ${who}`, text: "End all sessions of this person", onclick: () => endStaff(s, who) }),
      ),
    );
  });
  $("session-rows").replaceChildren(...rows);
  $("sessions-empty").hidden = rows.length > 0;
  $("session-table").hidden = rows.length === 0;
}

async function endSession(s, who, desk) {
  try {
    await api.endSession(s.desk, s.id);
    notice(`Ended ${who}'s session at ${desk}.`);
    await load();
    $("sessions-heading").focus();
  } catch (err) {
    failed(err);
  }
}

async function endStaff(s, who) {
  try {
    const res = await api.endStaff(s.staff?.id ?? "");
    const n = res?.sessionsEnded ?? 0;
    notice(`Ended ${n} session${n === 1 ? "" : "s"} of ${who}.`);
    await load();
    $("sessions-heading").focus();
  } catch (err) {
    failed(err);
  }
}

// ---- wiring ------------------------------------------------------------

$("admin-signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = $("admin-code").value.trim();
  if (!code) {
    showSignIn("Enter the operator code.");
    return;
  }
  sessionStorage.setItem(KEY_CODE, code);
  $("admin-code").value = "";
  $("admin-signin-submit").disabled = true;
  try {
    await open();
  } finally {
    $("admin-signin-submit").disabled = false;
  }
  if (!$("admin").hidden) $("desks-heading").focus();
});
$("add-desk-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  addDesk();
});
$("admin-refresh").addEventListener("click", () => {
  notice("");
  load();
});
$("admin-lock").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_CODE);
  state.desks = [];
  state.sessions = [];
  renderDesks();
  renderSessions();
  showSignIn("");
});

if (sessionStorage.getItem(KEY_CODE)) open();
else showSignIn();
