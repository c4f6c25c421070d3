// background.js, the service worker, on a fake chrome.* (fakes.mjs): what the user is shown when the CRM's
// token refresh fails, and a refresh that a sign-out overtakes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { settle, startBackground } from "./fakes.mjs";

const SIGNED_IN = {
  server: "https://cti.example", token: "hct_user", crm: { kind: "zendesk", subdomain: "acme" },
  crmTokens: { kind: "zendesk", access_token: "a1", refresh_token: "r1", expires_at: 1, instance_url: null },
};

/** The session goes online; the CRM's tokens have expired, so it refreshes them first. */
async function goOnline(bg) {
  const ws = bg.ws();
  ws.onopen();
  ws.serverSays({ type: "auth_ok" });
  for (let i = 0; i < 5; i++) await settle();
  return ws;
}

/** Online with expired CRM tokens, whose refresh the server answers with `status`: the panel's last state. */
async function refreshAnswered(t, status, body) {
  const bg = await startBackground(t, { local: { ...SIGNED_IN }, fetch: async () => Response.json(body, { status }) });
  const panel = bg.connect();
  await goOnline(bg);
  await settle();
  return { bg, state: panel.state() };
}

test("a CRM refresh the server refuses with 401 signs out of Hej CTI (not 'CRM unreachable'); the CRM's tokens stay", async (t) => {
  const { bg, state } = await refreshAnswered(t, 401, { error: "unauthorized" });
  assert.equal(state.status, "signed_out"); // the panel shows its sign-in
  assert.deepEqual(state.notice, { key: "signedOutInvalid", kind: "error" });
  assert.equal(bg.local.token, undefined);
  assert.equal(bg.local.crmTokens.refresh_token, "r1");
});

test("a CRM refresh that gets a 5xx says 'CRM unreachable' and stays signed in", async (t) => {
  const { bg, state } = await refreshAnswered(t, 502, { error: "crm_unavailable" });
  assert.deepEqual(state.notice, { key: "crmUnreachable", kind: "error" });
  assert.equal(state.status, "online");
  assert.equal(bg.local.token, "hct_user");
});

test("a sign-out while a CRM refresh is on its way: its answer is discarded, no CRM token is stored again", async (t) => {
  let answer;
  const bg = await startBackground(t, {
    local: { ...SIGNED_IN },
    fetch: () => new Promise((resolve) => (answer = resolve)),
  });
  const panel = bg.connect();
  const ws = await goOnline(bg);
  assert.ok(answer, "the refresh is on its way");
  await panel.send({ intent: "signOut" });
  answer(Response.json({ access_token: "a2", refresh_token: "r2", expires_in: 3600 }));
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(bg.local.crmTokens, undefined);
  assert.equal(bg.local.token, undefined);
  assert.equal(panel.state().crmState, "needed");
  assert.equal(panel.state().status, "signed_out");
  assert.ok(!ws.sent.some((m) => m.type === "crm.credentials"));
});
