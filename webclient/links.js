// Deep links: the open conversation in the address (#/c/+14155550101), so a
// reload, a bookmark or a shared link opens it again for anyone at the desk
// that has it, and Back and Forward move between conversations and the list.
import { $ } from "./render.js";

const PREFIX = "#/c/";
const E164 = /^\+[1-9][0-9]{6,14}$/;

/** The conversation the address points at, or null. */
export function linkedPhone(hash = location.hash) {
  if (!hash.startsWith(PREFIX)) return null;
  let phone;
  try {
    phone = decodeURIComponent(hash.slice(PREFIX.length));
  } catch {
    return null;
  }
  return E164.test(phone) ? phone : null;
}

export class DeepLinks {
  /** pane: the conversation pane; lists: the sidebar, which says when a link is not for this desk. */
  constructor({ store, pane, lists }) {
    this.store = store;
    this.pane = pane;
    this.lists = lists;
    window.addEventListener("popstate", () => this.follow());
  }

  /** Staff opened a conversation: a new history entry for it, so Back returns to what was before. */
  opened(phone) {
    if (linkedPhone() !== phone) history.pushState(null, "", PREFIX + phone);
  }

  /** Staff went back to the list. */
  closed() {
    if (linkedPhone()) history.pushState(null, "", location.pathname + location.search);
  }

  /** Another desk or signed out: the address no longer points at anything here. */
  forget() {
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  }

  /** Open what the address says (after sign-in, and on Back and Forward), if this desk has it. */
  follow() {
    const store = this.store;
    if (!store.session) return;
    const phone = linkedPhone();
    if (!phone) {
      // Only an address with no route is the list: "#pane" (the skip link) is not ours to follow.
      if (store.current && (location.hash === "" || location.hash === "#/")) this.pane.showList();
      return;
    }
    if (phone === store.current && $("layout").dataset.view === "conversation") return;
    if (store.convs.has(phone)) {
      this.pane.open(phone, { fromLink: true });
      return;
    }
    this.forget();
    this.pane.showList();
    const desk = store.session.desk?.name ?? "this desk";
    this.lists.showNotice(`That conversation is not on this desk (${desk}). Ask the desk that has it, or switch desk.`);
  }
}
