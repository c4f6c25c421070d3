// The CRM's token refresh (auth.js crmRefresh through the server's /crm/oauth/{kind}/refresh), made
// single-flight (crm.js): two refreshes at once are one, since a CRM that rotates refresh tokens refuses the
// second and so signs the user out of the CRM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { crmRefresh } from "../../extension/auth.js";
import { CrmSignInError, singleFlight } from "../../extension/crm.js";

/** A fake server route whose refresh tokens work once each (rotating). */
function rotatingServer() {
  const requests = [];
  let valid = new Set(["r1"]);
  let n = 1;
  const fetch = async (url, init) => {
    const body = JSON.parse(init.body);
    requests.push({ url, body, authorization: init.headers.Authorization ?? null });
    await new Promise((resolve) => setTimeout(resolve, 5)); // a round trip: the second caller comes meanwhile
    if (!valid.has(body.refresh_token)) return Response.json({ error: "invalid_grant" }, { status: 400 });
    n += 1;
    valid = new Set([`r${n}`]);
    return Response.json({ access_token: `a${n}`, refresh_token: `r${n}`, expires_in: 3600 });
  };
  return { fetch, requests };
}

const CRM = { kind: "zendesk", subdomain: "acme" };

test("two refreshes at once are one: both get the new tokens, the rotated refresh token is used once", async (t) => {
  const server = rotatingServer();
  const saved = globalThis.fetch;
  globalThis.fetch = server.fetch;
  t.after(() => (globalThis.fetch = saved));
  const refresh = singleFlight((tokens) => crmRefresh("https://cti.example", CRM, tokens, "hct_user"));
  const old = { kind: "zendesk", access_token: "a1", refresh_token: "r1", expires_at: 0, instance_url: null };
  const [first, second] = await Promise.all([refresh(old), refresh(old)]);
  assert.equal(server.requests.length, 1);
  assert.equal(first, second);
  assert.equal(first.access_token, "a2");
  assert.deepEqual(server.requests[0].body, { refresh_token: "r1", subdomain: "acme" });
  assert.equal(server.requests[0].url, "https://cti.example/crm/oauth/zendesk/refresh");
  assert.equal(server.requests[0].authorization, "Bearer hct_user"); // the server wants the Hej CTI token too

  const third = await refresh(first); // done: the next refresh is a new one, with the new refresh token
  assert.equal(third.access_token, "a3");
  assert.equal(server.requests.length, 2);
  await assert.rejects(refresh(old), (e) => e instanceof CrmSignInError && e.kind === "refused");
});

test("a failed refresh is shared too, and the next call tries again", async () => {
  let runs = 0;
  const flaky = singleFlight(async () => {
    runs += 1;
    if (runs === 1) throw new Error("unreachable");
    return "ok";
  });
  const results = await Promise.allSettled([flaky(), flaky()]);
  assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
  assert.equal(await flaky(), "ok");
  assert.equal(runs, 2);
});

/** The server's refresh route answering `status` (or a network error for null). */
function answering(t, status, body = {}) {
  const saved = globalThis.fetch;
  globalThis.fetch = async () => {
    if (status === null) throw new TypeError("fetch failed");
    return Response.json(body, { status });
  };
  t.after(() => (globalThis.fetch = saved));
}

const TOKENS = { kind: "zendesk", access_token: "a1", refresh_token: "r1", expires_at: 0, instance_url: null };
const failsWith = (kind) => (e) => e instanceof CrmSignInError && e.kind === kind;

test("a refresh the server refuses with 401 is about the Hej CTI token: signed out, not unreachable", async (t) => {
  answering(t, 401, { error: "unauthorized" });
  await assert.rejects(crmRefresh("https://cti.example", CRM, TOKENS, "hct_bad"), failsWith("signed_out"));
});

test("a refresh: 400 is the CRM's no, a 5xx and a network error are unreachable", async (t) => {
  answering(t, 400, { error: "invalid_grant" });
  await assert.rejects(crmRefresh("https://cti.example", CRM, TOKENS, "hct_user"), failsWith("refused"));
  answering(t, 502, { error: "crm_unavailable" });
  await assert.rejects(crmRefresh("https://cti.example", CRM, TOKENS, "hct_user"), failsWith("unreachable"));
  answering(t, null);
  await assert.rejects(crmRefresh("https://cti.example", CRM, TOKENS, "hct_user"), failsWith("unreachable"));
});
