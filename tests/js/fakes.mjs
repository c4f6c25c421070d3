// Fakes for the extension's node tests (not a test file itself): the browser's WebSocket, a clock for the
// timers, and the chrome.* APIs the service worker uses, with background.js started against them.

export class FakeWebSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.made.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code) {
    this.closedWith = code; // a dead link: no onclose comes
  }
  serverSays(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

export const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A fake clock for setTimeout and setInterval in one test; `tick(ms)` runs what falls due, in order. Not node's
 * mock timers: node 18's (Debian bookworm's nodejs) fire a setTimeout one tick late and take no Date. */
export function fakeClock(t) {
  const real = { setTimeout, setInterval, clearTimeout, clearInterval };
  const timers = new Map();
  let now = 0;
  let ids = 0;
  const add = (fn, ms, every) => {
    timers.set(++ids, { at: now + (ms || 0), fn, every });
    return ids;
  };
  globalThis.setTimeout = (fn, ms) => add(fn, ms, null);
  globalThis.setInterval = (fn, ms) => add(fn, ms, ms || 1);
  globalThis.clearTimeout = globalThis.clearInterval = (id) => timers.delete(id);
  t.after(() => Object.assign(globalThis, real));
  return {
    tick(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter(([, x]) => x.at <= end).sort(([, a], [, b]) => a.at - b.at)[0];
        if (!due) break;
        const [id, timer] = due;
        now = timer.at;
        if (timer.every) timer.at += timer.every;
        else timers.delete(id);
        timer.fn();
      }
      now = end;
    },
  };
}


/** A chrome.* with in-memory storage; `listeners` holds what the extension registered, by event name. */
export function fakeChrome({ local = {}, session = {} } = {}) {
  const listeners = {};
  const event = (name) => ({ addListener: (fn) => (listeners[name] ??= []).push(fn), removeListener() {} });
  const area = (data) => ({
    get: async (key) => (key in data ? { [key]: structuredClone(data[key]) } : {}),
    set: async (items) => void Object.assign(data, structuredClone(items)),
    remove: async (keys) => {
      for (const key of [].concat(keys)) delete data[key];
    },
  });
  const chrome = {
    storage: { local: area(local), session: area(session), onChanged: event("storage.onChanged") },
    runtime: { onConnect: event("runtime.onConnect"), onMessage: event("runtime.onMessage"),
               onInstalled: event("runtime.onInstalled"), getURL: (path) => `chrome-extension://hejcti/${path}` },
    alarms: { create() {}, clear() {}, onAlarm: event("alarms.onAlarm") },
    notifications: { create: async () => {}, update: async () => true, clear: async () => true,
                     getAll: async () => ({}), onClicked: event("notifications.onClicked") },
    permissions: { contains: async () => false },
    scripting: { getRegisteredContentScripts: async () => [], unregisterContentScripts: async () => {},
                 registerContentScripts: async () => {} },
    i18n: { getMessage: (key) => key },
    sidePanel: { setPanelBehavior: async () => {} },
  };
  return { chrome, local, session, listeners };
}

let started = 0;

/** A fresh background.js (its own module instance) on a fake chrome with `local` in storage.local, the fake
 * WebSocket and `fetch`; the clock is fake too. `connect()` opens a side panel's port: `send(intent)` and
 * `state()` (the last state it was sent). Sign-in in storage starts a session: `ws()` is its socket. */
export async function startBackground(t, { local = {}, fetch }) {
  const fake = fakeChrome({ local });
  const saved = { chrome: globalThis.chrome, WebSocket: globalThis.WebSocket, fetch: globalThis.fetch };
  Object.assign(globalThis, { chrome: fake.chrome, WebSocket: FakeWebSocket, fetch });
  t.after(() => Object.assign(globalThis, saved));
  fakeClock(t);
  FakeWebSocket.made = [];
  started += 1;
  await import(`../../extension/background.js?instance=${started}`);
  for (let i = 0; i < 5; i++) await settle();
  const connect = () => {
    const sent = [];
    let onMessage = null;
    const port = { name: "ui", postMessage: (m) => sent.push(m), onDisconnect: { addListener() {} },
                   onMessage: { addListener: (fn) => (onMessage = fn) } };
    for (const fn of fake.listeners["runtime.onConnect"]) fn(port);
    return { send: (intent) => onMessage(intent), state: () => sent.at(-1)?.state };
  };
  return { ...fake, connect, ws: () => FakeWebSocket.made.at(-1) };
}
