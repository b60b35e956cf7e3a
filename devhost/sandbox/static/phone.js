// Phone simulator: plays one patient's handset against the sandbox. All outside text goes through textContent.
const SANDBOX = "/sandbox";
const POLL_MS = 1000;
const E164 = /^\+[1-9]\d{6,14}$/;

const ui = {
  pick: document.getElementById("pick"),
  number: document.getElementById("number"),
  known: document.getElementById("known"),
  thread: document.getElementById("thread"),
  empty: document.getElementById("empty"),
  status: document.getElementById("status"),
  compose: document.getElementById("compose"),
  body: document.getElementById("body"),
  send: document.getElementById("send"),
  picture: document.getElementById("picture"),
};

let shownKey = "";

// --- talking to the sandbox --------------------------------------------------------------------

function phoneUrl(number, rest) {
  return `${SANDBOX}/phones/${encodeURIComponent(number)}/${rest}`;
}

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  const data = await response.json().catch(() => null);
  return { ok: response.ok, status: response.status, data };
}

async function loadThread(number) {
  const { ok, data } = await fetchJson(phoneUrl(number, "thread"));
  return ok && Array.isArray(data) ? data : [];
}

async function loadKnownPhones() {
  const { ok, data } = await fetchJson(`${SANDBOX}/phones`);
  return ok && Array.isArray(data) ? data : [];
}

async function sendReply(number, body, image) {
  return fetchJson(phoneUrl(number, "reply"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ body, image }),
  });
}

// --- rendering ---------------------------------------------------------------------------------

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function mediaNode(message, media) {
  if (message.direction === "sent") return element("span", "attachment", "Picture sent");
  // The sandbox serves the pictures it fetched from its own "/sandbox/cdn/..."; other URLs are shown as given.
  if (!/^(https?:\/\/|\/sandbox\/)/.test(media.url)) return element("span", "attachment", `Attachment (${media.contentType})`);
  if (media.contentType.startsWith("image/")) {
    const image = element("img");
    image.src = media.url;
    image.alt = "Picture received";
    return image;
  }
  const link = element("a", "attachment", `Attachment (${media.contentType})`);
  link.href = media.url;
  link.rel = "noopener noreferrer";
  link.target = "_blank";
  return link;
}

function bubble(message) {
  const node = element("div", `bubble ${message.direction === "sent" ? "sent" : "received"}`);
  if (message.body) node.append(document.createTextNode(message.body));
  for (const media of message.media) node.append(mediaNode(message, media));
  const when = new Date(message.dateSent).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const who = message.direction === "sent" ? `to ${message.to}` : `from ${message.from}`;
  node.append(element("span", "meta", `${when} · ${who}`));
  return node;
}

function renderThread(messages) {
  const key = JSON.stringify(messages.map((m) => [m.sid, m.body, m.media.length]));
  if (key === shownKey) return;
  shownKey = key;
  const { thread } = ui;
  const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 48;
  ui.empty.hidden = messages.length > 0;
  thread.replaceChildren(ui.empty, ...messages.map(bubble));
  if (atBottom || messages.length <= 1) thread.scrollTop = thread.scrollHeight;
}

function renderKnown(numbers) {
  const current = ui.number.value.trim();
  const options = [element("option", "", "Choose…")];
  options[0].value = "";
  for (const number of numbers) {
    const option = element("option", "", number);
    option.value = number;
    option.selected = number === current;
    options.push(option);
  }
  ui.known.replaceChildren(...options);
}

function say(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

// --- behaviour ---------------------------------------------------------------------------------

function currentNumber() {
  const number = ui.number.value.trim();
  return E164.test(number) ? number : null;
}

async function refresh() {
  const number = currentNumber();
  try {
    const [messages, known] = await Promise.all([number ? loadThread(number) : [], loadKnownPhones()]);
    renderThread(messages);
    renderKnown(known);
  } catch (error) {
    say(`Sandbox not reachable: ${error}`, true);
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

async function send(image) {
  const number = currentNumber();
  if (!number) {
    say("Enter a phone number in E.164 form, e.g. +14155550101.", true);
    return;
  }
  const body = ui.body.value;
  if (!body.trim() && !image) return;
  ui.send.disabled = ui.picture.disabled = true;
  try {
    const { ok, status, data } = await sendReply(number, body, image);
    if (ok) {
      ui.body.value = "";
      say(`Sent. Webhook answered HTTP ${data.status}.`, data.status >= 400);
    } else {
      say(`Not delivered (${status}): ${data && data.error ? data.error : "unknown error"}`, true);
    }
  } catch (error) {
    say(`Sandbox not reachable: ${error}`, true);
  } finally {
    ui.send.disabled = ui.picture.disabled = false;
    ui.body.focus();
    await refresh();
  }
}

function switchTo(number) {
  ui.number.value = number;
  shownKey = "";
  say("");
  refresh();
}

ui.compose.addEventListener("submit", (event) => {
  event.preventDefault();
  send(false);
});
ui.picture.addEventListener("click", () => send(true));
ui.pick.addEventListener("submit", (event) => {
  event.preventDefault();
  switchTo(ui.number.value.trim());
});
ui.number.addEventListener("change", () => switchTo(ui.number.value.trim()));
ui.known.addEventListener("change", () => {
  if (ui.known.value) switchTo(ui.known.value);
});

const fromQuery = new URLSearchParams(window.location.search).get("number");
if (fromQuery && E164.test(fromQuery)) ui.number.value = fromQuery;
poll();
