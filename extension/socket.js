// The one WebSocket to the server's /ws (CONTRACT §5): authenticate first, ping every 20 s (which also keeps
// the MV3 service worker alive), reconnect with backoff and jitter on 1001, 4000-4499 and network loss, and
// resume with the last `seq` seen. 4500-4999 mean "do not reconnect with this token": the socket reports
// "signed_out" and stays closed.

export const PING_MS = 20000;
const AUTH_TIMEOUT_MS = 15000;
const REPLY_TIMEOUT_MS = 10000;
const BACKOFF_MIN_MS = 500;
// Below the 30 s after which Chrome stops an idle MV3 service worker: a pending setTimeout does not keep the
// worker alive, so a longer wait could end with no worker left to reconnect. The caller's wake(when) (an
// alarm, chrome.alarms in background.js) starts a stopped worker again for the reconnect all the same.
export const BACKOFF_MAX_MS = 20000;

/** Whether a close code (CONTRACT §5) means "reconnect". Anything but 4500-4999 and our own close does. */
export function shouldReconnect(code) {
  return !(code >= 4500 && code <= 4999);
}

/** The wait before attempt `n` (0, 1, 2, …): exponential, capped, with full jitter so that many
 * extensions do not all come back at once after a restart. */
export function backoff(n, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** n);
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

export function wsUrl(server) {
  const url = new URL("/ws", server);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

export class Socket {
  /**
   * server: the Hej CTI base URL; token: the user's token; resume(): the last seq seen (or null);
   * onMessage(msg): every server message that is not a reply; onStatus(status, detail): "connecting",
   * "online" (with auth_ok), "offline" (waiting to reconnect), "signed_out" (with the close code);
   * wake(at): a reconnect is due at this time (ms since the epoch), for an alarm that outlives the worker.
   */
  constructor({ server, token, resume, onMessage, onStatus, wake = () => {} }) {
    Object.assign(this, { server, token, resume, onMessage, onStatus, wake });
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.nextId = 1;
    this.pending = new Map();
    this.timers = {};
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.failPending("stopped");
  }

  get online() {
    return this.ws !== null && this.authed;
  }

  async connect() {
    this.clearTimers();
    this.authed = false;
    this.onStatus("connecting");
    const resume = await this.resume();
    if (this.stopped) return;
    const ws = (this.ws = new WebSocket(wsUrl(this.server)));
    this.timers.auth = setTimeout(() => this.abandon(ws, "no auth_ok in time"), AUTH_TIMEOUT_MS);
    ws.onopen = () => {
      const auth = { type: "auth", token: this.token };
      if (Number.isInteger(resume)) auth.resume = resume;
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (event) => this.receive(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
  }

  receive(ws, data) {
    if (ws !== this.ws) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === "auth_ok") {
      this.authed = true;
      this.attempt = 0;
      clearTimeout(this.timers.auth);
      this.timers.ping = setInterval(() => this.ping(), PING_MS);
      this.onStatus("online", msg);
      return;
    }
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const { resolve, timer } = this.pending.get(msg.id);
      clearTimeout(timer);
      this.pending.delete(msg.id);
      resolve(msg);
      return;
    }
    this.onMessage(msg);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.authed = false;
    this.clearTimers();
    this.failPending("closed");
    if (this.stopped) return;
    if (!shouldReconnect(code)) {
      this.stopped = true;
      this.onStatus("signed_out", { code });
      return;
    }
    const wait = backoff(this.attempt++);
    this.onStatus("offline", { code, retryInMs: wait });
    this.timers.retry = setTimeout(() => this.connect(), wait);
    this.wake(Date.now() + wait);
  }

  /** Reconnect now when a reconnect is waiting (the alarm of wake() went off); nothing otherwise. */
  retryNow() {
    if (this.stopped || this.ws || !this.timers.retry) return;
    this.connect();
  }

  /** Give up on a connection that stopped answering: on a dead TCP link its close can take minutes to be
   * reported, so its handlers go, it counts as closed now, and the reconnect is scheduled at once. */
  abandon(ws, reason) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this.closed(ws, 4000);
    try {
      ws.close(4000, reason);
    } catch {
      // closing a socket that is not open yet may throw; it is gone for us either way
    }
  }

  /** A ping; the one before it still unanswered means the connection is dead: abandon it and reconnect. */
  ping() {
    if (this.pingOutstanding) {
      if (this.ws) this.abandon(this.ws, "no pong");
      return;
    }
    this.pingOutstanding = true;
    this.request({ type: "ping" }).then(() => (this.pingOutstanding = false), () => {});
  }

  /** Send a message with a fresh id; resolves with the reply (`pong`, `result`, `error`, …). */
  request(msg, timeoutMs = REPLY_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!this.online) {
        reject(new Error("offline"));
        return;
      }
      const id = `x${this.nextId++}`;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("timeout"));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  /** Send without waiting for a reply; false when not connected. */
  send(msg) {
    if (!this.online) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  failPending(why) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new Error(why));
    }
    this.pending.clear();
    this.pingOutstanding = false;
  }

  clearTimers() {
    clearTimeout(this.timers.auth);
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.retry);
    this.timers = {};
  }
}
