// Wiring: builds the store, the sidebar, the conversation pane, the composers,
// the desks, the transfer dialog, live events, and the session, connects them,
// and starts.
import { Api } from "./api.js";
import { Composer, NewMessageForm } from "./compose.js";
import { ContactBook, ContactEditor } from "./contacts.js";
import { ConversationPane } from "./conversation.js";
import { Desks } from "./desks.js";
import { RemindersView } from "./reminders.js";
import { ScheduledMessages } from "./scheduled.js";
import { ConversationSearch } from "./search.js";
import { LiveEvents } from "./events.js";
import { DeepLinks } from "./links.js";
import { ConversationLists } from "./lists.js";
import { updateTitle, wireNotifyButton } from "./notifications.js";
import { $, refreshRelativeTimes } from "./render.js";
import { Session } from "./session.js";
import { Store } from "./state.js";
import { SavedTemplates } from "./templates.js";
import { TransferDialog } from "./transfer.js";

const api = new Api("/api");
const store = new Store();

const open = (phone) => {
  reminders.hide();
  return pane.open(phone);
};
const revealSent = (phone, sid) => pane.revealSent(phone, sid);

const book = new ContactBook({ api, store });
const contactEditor = new ContactEditor({ store, book });
const lists = new ConversationLists({ api, store, book, onOpen: open });
const scheduled = new ScheduledMessages({ api, store });
const search = new ConversationSearch({ api, store, onOpen: open, onClaim: (phone) => lists.claim(phone) });
const composer = new Composer({ api, store, onSent: revealSent, onScheduled: (item) => scheduled.upsert(item) });
const pane = new ConversationPane({ api, store, lists, composer, contactEditor, scheduled });
const reminders = new RemindersView({ api, store, onOpen: open });
const templates = new SavedTemplates({ api, store });
const links = new DeepLinks({ store, pane, lists });
pane.onNavigate = (phone) => (phone ? links.opened(phone) : links.closed());
const newMessage = new NewMessageForm({ api, store, book, onSent: revealSent, onOpen: open });
const desks = new Desks({
  api,
  store,
  onSwitch: (deskId) => session.switchDesk(deskId),
  showNotice: (text) => lists.showNotice(text),
});
new TransferDialog({ api, store, desks });
const events = new LiveEvents({
  api,
  store,
  lists,
  pane,
  book,
  onScheduled: (item) => scheduled.upsert(item),
  onBatch: (p) => reminders.onBatch(p),
  onTemplate: (p) => templates.onEvent(p),
  onReminder: () => {
    if (reminders.visible) reminders.loadBoardSoon();
  },
  onSearchable: () => search.refreshSoon(),
  onAuthError: () => session.recover(),
});
const session = new Session({
  api,
  store,
  lists,
  events,
  desks,
  onEnter: () => {
    scheduled.load().catch(() => {});
    templates.load().catch(() => {});
    links.follow();
  },
  onReset: () => {
    events.stop();
    links.forget();
    for (const id of ["new-dialog", "transfer-dialog"]) if ($(id).open) $(id).close();
    store.clear();
    search.reset();
    composer.reset();
    scheduled.render();
    reminders.reset();
    templates.render();
    pane.reset();
    lists.render();
    pane.close();
  },
});

store.onShow = (msg) => pane.showMessage(msg);
store.onChange = (msg) => pane.updateMessage(msg);
store.onLists = () => {
  lists.renderSoon();
  pane.showDone();
};
store.onContact = (phone) => {
  lists.renderSoon();
  if (store.current && (phone === "*" || phone === store.current)) contactEditor.show(store.current);
};
store.onOptOut = (phone) => {
  if (store.current === phone) pane.showOptOut();
};
store.onTemplates = () => {
  templates.render();
  composer.quick.render();
  reminders.renderTemplates();
};
store.onOwner = (phone) => {
  if (store.current === phone) pane.showOwner();
};

wireNotifyButton();
$("new-message-btn").addEventListener("click", () => newMessage.open());

// tab visibility, clocks
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    pane.markOpenRead();
    events.nudge();
    session.renewIfDue();
  }
  updateTitle(store);
});
setInterval(() => refreshRelativeTimes($("sidebar")), 30_000);

session.start();
