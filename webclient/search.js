// The search box above the lists: names, numbers and message text, answered by
// GET /api/conversations?q=. While it holds a query the results replace the
// lists; the matched words are <mark> elements built from text nodes, never HTML.
import { explainApiError } from "./api.js";
import { formatPhone } from "./phone.js";
import { $, el, relativeTime } from "./render.js";

const DEBOUNCE_MS = 200;
const REFRESH_MS = 700; // results asked again at most this often while messages and names change

/** `text` with the [start, end) ranges (UTF-16 offsets, as JavaScript indexes strings) in <mark>. */
export function highlighted(text, marks) {
  const parts = [];
  let at = 0;
  for (const [start, end] of [...marks].sort((a, b) => a[0] - b[0])) {
    if (start < at || end > text.length || end <= start) continue;
    if (start > at) parts.push(document.createTextNode(text.slice(at, start)));
    parts.push(el("mark", { text: text.slice(start, end) }));
    at = end;
  }
  if (at < text.length) parts.push(document.createTextNode(text.slice(at)));
  return parts;
}

export class ConversationSearch {
  /** onOpen(phone) opens a conversation; onClaim(phone) claims an unrouted one. */
  constructor({ api, store, onOpen, onClaim }) {
    this.api = api;
    this.store = store;
    this.onOpen = onOpen;
    this.onClaim = onClaim;
    this.timer = null;
    this.refreshTimer = null;
    this.asked = 0; // the latest request; older answers are dropped
    this.query = "";
    const input = $("search-input");
    input.addEventListener("input", () => this.schedule());
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && input.value) {
        e.preventDefault();
        this.clear();
      }
    });
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
    document.addEventListener("keydown", (e) => this.slash(e));
  }

  /** "/" anywhere but in a field or an open dialog puts the cursor in the search box. */
  slash(e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey || $("app").hidden) return;
    const target = e.target;
    const typing = target instanceof HTMLElement && (target.isContentEditable || target.closest("input, textarea, select"));
    if (typing || document.querySelector("dialog[open]")) return;
    e.preventDefault();
    $("search-input").focus();
    $("search-input").select();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.run(), DEBOUNCE_MS);
  }

  /** A message or a name changed while results are shown: ask again, without "Searching…", so they stay true. */
  refreshSoon() {
    if (!this.query || this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      if (this.query) this.run({ quiet: true });
    }, REFRESH_MS);
  }

  clear() {
    $("search-input").value = "";
    this.run();
  }

  /** Forget the query (signing out, switching desk). */
  reset() {
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    $("search-input").value = "";
    this.asked += 1;
    this.show("");
  }

  async run({ quiet = false } = {}) {
    clearTimeout(this.timer);
    const query = $("search-input").value.trim();
    const asked = ++this.asked;
    if (!query) {
      this.show("");
      return;
    }
    if (!quiet) this.show(query, null, "Searching…");
    try {
      const found = await this.api.request("GET", `/conversations?q=${encodeURIComponent(query)}`);
      if (asked === this.asked) this.show(query, found?.conversations ?? []);
    } catch (err) {
      if (asked === this.asked) this.show(query, null, explainApiError(err));
    }
  }

  show(query, results = null, status = "") {
    this.query = query;
    const sidebar = $("sidebar");
    if (!query) {
      delete sidebar.dataset.searching;
      $("search-section").hidden = true;
      $("search-list").replaceChildren();
      $("search-status").textContent = "";
      return;
    }
    sidebar.dataset.searching = "";
    $("search-section").hidden = false;
    if (results === null) {
      $("search-status").textContent = status;
      return;
    }
    const n = results.length;
    $("search-status").textContent =
      n === 0 ? `Nothing matches “${query}”.` : `${n === 1 ? "1 conversation" : `${n} conversations`} found${n >= 50 ? " (the best 50)" : ""}.`;
    $("search-list").replaceChildren(...results.map((item) => this.row(item)));
  }

  row(item) {
    const name = item.contact?.name ?? null;
    const match = item.match ?? { in: "message", text: item.lastMessage?.body ?? "", marks: [] };
    const shownName = match.in === "name" ? highlighted(match.text, match.marks) : [name ?? formatPhone(item.phone)];
    const who = el("span", { class: "conv-who-line" },
      el("span", { class: "conv-phone conv-name" }, ...shownName),
      name ? el("span", { class: "conv-number", text: formatPhone(item.phone) }) : null,
    );
    const at = match.at ?? item.lastAt;
    const top = el("span", { class: "conv-top" }, who,
      el("time", { class: "conv-time", dateTime: at ?? "", "data-relative": "", text: relativeTime(at) }));
    const line = el("span", { class: "conv-snippet full search-match" });
    if (match.in === "message") {
      line.append(el("span", { class: "visually-hidden", text: "Message: " }), ...highlighted(match.text, match.marks));
    } else if (match.in === "number") {
      line.append(el("span", { class: "search-kind", text: "Number " }), ...highlighted(match.text, match.marks));
    } else {
      line.textContent = (item.lastMessage?.body ?? "").replace(/\s+/g, " ").trim();
    }
    const bottom = el("span", { class: "conv-bottom" }, line);
    if (item.unrouted) {
      return el("li", { class: "conv-item unrouted search-item", dataset: { phone: item.phone } },
        el("div", { class: "conv-static" }, top, bottom),
        el("button", {
          type: "button",
          class: "claim secondary",
          "aria-label": `Claim conversation with ${name ?? formatPhone(item.phone)}`,
          onclick: () => this.onClaim(item.phone),
          text: "Claim",
        }),
      );
    }
    const open = el("button", {
      type: "button",
      class: "conv-open",
      "aria-current": item.phone === this.store.current ? "true" : null,
      onclick: () => this.onOpen(item.phone),
    }, top, bottom);
    return el("li", { class: "conv-item search-item", dataset: { phone: item.phone } }, open);
  }
}
