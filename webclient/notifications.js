// The tab title's unread count, desktop notifications, and the button that asks for them.
import { displayName } from "./contacts.js";
import { $ } from "./render.js";

export const APP_TITLE = "SMS Relay";

export function updateTitle(store) {
  const n = store.totalUnread();
  document.title = document.hidden && n > 0 ? `(${n}) ${APP_TITLE}` : APP_TITLE;
}

/** Tell the desk a text came in; onClick runs when the notification is clicked. */
export function notify(store, phone, msg, onClick) {
  updateTitle(store);
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(`Text from ${displayName(store, phone)}`, {
      body: (msg.displayBody ?? msg.body ?? "").slice(0, 140) || "[image]",
      tag: msg.sid,
    });
    n.onclick = () => {
      window.focus();
      onClick();
      n.close();
    };
  } catch {
    /* some browsers only allow notifications from a service worker */
  }
}

export function updateNotifyButton() {
  const btn = $("notify-btn");
  btn.hidden = !("Notification" in window) || Notification.permission !== "default";
}

export function wireNotifyButton() {
  $("notify-btn").addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      updateNotifyButton();
    }
  });
}
