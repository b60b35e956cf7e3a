// Live updates over MQTT-over-WebSocket (mqtt.js). Emits state changes
// ("connecting" | "connected" | "reconnecting" | "offline") and messages;
// calls onConnect() after every (re)connect + subscribe so the app can catch
// up over HTTP.
import mqtt from "./vendor/mqtt.esm.js";

const BASE_DELAY = 1000;
const MAX_DELAY = 8000;
const OFFLINE_AFTER_MS = 30000;

export class Connection {
  constructor({ onState, onMessage, onConnect, onAuthError }) {
    this.onState = onState;
    this.onMessage = onMessage;
    this.onConnect = onConnect;
    this.onAuthError = onAuthError;
    this.client = null;
    this.state = "offline";
    this.topics = [];
    this.delay = BASE_DELAY;
    this.downSince = null;
    this.offlineTimer = null;
    this.creds = null;
    this._onBrowserOnline = () => this._browserOnline();
    this._onBrowserOffline = () => this._refreshDownState();
  }

  start(mqttInfo) {
    this.stop();
    this.topics = mqttInfo.topics ?? [];
    this.creds = { username: mqttInfo.username, password: mqttInfo.password, clientId: mqttInfo.clientId };
    this.urls = mqttInfo.urls?.length ? mqttInfo.urls : [mqttInfo.url];
    this.urlIndex = 0;
    this.delay = BASE_DELAY;
    this._setState("connecting");
    const client = mqtt.connect(mqttInfo.url, {
      clientId: mqttInfo.clientId,
      username: mqttInfo.username,
      password: mqttInfo.password,
      protocolVersion: 4,
      clean: true,
      resubscribe: false, // we subscribe ourselves on every connect
      keepalive: 60, // background tabs throttle timers to about once a minute
      timerVariant: "native", // the worker variant needs a blob: worker, which the CSP forbids
      connectTimeout: 8000,
      reconnectPeriod: BASE_DELAY,
      reconnectOnConnackError: true,
      transformWsUrl: () => this.urls[this.urlIndex], // a cluster's nodes, in turn
    });
    this.client = client;
    client.on("connect", () => this._connected(client));
    client.on("reconnect", () => {
      // Fresh credentials (renewed token), the next broker URL and the next back-off step.
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      client.options.username = this.creds.username;
      client.options.password = this.creds.password;
      client.options.clientId = this.creds.clientId;
      this.delay = Math.min(MAX_DELAY, Math.round(this.delay * 1.7));
      client.options.reconnectPeriod = this.delay + Math.floor(Math.random() * 300);
      this._down();
    });
    client.on("close", () => this._down());
    client.on("offline", () => this._down());
    client.on("error", (err) => {
      const rc = err && (err.code ?? err.reasonCode);
      if (rc === 4 || rc === 5 || rc === 134 || rc === 135) this.onAuthError?.();
    });
    client.on("message", (topic, payload) => {
      let data;
      try {
        data = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
      this.onMessage(topic, data);
    });
    window.addEventListener("online", this._onBrowserOnline);
    window.addEventListener("offline", this._onBrowserOffline);
  }

  /** After a token renewal: the next (re)connect uses these (on Mosquitto the username is the client id). */
  updateCredentials({ username, password, clientId }) {
    if (!this.creds) return;
    this.creds = { username, password, clientId: clientId ?? this.creds.clientId };
    if (this.client) {
      this.client.options.username = username;
      this.client.options.password = password;
    }
  }

  stop() {
    window.removeEventListener("online", this._onBrowserOnline);
    window.removeEventListener("offline", this._onBrowserOffline);
    clearTimeout(this.offlineTimer);
    if (this.client) {
      const c = this.client;
      this.client = null;
      c.removeAllListeners();
      c.on("error", () => {});
      c.end(true);
    }
    this._setState("offline");
  }

  _connected(client) {
    if (client !== this.client) return;
    this.delay = BASE_DELAY;
    client.options.reconnectPeriod = BASE_DELAY;
    this.downSince = null;
    clearTimeout(this.offlineTimer);
    client.subscribe(this.topics, { qos: 1 }, (err) => {
      if (client !== this.client) return;
      if (err) {
        client.end(true, () => client.reconnect());
        return;
      }
      this._setState("connected");
      this.onConnect?.();
    });
  }

  _down() {
    if (!this.client) return;
    if (this.downSince == null) this.downSince = Date.now();
    this._refreshDownState();
  }

  _refreshDownState() {
    if (!this.client || this.client.connected) return;
    const longDown = this.downSince != null && Date.now() - this.downSince >= OFFLINE_AFTER_MS;
    this._setState(!navigator.onLine || longDown ? "offline" : "reconnecting");
    clearTimeout(this.offlineTimer);
    if (!longDown && this.downSince != null) {
      this.offlineTimer = setTimeout(
        () => this._refreshDownState(),
        OFFLINE_AFTER_MS - (Date.now() - this.downSince) + 50,
      );
    }
  }

  _browserOnline() {
    // Back online: try right away rather than waiting out the back-off.
    const c = this.client;
    if (c && !c.connected) {
      this.delay = BASE_DELAY;
      c.options.reconnectPeriod = BASE_DELAY;
      c.reconnect();
    }
  }

  /** Retry now (e.g. the tab became visible again). */
  nudge() {
    const c = this.client;
    if (c && !c.connected && this.delay > BASE_DELAY * 2) this._browserOnline();
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState?.(state);
  }
}
