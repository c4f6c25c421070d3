// socket.js without a browser: the backoff, which close codes reconnect, and a dead connection (no pong)
// given up on at once. A fake WebSocket stands in for the browser's; a fake clock for the timers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BACKOFF_MAX_MS, PING_MS, Socket, backoff, shouldReconnect } from "../../extension/socket.js";
import { FakeWebSocket, fakeClock, settle } from "./fakes.mjs";

test("the backoff grows, is capped below the 30 s an idle MV3 worker lives, and is jittered", () => {
  assert.ok(BACKOFF_MAX_MS <= 25000);
  for (let n = 0; n < 40; n++) {
    const low = backoff(n, () => 0);
    const high = backoff(n, () => 1);
    assert.ok(low <= high && high <= BACKOFF_MAX_MS && low >= 250, `attempt ${n}: ${low}..${high}`);
  }
  assert.ok(backoff(0, () => 1) < backoff(3, () => 1));
  assert.equal(backoff(50, () => 1), BACKOFF_MAX_MS);
  assert.equal(backoff(50, () => 0), BACKOFF_MAX_MS / 2); // full jitter over the upper half
  assert.notEqual(backoff(5, () => 0.1), backoff(5, () => 0.9));
});

test("4500-4999 mean signed out; everything else reconnects", () => {
  for (const code of [1000, 1001, 1006, 1011, 4000, 4001, 4499, 5000]) assert.equal(shouldReconnect(code), true, code);
  for (const code of [4500, 4501, 4502, 4503, 4999]) assert.equal(shouldReconnect(code), false, code);
});

test("a missed pong gives the connection up at once and reconnects without waiting for its close", async (t) => {
  const clock = fakeClock(t);
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.made = [];
  const statuses = [];
  const woken = [];
  const socket = new Socket({
    server: "https://cti.example", token: "hct_x", resume: async () => 7,
    onMessage: () => {}, onStatus: (s) => statuses.push(s), wake: (at) => woken.push(at),
  });
  socket.start();
  await settle();
  const [first] = FakeWebSocket.made;
  first.onopen();
  assert.deepEqual(first.sent[0], { type: "auth", token: "hct_x", resume: 7 });
  first.serverSays({ type: "auth_ok" });
  assert.equal(socket.online, true);

  clock.tick(PING_MS); // a ping, never answered
  assert.equal(first.sent.at(-1).type, "ping");
  clock.tick(PING_MS); // the next ping finds it unanswered
  assert.equal(first.closedWith, 4000);
  assert.equal(first.onclose, null); // its late close (if any) changes nothing
  assert.equal(socket.online, false);
  assert.deepEqual(statuses.slice(-1), ["offline"]);
  assert.equal(woken.length, 1);

  clock.tick(backoff(0, () => 1)); // the first retry's wait, at most
  await settle();
  assert.equal(FakeWebSocket.made.length, 2);
  socket.stop();
});

test("retryNow (the alarm) connects when a reconnect waits, and does nothing otherwise", async (t) => {
  fakeClock(t); // the backoff's wait never runs out here: only retryNow connects
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.made = [];
  const socket = new Socket({ server: "http://127.0.0.1:1", token: "t", resume: async () => null,
                              onMessage: () => {}, onStatus: () => {} });
  socket.start();
  await settle();
  socket.retryNow(); // connecting already
  await settle();
  assert.equal(FakeWebSocket.made.length, 1);
  FakeWebSocket.made[0].onclose({ code: 1006 });
  socket.retryNow(); // a retry waits: now, not after the backoff
  await settle();
  assert.equal(FakeWebSocket.made.length, 2);
  FakeWebSocket.made[1].onclose({ code: 4502 });
  socket.retryNow(); // signed out: no reconnect
  await settle();
  assert.equal(FakeWebSocket.made.length, 2);
});
