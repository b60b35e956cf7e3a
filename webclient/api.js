// HTTP API client. Every error comes back as ApiError with the contract's
// code/message (plus twilioCode, retryAfter and the whole error object when present).

export class ApiError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.twilioCode = extra.twilioCode ?? null;
    this.retryAfter = extra.retryAfter ?? null;
    this.details = extra.details ?? {};
  }
}

/** The codes of a 401 that mean the session is over, not that the token needs replacing. */
export const SESSION_OVER = new Set(["signed_out", "desk_archived"]);

const NETWORK_MESSAGE = "Could not reach the server. Check the connection and try again.";

export class Api {
  constructor(base = "/api") {
    this.base = base;
    this.token = null;
    /** called with the ApiError of a 401 for a Bearer request; returns true (new token) to retry once */
    this.onUnauthorized = null;
  }

  async request(method, path, { body, form, headers = {}, auth = true, raw = false, retry = true } = {}) {
    const h = { Accept: "application/json", ...headers };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (auth && this.token) h.Authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: h,
        body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network_error", NETWORK_MESSAGE);
    }
    if (!res.ok) {
      const err = await toError(res);
      if (res.status === 401 && auth && retry && this.onUnauthorized && (await this.onUnauthorized(err))) {
        return this.request(method, path, { body, form, headers, auth, raw, retry: false });
      }
      throw err;
    }
    if (raw) return res;
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  // --- session and desks -----------------------------------------------
  /** A new staff session: the access code, who signs in, and the desk (none: the default desk). */
  createSession({ accessCode, staffName, desk }) {
    const body = { staffName };
    if (accessCode) body.accessCode = accessCode;
    if (desk) body.desk = desk;
    return this.request("POST", "/session", { body, auth: false });
  }
  /** The same session (desk, staff) with a fresh token and broker credentials. */
  renewSession(token = this.token) {
    return this.request("POST", "/session", { auth: false, headers: bearer(token) });
  }
  /** Ends one session (this browser's by default); the desk's other browsers carry on. */
  deleteSession(token = this.token) {
    return this.request("DELETE", "/session", { auth: false, headers: bearer(token) });
  }
  desks() {
    return this.request("GET", "/desks");
  }
  presence() {
    return this.request("POST", "/presence");
  }

  // --- messages --------------------------------------------------------
  /** sendAt (an ISO time with offset): schedule it instead (202, a Scheduled item). */
  /** mediaIds: pictures from uploadMedia (the body may then be empty). */
  sendSms({ to, body, confirm = false, mediaUrl = [], mediaIds = [], takeOver = false, sendAt = null }, idempotencyKey) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    const payload = { to, body, confirm, mediaUrl, takeOver };
    if (mediaIds.length) payload.mediaIds = mediaIds;
    if (sendAt) payload.sendAt = sendAt;
    return this.request("POST", "/send_sms", { body: payload, headers });
  }
  transfer(phone, desk, note) {
    const body = note ? { desk, note } : { desk };
    return this.request("POST", `/conversations/${encodeURIComponent(phone)}/transfer`, { body });
  }
  conversations() {
    return this.request("GET", "/conversations");
  }
  unrouted() {
    return this.request("GET", "/unrouted");
  }
  messages(phone, { before = null, limit = 30 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before != null) q.set("before", String(before));
    return this.request("GET", `/conversations/${encodeURIComponent(phone)}/messages?${q}`);
  }
  /** done: true marks it done on this desk's list, false opens it again. */
  setDone(phone, done) {
    return this.request("POST", `/conversations/${encodeURIComponent(phone)}/${done ? "done" : "reopen"}`);
  }
  addNote(phone, body) {
    return this.request("POST", `/conversations/${encodeURIComponent(phone)}/notes`, { body: { body } });
  }
  markRead(phone) {
    return this.request("POST", `/conversations/${encodeURIComponent(phone)}/read`);
  }
  claim(phone) {
    return this.request("POST", `/conversations/${encodeURIComponent(phone)}/claim`);
  }
  events(after) {
    const q = after != null && after !== "" ? `?after=${encodeURIComponent(after)}` : "";
    return this.request("GET", `/messages${q}`);
  }
  // --- contacts ----------------------------------------------------------
  contacts(q = "") {
    return this.request("GET", `/contacts?${new URLSearchParams({ q })}`);
  }
  putContact(phone, { name, note }) {
    return this.request("PUT", `/contacts/${encodeURIComponent(phone)}`, { body: { name, note } });
  }
  deleteContact(phone) {
    return this.request("DELETE", `/contacts/${encodeURIComponent(phone)}`);
  }

  // --- scheduled messages and reminders ----------------------------------
  scheduled() {
    return this.request("GET", "/scheduled");
  }
  cancelScheduled(id) {
    return this.request("DELETE", `/scheduled/${encodeURIComponent(id)}`);
  }
  editScheduled(id, change) {
    return this.request("PATCH", `/scheduled/${encodeURIComponent(id)}`, { body: change });
  }
  setReminderState(id, state, note) {
    const body = note ? { state, note } : { state };
    return this.request("PATCH", `/reminders/${encodeURIComponent(id)}`, { body });
  }
  /** The list of appointments: a dry run (preview) or the real thing (scheduled as reminders). */
  importReminders({ file, template, sendDaysBefore, sendTime }, dryRun) {
    const form = new FormData();
    form.append("file", file);
    form.append("template", template);
    form.append("sendDaysBefore", String(sendDaysBefore));
    form.append("sendTime", sendTime);
    return this.request("POST", `/reminders/import${dryRun ? "?dryRun=true" : ""}`, { form });
  }
  batch(id) {
    return this.request("GET", `/reminders/batches/${encodeURIComponent(id)}`);
  }
  board(date) {
    return this.request("GET", `/reminders?${new URLSearchParams({ date })}`);
  }
  async exportBoard(date) {
    const res = await this.request("GET", `/reminders/export?${new URLSearchParams({ date })}`, {
      raw: true, headers: { Accept: "text/csv" },
    });
    return res.blob();
  }
  remindAgain(date, template) {
    const body = template ? { date, template } : { date };
    return this.request("POST", "/reminders/remind-again", { body });
  }

  // --- templates ---------------------------------------------------------
  templates() {
    return this.request("GET", "/templates");
  }
  putTemplate(id, { name, body }) {
    return this.request("PUT", `/templates/${encodeURIComponent(id)}`, { body: { name, body } });
  }
  deleteTemplate(id) {
    return this.request("DELETE", `/templates/${encodeURIComponent(id)}`);
  }

  /** A picture to send: its bytes as the body; the server reads the type from them (201 {id, url, contentType, size}). */
  uploadMedia(file) {
    return this.request("POST", "/media", { form: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
  }

  async media(url) {
    // url is "/api/media/<sid>/<n>" as given by the server
    const path = url.startsWith(this.base) ? url.slice(this.base.length) : url;
    const res = await this.request("GET", path, { raw: true, headers: { Accept: "image/*" } });
    return res.blob();
  }
}

const bearer = (token) => (token ? { Authorization: `Bearer ${token}` } : {});

async function toError(res) {
  let code = `http_${res.status}`;
  let message = `The server answered ${res.status}.`;
  let twilioCode = null;
  let details = {};
  try {
    const data = await res.json();
    if (data && data.error) {
      details = data.error;
      code = data.error.code || code;
      message = data.error.message || message;
      twilioCode = data.error.twilioCode ?? null;
    }
  } catch {
    /* not JSON */
  }
  const ra = res.headers.get("Retry-After");
  const retryAfter = ra && /^\d+$/.test(ra.trim()) ? Number(ra.trim()) : null;
  return new ApiError(res.status, code, message, { twilioCode, retryAfter, details });
}

/** The first sentence of a server message ("This patient's conversation is with Billing."). */
export function firstSentence(text) {
  const m = /^.*?[.!?](?=\s|$)/s.exec(text ?? "");
  return (m ? m[0] : text ?? "").trim();
}

/** A staff-facing sentence for an API error. */
export function explainApiError(err) {
  if (!(err instanceof ApiError)) return "Something went wrong. The message was not sent.";
  switch (err.code) {
    case "invalid_number":
      return "That phone number is not valid. Check it and try again.";
    case "invalid_body":
      return "The message is empty or too long (1600 characters at most).";
    case "country_not_allowed":
      return "Texting numbers in that country is not allowed for this clinic.";
    case "opted_out":
      return "This patient has opted out (replied STOP). They must text START before you can message them.";
    case "rate_limited":
      return err.retryAfter
        ? `Too many messages right now. Try again in ${err.retryAfter} s.`
        : "Too many messages right now. Try again shortly.";
    case "twilio_error": {
      const words = err.twilioCode ? twilioErrorText(err.twilioCode) : null;
      return words
        ? `Twilio refused the message: ${words} (${err.twilioCode}).`
        : `Twilio refused the message: ${err.message}`;
    }
    case "unavailable":
      return "The SMS service is temporarily unavailable. Your text is kept; try again in a moment.";
    case "network_error":
      return NETWORK_MESSAGE;
    case "invalid_access_code":
      return "That access code is not valid.";
    case "invalid_staff_name":
      return err.message || "Enter your name (1 to 40 characters).";
    case "already_claimed":
      return "Another desk has already claimed this conversation.";
    case "owned_by_other_desk":
      return firstSentence(err.message) || "This patient's conversation is with another desk.";
    case "not_owner":
      return "This conversation is no longer with your desk, so you cannot transfer it.";
    case "desk_not_found":
      return "That desk does not exist (any more). Choose another one.";
    case "desk_archived":
      return "That desk has been archived. Choose another one.";
    case "invalid_note":
      return err.message || "The note is too long (500 characters at most).";
    case "signed_out":
      return "Your session has ended. Sign in again.";
    case "invalid_name":
      return err.message || "The name must be 1 to 80 characters, with no control characters.";
    case "invalid_send_at":
      return err.message || "Pick a time in the future, at most 35 days ahead.";
    case "quiet_hours":
      return firstSentence(err.message) || "It is quiet hours: texts wait until they end.";
    case "already_sent":
      return "That message is already on its way; it can no longer be changed.";
    case "not_scheduled":
      return "That message is no longer waiting to be sent.";
    case "scheduled_not_found":
      return "That scheduled message no longer exists.";
    case "reminder_not_found":
      return "That reminder could not be found for this desk.";
    case "invalid_csv":
      return err.message || "The file is not a CSV with the header phone,name,date,time.";
    case "too_large":
    case "payload_too_large":
      return "The file is too large (1 MiB at most).";
    case "too_many_rows":
      return "The file has too many rows (5,000 at most).";
    case "invalid_template":
      return err.message || "The template must be 1 to 1600 characters.";
    default:
      return err.message || "Something went wrong.";
  }
}

const TWILIO_ERRORS = {
  30001: "Queue overflow",
  30002: "Account suspended",
  30003: "Unreachable destination handset",
  30004: "Message blocked",
  30005: "Unknown destination handset",
  30006: "Landline or unreachable carrier",
  30007: "Message filtered (carrier)",
  30008: "Unknown error",
  30034: "Sender number not registered (A2P 10DLC)",
  21211: "Invalid phone number",
  21408: "Sending to this region is not enabled",
  21610: "The recipient has opted out (STOP)",
  21614: "Not a mobile number",
};

export function twilioErrorText(code) {
  if (code == null || code === "") return null;
  return TWILIO_ERRORS[Number(code)] ?? null;
}
